"""Evaluating many networks of one architecture: the fast special cases against the torch.func idiom.

The reference is what a user would write: ``torch.vmap(torch.func.functional_call)`` over the stacked state
(:class:`wslgraph.weightspace.BatchedModule`). Rows, each timed forward and forward+backward (gradients w.r.t.
the flat rows, as the hypernetwork head and the editors need), the calls taking turns:

* SIRENs (the DWS 2-32-32-1 INR) rendered on the 28x28 grid: :func:`inr_forward` vs the idiom;
* Model Zoos CNNs (2,464 parameters each) on a batch of 28x28 images: the trainer's grouped convolutions
  (:func:`batched_model_zoo_logits`) vs the idiom.

A ratio below 1 means the special case is faster, which is why it stays.

    .venv/bin/python benchmarks/evaluator.py [--quick] [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import alternating_best_times  # benchmarks/timing.py (the script's folder is on sys.path)

from wslgraph import GraphTemplate
from wslgraph.io import atomic_write_json
from wslgraph.weightspace import BatchedModule, INRArchitecture, inr_forward, pixel_grid
from wslgraph.zoo import siren
from wslgraph.zoo.modelzoos import ModelZooCNN, batched_model_zoo_logits


def _timed(fast, idiom, rows: torch.Tensor, repeats: int, device: torch.device) -> dict:
    leaf = rows.clone().requires_grad_()

    def run(function, backward: bool):
        def call() -> None:
            if backward:
                function(leaf).square().mean().backward()
                leaf.grad = None
            else:
                with torch.no_grad():
                    function(rows)
        return call

    result = {}
    for backward in (False, True):
        times = alternating_best_times({"fast": run(fast, backward), "idiom": run(idiom, backward)}, repeats, device)
        result["fwd+bwd" if backward else "fwd"] = {"fast_s": times["fast"], "torch_func_s": times["idiom"],
                                                    "ratio": times["fast"] / times["idiom"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small populations, for tests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/evaluator.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 2 if args.quick else 5
    generator = torch.Generator().manual_seed(0)
    rows_out = []

    inrs = 16 if args.quick else 512
    module = siren().to(device)
    template = GraphTemplate.from_module(module)
    rows = (torch.randn(inrs, template.num_params, generator=generator) * 0.1).to(device)
    grid = pixel_grid(28, 28, device)
    architecture = INRArchitecture.from_template(template)
    batched = BatchedModule(module, template)
    assert torch.allclose(inr_forward(rows, grid, architecture), batched(rows, grid), atol=1e-4)
    rows_out.append({"case": f"{inrs} SIRENs x 784 pixels", "fast": "inr_forward",
                     **_timed(lambda r: inr_forward(r, grid, architecture), lambda r: batched(r, grid), rows,
                              repeats, device)})

    models, images = (8, 32) if args.quick else (128, 256)
    module = ModelZooCNN(activation="tanh").to(device)
    template = GraphTemplate.from_module(module, input_shape=(1, 28, 28))
    rows = (torch.randn(models, template.num_params, generator=generator) * 0.1).to(device)
    x = torch.rand(images, 1, 28, 28, generator=generator).to(device)
    batched = BatchedModule(module, template)
    codes = torch.zeros(models, dtype=torch.long, device=device)  # tanh

    def grouped(r: torch.Tensor) -> torch.Tensor:
        state = batched.stacked_state(r)
        return batched_model_zoo_logits([state[k] for k, _ in module.named_parameters()], x, codes).transpose(0, 1)

    assert torch.allclose(grouped(rows), batched(rows, x), atol=1e-4)
    rows_out.append({"case": f"{models} Model Zoos CNNs x {images} images", "fast": "grouped conv2d",
                     **_timed(grouped, lambda r: batched(r, x), rows, repeats, device)})

    for row in rows_out:
        cells = " | ".join(f"{p}: {1e3 * row[p]['fast_s']:7.2f} vs {1e3 * row[p]['torch_func_s']:7.2f} ms "
                           f"({row[p]['ratio']:.2f}x)" for p in ("fwd", "fwd+bwd"))
        print(f"{row['case']:<34} {row['fast']:<15} vs torch.func: {cells}")
    atomic_write_json(args.json, {"benchmark": "evaluator", "device": str(device), "torch": torch.__version__,
                                  "threads": torch.get_num_threads(), "rows": rows_out})


if __name__ == "__main__":
    main()
