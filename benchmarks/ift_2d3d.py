"""The IFT head across 2D and 3D: auto-decoded embeddings of images and of shapes, their Hessians, and a classifier.

For each domain an auto-decoder (a full-mode :class:`~wslgraph.heads.HypernetworkHead` and an embedding table) is
trained on reconstruction: Fashion-MNIST images (pixel MSE; the images and split of the README's ``fm3k`` INR zoo)
and the procedural shapes of :mod:`wslgraph.zoo.shapes3d` (occupancy BCE at 4,096 points per shape drawn as the
shape zoos draw them; the shapes and split of the ``shapes3d`` zoo with ``--per-class 200``). With the head frozen,
every image's or shape's embedding is then fitted afresh (train and test alike, the same procedure), a small MLP
classifier is trained on the training embeddings, and its test accuracy is reported. For ``--analysed`` test
instances the embeddings are refined to exact stationary points (Newton, float64) and the Hessian of each
reconstruction loss w.r.t. its embedding gives the IFT's full-rank condition, positive definiteness and the
condition number. Prints a table and writes JSON.

Shapes come in random poses, so a shape's embedding also encodes its pose. ``--rotations K`` gives the classifiers
K turned copies of every training shape as well, and ``--test-rotations K`` classifies each test shape by its class
scores averaged over itself and K turned copies (each copy embedded like any test shape): the data-side
counterpart of the rotations folded into INR weights that augment the weight-space encoders.

    .venv/bin/python benchmarks/ift_2d3d.py [--quick] [--tasks 2d 3d] [--latent-dim 32] [--steps N] [--json PATH]
        [--rotations K] [--test-rotations K] [--classifier-seeds S] [--save-embeddings PATH]
    .venv/bin/python benchmarks/ift_2d3d.py --embeddings FILE [FILE ...]   # classify saved embeddings only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from wslgraph import GraphTemplate
from wslgraph.heads import (
    AutoDecoder,
    HypernetworkHead,
    fit_embedding_classifier,
    image_targets,
    latent_hessians,
    solve_latents,
    spectrum_summary,
)
from wslgraph.io import atomic_write_json
from wslgraph.zoo import siren
from wslgraph.zoo.data import load_images
from wslgraph.zoo.shapes3d import ShapeRecipe, ShapeSet, make_shapes, random_rotations, sample_points, shape_siren

LATENT_REG = 1e-4


def image_task(source: str, train_count: int, test_count: int) -> dict:
    """The fm3k zoo's images: ``train_count`` / ``test_count`` evenly spaced; train image ``i`` with ``i % 12 ==
    11`` is validation in the zoo, so it is left out here too."""
    train = load_images(source, "train").evenly_spaced(train_count)
    test = load_images(source, "test").evenly_spaced(test_count)
    keep = torch.arange(len(train)) % 12 != 11
    coords, train_targets = image_targets(train.images[keep])
    _, test_targets = image_targets(test.images)
    template = GraphTemplate.from_module(siren(hidden=(32, 32), out_features=train.images.shape[1]))
    return {"name": f"2D: {source} images", "template": template, "loss": "mse",
            "train": (coords, train_targets, train.labels[keep]), "test": (coords, test_targets, test.labels)}


def rotated_copies(shapes: ShapeSet, copies: int, seed: int) -> ShapeSet:
    """``copies`` copies of every shape, each turned about the origin by its own rotation uniform over SO(3): the
    same shape in another pose, like the rotations folded into an INR's first layer that augment the weight-space
    encoders."""
    rows = torch.arange(len(shapes)).repeat(copies)
    return shapes[rows].turned(random_rotations(len(rows), torch.Generator().manual_seed(seed)))


def shape_points(shapes: ShapeSet, recipe: ShapeRecipe, first_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each shape's own points (shape ``i`` from the generator of zoo INR ``first_seed + i``) and occupancies."""
    from wslgraph.zoo.inr import inr_seed

    coords = torch.cat([sample_points(shapes[i:i + 1], recipe.points, near=recipe.near, sigma=recipe.sigma,
                                      generator=torch.Generator().manual_seed(inr_seed(0, first_seed + i)))
                        for i in range(len(shapes))])
    return coords.float(), shapes.occupancy(coords).unsqueeze(-1).float()


def shape_task(per_class: int, points: int, rotations: int = 0, test_rotations: int = 0) -> dict:
    """The shapes3d zoo's shapes and split (shape ``i`` of a class: val if ``i % 10 == 8``, test if ``9``), with
    each shape's own points, drawn from the zoo's per-shape generators. With ``rotations`` > 0 the classifier also
    trains on that many turned copies of every training shape (``"extra"``: their embeddings are inferred with the
    head frozen, like the test shapes'; the auto-decoder never sees them). With ``test_rotations`` > 0 each test
    shape is classified by its class scores averaged over itself and that many turned copies (``"extra_test"``)."""
    recipe = ShapeRecipe(points=points)
    shapes = make_shapes(per_class, seed=0)
    coords, targets = shape_points(shapes, recipe, 0)
    within = torch.arange(len(shapes)) % per_class % 10
    train, test = within < 8, within == 9
    template = GraphTemplate.from_module(shape_siren(recipe))
    task = {"name": "3D: procedural shapes (occupancy)", "template": template, "loss": "bce",
            "train": (coords[train], targets[train], shapes.labels[train]),
            "test": (coords[test], targets[test], shapes.labels[test])}
    if rotations:
        turned = rotated_copies(shapes[train], rotations, seed=1)
        task["extra"] = (*shape_points(turned, recipe, len(shapes)), turned.labels)
    if test_rotations:
        turned = rotated_copies(shapes[test], test_rotations, seed=2)
        task["extra_test"] = (*shape_points(turned, recipe, len(shapes) * (1 + rotations)), turned.labels)
    return task


def svm_scores_of(z_train: torch.Tensor, labels: torch.Tensor, z_test: torch.Tensor,
                  groups: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
    """An RBF SVM on standardised embeddings, its C chosen by 5-fold cross-validation on the training embeddings
    alone (scikit-learn): C and its class scores of ``z_test``. ``groups``: the training shape each row is a turned
    copy of (its copies stay in one fold)."""
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    folds = max(2, min(5, int(torch.bincount(labels).min())))
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc__C": [1.0, 3.0, 10.0, 30.0, 100.0]},
                          cv=folds if groups is None else GroupKFold(folds))
    search.fit(z_train.double().numpy(), labels.numpy(), groups=None if groups is None else groups.numpy())
    return float(search.best_params_["svc__C"]), torch.from_numpy(search.decision_function(z_test.double().numpy()))


def grouped_accuracy(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None) -> float:
    """Accuracy of class scores ``[N, classes]``; with ``groups``, of their means over each group's rows."""
    if groups is None:
        return float((scores.argmax(1) == labels).float().mean())
    count = int(groups.max()) + 1
    summed = torch.zeros(count, scores.shape[1], dtype=scores.dtype).index_add_(0, groups, scores)
    truth = torch.zeros(count, dtype=labels.dtype).index_copy_(0, groups, labels)
    return float((summed.argmax(1) == truth).float().mean())


def classify(embedded: dict[str, torch.Tensor], seeds: int = 1) -> dict:
    """Test accuracy of the head's MLP classifier (``seeds`` seeds; ``test_accuracy`` is seed 0's) and of the RBF
    SVM on embeddings ``embedded`` (``z_train``, ``labels``, ``train_groups``, ``z_test``, ``test_labels``,
    ``test_groups``: group ``g`` holds a shape and its turned copies). Each shape as it is (the first row of its
    group), and, where test shapes have turned copies, each shape's class scores averaged over its group."""
    z_train, labels, z_test, test_labels = (embedded[k] for k in ("z_train", "labels", "z_test", "test_labels"))
    test_groups = embedded["test_groups"]
    count = int(test_groups.max()) + 1
    single = slice(0, count)  # the test shapes as they are (their turned copies follow)
    copies = z_test.shape[0] // count - 1
    mlp_single, mlp_averaged, train_accuracy = [], [], None
    for seed in range(seeds):
        classifier = fit_embedding_classifier(z_train, labels, seed=seed)
        with torch.no_grad():
            if seed == 0:  # the reported classifier's
                train_accuracy = float((classifier(z_train).argmax(1) == labels).float().mean())
            mlp_scores = classifier(z_test).softmax(1)
        mlp_single.append(grouped_accuracy(mlp_scores[single], test_labels[single], None))
        mlp_averaged.append(grouped_accuracy(mlp_scores, test_labels, test_groups))
    groups = embedded["train_groups"] if z_train.shape[0] > int(embedded["train_groups"].max()) + 1 else None
    svm_c, svm_scores = svm_scores_of(z_train, labels, z_test, groups)
    out = {"classifier_train_embeddings": z_train.shape[0], "test_copies": copies, "train_accuracy": train_accuracy,
           "test_accuracy": mlp_single[0], "test_accuracy_seeds": mlp_single, "svm_c": svm_c,
           "svm_test_accuracy": grouped_accuracy(svm_scores[single], test_labels[single], None)}
    line = (f"  embedding classifier (MLP) train {100 * train_accuracy:.1f} %, test {100 * mlp_single[0]:.1f} % "
            f"(mean of {seeds} seeds {100 * sum(mlp_single) / seeds:.1f} %); RBF SVM (C={svm_c:g} by 5-fold CV on "
            f"train) {100 * out['svm_test_accuracy']:.1f} %")
    if copies:
        out |= {"test_accuracy_averaged": mlp_averaged[0], "test_accuracy_averaged_seeds": mlp_averaged,
                "svm_test_accuracy_averaged": grouped_accuracy(svm_scores, test_labels, test_groups)}
        line += (f"; scores averaged over each test shape and its {copies} turned copies: MLP "
                 f"{100 * mlp_averaged[0]:.1f} % (mean of {seeds} seeds {100 * sum(mlp_averaged) / seeds:.1f} %), "
                 f"RBF SVM {100 * out['svm_test_accuracy_averaged']:.1f} %")
    print(line, flush=True)
    return out


def infer(decoder: AutoDecoder, coords: torch.Tensor, targets: torch.Tensor, steps: int, chunk: int = 256
          ) -> torch.Tensor:
    """Embeddings with the head frozen, ``chunk`` instances at a time (each instance's optimisation is its own)."""
    out = []
    for start in range(0, targets.shape[0], chunk):
        rows = slice(start, start + chunk)
        out.append(decoder.infer_points(coords[rows] if coords.dim() == 3 else coords, targets[rows], steps=steps))
    return torch.cat(out)


def run(task: dict, latent_dim: int, steps: int, infer_steps: int, analysed: int,
        save_embeddings: Path | None = None, classifier_seeds: int = 1) -> dict:
    torch.manual_seed(0)
    coords, targets, labels = task["train"]
    test_coords, test_targets, test_labels = task["test"]
    head = HypernetworkHead(task["template"], latent_dim, loss=task["loss"])
    decoder = AutoDecoder(head, targets.shape[0], latent_reg=LATENT_REG)
    start = time.perf_counter()
    losses = decoder.fit_points(coords, targets, steps=steps, lr=1e-3, batch_size=64,
                                generator=torch.Generator().manual_seed(0))
    fitted = time.perf_counter() - start
    z_train = infer(decoder, coords, targets, infer_steps)
    z_test = infer(decoder, test_coords, test_targets, infer_steps)
    groups, test_groups = torch.arange(labels.shape[0]), torch.arange(test_labels.shape[0])
    if "extra" in task:  # turned copies of the training shapes: more training embeddings for the classifiers
        extra_coords, extra_targets, extra_labels = task["extra"]
        z_train = torch.cat([z_train, infer(decoder, extra_coords, extra_targets, infer_steps)])
        groups = torch.arange(labels.shape[0]).repeat(z_train.shape[0] // labels.shape[0])
        labels = torch.cat([labels, extra_labels])
    if "extra_test" in task:  # turned copies of the test shapes: their class scores are averaged per shape
        extra_coords, extra_targets, extra_labels = task["extra_test"]
        z_test = torch.cat([z_test, infer(decoder, extra_coords, extra_targets, infer_steps)])
        test_groups = torch.arange(test_labels.shape[0]).repeat(z_test.shape[0] // test_labels.shape[0])
        test_labels = torch.cat([test_labels, extra_labels])
    embedded = {"z_train": z_train, "labels": labels, "train_groups": groups, "z_test": z_test,
                "test_labels": test_labels, "test_groups": test_groups}
    if save_embeddings is not None:
        from safetensors.torch import save_file

        save_embeddings.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in embedded.items()}, str(save_embeddings))
    scores = classify(embedded, classifier_seeds)
    print(f"  {task['name']}: fitted in {fitted:.0f} s; classified at {time.perf_counter() - start:.0f} s; now Newton "
          f"refinement and Hessians of {analysed} test instances", flush=True)
    head64 = head.double()
    hessians = []
    for first in range(0, analysed, 5):  # a few instances at a time: exact Hessians of 4,096-point losses are large
        some = slice(first, min(first + 5, analysed))
        some_coords = (test_coords[some] if test_coords.dim() == 3 else test_coords).double()
        z_star = solve_latents(head64, test_targets[some].double(), some_coords, z_test[some].double(),
                               latent_reg=LATENT_REG)
        hessians.append(latent_hessians(head64, z_star, test_targets[some].double(), some_coords,
                                        latent_reg=LATENT_REG))
    summary = spectrum_summary(torch.cat(hessians))
    return {"task": task["name"], "latent_dim": latent_dim, "train_instances": targets.shape[0],
            "test_instances": test_targets.shape[0], "points": targets.shape[1], "loss": task["loss"],
            "reconstruction_first": losses[0], "reconstruction_last": losses[-1],
            **scores, "analysed": analysed,
            "fraction_full_rank": summary["fraction_full_rank"],
            "fraction_positive_definite": summary["fraction_positive_definite"],
            "median_condition_number": summary["median_condition_number"],
            "fit_seconds": fitted, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few instances and steps (seconds), for tests")
    parser.add_argument("--source-2d", default="fashion-mnist", choices=["fashion-mnist", "mnist5k", "digits"])
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--tasks", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    parser.add_argument("--steps", type=int, default=None, help="auto-decoder training steps (default 4,000)")
    parser.add_argument("--infer-steps", type=int, default=None, help="embedding fits (default 300 steps)")
    parser.add_argument("--points", type=int, default=4096, help="3D: points per shape")
    parser.add_argument("--rotations", type=int, default=0,
                        help="3D: the classifiers also train on this many turned copies of each training shape")
    parser.add_argument("--test-rotations", type=int, default=0,
                        help="3D: classify each test shape by its scores averaged over this many turned copies too")
    parser.add_argument("--analysed", type=int, default=None, help="test instances whose Hessians are taken (50)")
    parser.add_argument("--save-embeddings", type=Path, default=None,
                        help="write each task's fitted embeddings and labels (safetensors; PATH gets the task's name)")
    parser.add_argument("--classifier-seeds", type=int, default=None, help="seeds of the MLP classifier (5)")
    parser.add_argument("--embeddings", type=Path, nargs="+", default=None,
                        help="only classify embeddings written by --save-embeddings (no fitting)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/ift_2d3d.json"))
    args = parser.parse_args()
    seeds = args.classifier_seeds or (2 if args.quick else 5)
    if args.embeddings:
        from safetensors.torch import load_file

        rows = []
        for path in args.embeddings:
            print(f"{path}:", flush=True)
            rows.append({"embeddings": str(path), **classify(load_file(str(path)), seeds)})
        atomic_write_json(args.json, {"rows": rows, "config": {"classifier_seeds": seeds}})
        print(f"wrote {args.json}")
        return
    if args.quick:
        make = {"2d": lambda: image_task(args.source_2d, 48, 16),
                "3d": lambda: shape_task(per_class=10, points=512, rotations=min(args.rotations, 1),
                                         test_rotations=min(args.test_rotations, 1))}
        steps, infer_steps, analysed = 60, 30, 4
    else:
        make = {"2d": lambda: image_task(args.source_2d, 2500, 500),
                "3d": lambda: shape_task(per_class=200, points=args.points, rotations=args.rotations,
                                         test_rotations=args.test_rotations)}
        steps, infer_steps, analysed = 4000, 300, args.analysed or 50
    steps, infer_steps = args.steps or steps, args.infer_steps or infer_steps
    tasks = [make[name]() for name in args.tasks]
    rows = []
    for task in tasks:
        where = None if args.save_embeddings is None else \
            args.save_embeddings.with_name(f"{args.save_embeddings.stem}_{task['name'][:2].lower()}.safetensors")
        row = run(task, args.latent_dim, steps, infer_steps, analysed, where, seeds)
        rows.append(row)
        print(f"{row['task']}: {steps} steps, l={row['latent_dim']}, {row['train_instances']} train / "
              f"{row['test_instances']} test, "
              f"reconstruction {row['reconstruction_first']:.4f} -> {row['reconstruction_last']:.4f}; embedding "
              f"classifier train {100 * row['train_accuracy']:.1f} %, test {100 * row['test_accuracy']:.1f} % (RBF SVM "
              f"{100 * row['svm_test_accuracy']:.1f} %); "
              f"Hessians at {analysed} test optima: full rank {100 * row['fraction_full_rank']:.0f} %, positive "
              f"definite {100 * row['fraction_positive_definite']:.0f} %, median condition "
              f"{row['median_condition_number']:.3g} ({row['seconds']:.0f} s)", flush=True)
    report = {"rows": rows, "config": {"steps": steps, "infer_steps": infer_steps, "latent_reg": LATENT_REG,
                                       "latent_dim": args.latent_dim, "quick": args.quick, "head": "full, SiLU",
                                       "classifier": "MLP 64 hidden, 500 AdamW steps; and an RBF SVM on "
                                                     "standardised embeddings, C in {1, 3, 10, 30, 100} by 5-fold "
                                                     "CV (turned copies in their shape's fold)",
                                       "rotations": args.rotations, "test_rotations": args.test_rotations,
                                       "classifier_seeds": seeds}}
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
