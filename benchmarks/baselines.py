"""Parameters and speed of wslgraph's encoders and the peers on the same batches.

For a batch of 256 SIRENs (2-32-32-1) and one of 256 Small-CNN-Zoo CNNs, every
model (GNNEncoder, TransformerEncoder, DWSNet, NFN-HNP, NFN-NP, flat MLP,
StatNN; DWSNet only on the MLPs) is built with its defaults for 10 outputs, and
the script reports its parameter count and its best forward+backward time.

    .venv/bin/python benchmarks/baselines.py [--quick] [--device cpu|cuda] [--tune-allocator] [--json PATH]
"""

from __future__ import annotations

import torch
from timing import best_time, encoder_benchmark_args  # benchmarks/timing.py (the script's folder is on sys.path)

from wslgraph import GraphTemplate
from wslgraph.baselines import BASELINES
from wslgraph.errors import UnsupportedModuleError
from wslgraph.io import atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder
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
    atomic_write_json(args.json, {"benchmark": "baselines", "quick": args.quick, "device": str(device),
                                  "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": size,
                                  "allocator": "tuned" if tuned else "default", "rows": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
