"""The ``wslgraph`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from wslgraph import GraphTemplate, to_graph, to_state_dict
    from wslgraph.zoo import BasicBlock, siren, small_cnn

    torch.manual_seed(args.seed)
    models = {
        "SIREN INR (2-32-32-1, DWS/NFN zoos)": (siren(), None),
        "Small-CNN-Zoo CNN (3x16 conv, GAP, dense)": (small_cnn(), None),
        "ResNet basic block (8 -> 16, stride 2, 1x1 downsample)": (BasicBlock(8, 16, stride=2), None),
    }
    for title, (model, input_shape) in models.items():
        graph = to_graph(model, input_shape=input_shape).validate()
        state = to_state_dict(graph)
        exact = all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
        print(f"\n== {title}")
        print(graph.summary())
        print(f"  round trip to_state_dict(to_graph(m)) == m.state_dict(): {'exact' if exact else 'MISMATCH'}")
        if not exact:
            return 1
    template = GraphTemplate.from_module(siren())
    zoo = torch.randn(args.zoo_size, template.num_params)
    start = time.perf_counter()
    batch = template.batch(zoo)
    seconds = time.perf_counter() - start
    same = torch.equal(template.unbatch(batch), zoo)
    print(f"\n== GraphTemplate: {args.zoo_size} SIRENs -> one Batch of {batch.num_nodes} nodes, {batch.num_edges} "
          f"edges in {seconds * 1e3:.1f} ms; unbatch exact: {same}")
    return 0 if same else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wslgraph", description="Weight-space learning on parameter graphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="convert built-in models (INR, CNN, ResNet block) and show their graphs")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    demo.add_argument("--zoo-size", type=int, default=10_000, help="SIRENs batched by the template (default: 10000)")
    args = parser.parse_args(argv)
    return {"demo": _demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
