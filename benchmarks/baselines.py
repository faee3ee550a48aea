"""Parameters and speed of wslgraph's encoders and the peers on the same batches.

For a batch of 256 SIRENs (2-32-32-1) and one of 256 Small-CNN-Zoo CNNs, every
model (GNNEncoder, TransformerEncoder, DWSNet, NFN-HNP, NFN-NP, flat MLP,
StatNN; DWSNet only on the MLPs) is built with its defaults for 10 outputs, and
the script reports its parameter count and its best forward+backward time.

Then one equivariant layer against the authors' own: ``WeightSpaceLinear`` (HNP: hidden neurons permutable; NP:
all) against the ``nfn`` package's ``HNPLinear`` / ``NPLinear`` (Zhou et al.; an optional benchmark dependency,
``pip install nfn``; skipped without it), forward + backward on 256 SIREN weight sets with 16 -> 16 channels, each in
its own tensor format, taking turns within each round; plus our per-term definition (``forward_per_term``).

    .venv/bin/python benchmarks/baselines.py [--quick] [--device cpu|cuda] [--tune-allocator] [--json PATH]
"""

from __future__ import annotations

import torch
from timing import (  # benchmarks/timing.py (the script's folder is on sys.path)
    alternating_best_times,
    best_time,
    encoder_benchmark_args,
)

from wslgraph import GraphTemplate
from wslgraph.baselines import BASELINES, WeightSpaceLinear
from wslgraph.errors import UnsupportedModuleError
from wslgraph.io import atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.weightspace import weight_space_spec
from wslgraph.zoo import siren, small_cnn

MODELS = {"GNNEncoder": GNNEncoder, "TransformerEncoder": TransformerEncoder, **BASELINES}


def main() -> None:
    args, device, tuned = encoder_benchmark_args(__doc__.split("\n")[0], "baselines")
    size, repeats = (8, 1) if args.quick else (256, 3)
    rows = []
    for architecture, factory in (("SIREN", siren), ("SmallCNN", small_cnn)):
        template = GraphTemplate.from_module(factory())
        params = torch.randn(size, template.num_params, generator=torch.Generator().manual_seed(0)) * 0.1
        batch = template.batch(params.to(device))
        for name, builder in MODELS.items():
            torch.manual_seed(0)
            model = builder(10)
            try:
                model(batch)  # lazy initialisation
            except UnsupportedModuleError:
                continue
            model.to(device)
            seconds = best_time(lambda m=model, b=batch: m(b).square().mean().backward(), repeats, device)
            count = sum(p.numel() for p in model.parameters())
            rows.append({"architecture": architecture, "model": name, "parameters": count, "fwd_bwd_s": seconds,
                         "graphs_per_s": size / seconds})
            print(f"{architecture:<9} {name:<19} {count:>11,} parameters  fwd+bwd {seconds * 1e3:9.1f} ms "
                  f"({size / seconds:8.1f} graphs/s)")
    layers = layer_rows(device, size, 16, repeats + 2)
    atomic_write_json(args.json, {"benchmark": "baselines", "quick": args.quick, "device": str(device),
                                  "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": size,
                                  "allocator": "tuned" if tuned else "default", "rows": rows, "layers": layers})
    print(f"wrote {args.json}")


def layer_rows(device: torch.device, size: int, channels: int, repeats: int) -> list[dict]:
    """One equivariant layer, ours and nfn's, forward + backward on ``size`` SIREN weight sets."""
    try:
        from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
        from nfn.layers import HNPLinear, NPLinear
    except ImportError:
        print("nfn is not installed (pip install nfn): the layer comparison is skipped")
        return []
    spec = weight_space_spec(GraphTemplate.from_module(siren()).layout)
    generator = torch.Generator().manual_seed(0)
    sizes = spec.sizes
    weights = [torch.randn(size, channels, sizes[i + 1], sizes[i], generator=generator).to(device).requires_grad_()
               for i in range(spec.num_layers)]
    biases = [torch.randn(size, channels, sizes[i + 1], generator=generator).to(device).requires_grad_()
              for i in range(spec.num_layers)]
    theirs_input = WeightSpaceFeatures(weights, biases)
    nfn_spec = network_spec_from_wsfeat(theirs_input)
    rows = []
    for mode, theirs_cls, permute_io in (("HNP", HNPLinear, False), ("NP", NPLinear, True)):
        torch.manual_seed(0)
        ours = WeightSpaceLinear(spec, channels, channels, permute_io=permute_io).to(device)
        theirs = theirs_cls(nfn_spec, channels, channels).to(device)
        features = [torch.randn(size, *[sizes[x] for x in slot.permutable], channels * slot.fixed_size,
                                generator=generator).to(device).requires_grad_() for slot in ours.slots]

        def run_ours(fn=ours.forward, feats=features) -> None:
            sum(out.sum() for out in fn(feats)).backward()

        def run_theirs(layer=theirs) -> None:
            out = layer(theirs_input)
            (sum(w.sum() for w in out.weights) + sum(b.sum() for b in out.biases)).backward()

        times = alternating_best_times({"wslgraph": run_ours, "nfn": run_theirs,
                                        "wslgraph per-term": lambda fn=ours.forward_per_term: run_ours(fn)}, repeats,
                                       device)
        params = {"wslgraph": sum(p.numel() for p in ours.parameters()),
                  "nfn": sum(p.numel() for p in theirs.parameters())}
        row = {"mode": mode, "channels": channels, "batch": size, "seconds": times, "parameters": params,
               "wslgraph_vs_nfn": times["wslgraph"] / times["nfn"]}
        rows.append(row)
        print(f"layer {mode:<3} fwd+bwd: wslgraph {1e3 * times['wslgraph']:7.2f} ms ({params['wslgraph']:,} params), "
              f"nfn {1e3 * times['nfn']:7.2f} ms ({params['nfn']:,} params), wslgraph per-term "
              f"{1e3 * times['wslgraph per-term']:7.2f} ms; wslgraph / nfn = {row['wslgraph_vs_nfn']:.2f}")
    return rows


if __name__ == "__main__":
    main()
