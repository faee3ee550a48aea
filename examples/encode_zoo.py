"""Encode a zoo of SIRENs with GNNEncoder and TransformerEncoder, and check the symmetry.

Builds 32 SIRENs with the standard SIREN initialisation, batches them with a
GraphTemplate, fits the per-layer normalisation, and shows that graph-level
outputs do not change when hidden neurons are permuted (the tests also check
that node and edge outputs move with the neurons).

    .venv/bin/python examples/encode_zoo.py
"""

from __future__ import annotations

import math

import torch

import wslgraph
from wslgraph.nn import GNNEncoder, ProbeFeatures, TransformerEncoder
from wslgraph.weightspace import permute_hidden
from wslgraph.zoo import siren


def siren_init(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Sitzmann et al.: first layer U(-1/n, 1/n), later layers U(-sqrt(6/n)/30, sqrt(6/n)/30)."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            bound = 1 / layer.in_features if i == 0 else math.sqrt(6 / layer.in_features) / 30
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    zoo = [siren_init(siren(), generator) for _ in range(32)]
    template = wslgraph.GraphTemplate.from_module(zoo[0])
    batch = template.batch(torch.stack([template.flatten(m.state_dict()) for m in zoo]))
    permuted = [permute_hidden(m, generator) for m in zoo]
    batch_permuted = template.batch(torch.stack([template.flatten(m.state_dict()) for m in permuted]))
    encoders = {
        "GNNEncoder": GNNEncoder(8),
        "GNNEncoder + probes": GNNEncoder(8, probe=ProbeFeatures(template, num_probes=16)),
        "TransformerEncoder": TransformerEncoder(8),
    }
    for name, encoder in encoders.items():
        torch.manual_seed(0)
        encoder.fit_statistics(batch).eval()
        with torch.no_grad():
            out, out_permuted = encoder(batch), encoder(batch_permuted)
        difference = float((out - out_permuted).abs().max())
        print(f"{name:<20} output {tuple(out.shape)}, max |f(zoo) - f(permuted zoo)| = {difference:.2e}, "
              f"permutation invariant: {difference < 1e-4}")
        if difference >= 1e-4:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
