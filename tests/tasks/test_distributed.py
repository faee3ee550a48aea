"""Training under two gloo processes (as torchrun launches them) matches one process on the same data."""

import json
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from wslgraph.tasks import TrainConfig, build_model, train
from wslgraph.tasks.loop import init_distributed
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo

# without augmentation (the default): with it each process draws for its own share, not as one process draws
CONFIG = dict(epochs=2, batch_size=8, lr=3e-3, warmup_steps=2, patience=0, progress=False, augment="none")


def _join(rank: int, world: int, port: int) -> None:
    """Join a gloo group as torchrun's environment describes it (one thread: two processes share the cores)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert init_distributed() == (rank, world)


def _zoo_and_port(tmp_path, steps: int):
    """A zoo of 32 training INRs (every global batch of 8 splits evenly over 2 processes) and a free port."""
    zoo = tmp_path / "zoo"
    generate_zoo(zoo, inr_zoo_job("mnist5k", train_images=34, test_images=4, shard_size=38, steps=steps),
                 progress=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return zoo, probe.getsockname()[1]


def _run(rank: int, world: int, port: int, zoo: str, out: str) -> None:
    _join(rank, world, port)
    torch.manual_seed(1)
    model = build_model("gnn", 10, hidden=16, num_layers=2)
    result = train(model, ZooDataset(zoo, "train"), ZooDataset(zoo, "val"), TrainConfig(**CONFIG))
    if rank == 0:
        save_file({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))
        with open(os.path.join(out, "history.json"), "w") as file:
            json.dump(result["history"], file)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one(tmp_path) -> None:
    zoo, port = _zoo_and_port(tmp_path, steps=30)
    assert ZooDataset(zoo, "train").len() == 32
    mp.spawn(_run, args=(2, port, str(zoo), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(1)
    single = build_model("gnn", 10, hidden=16, num_layers=2)
    expected = train(single, ZooDataset(zoo, "train"), ZooDataset(zoo, "val"), TrainConfig(**CONFIG))
    history = json.loads((tmp_path / "history.json").read_text())
    for a, b in zip(history, expected["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_accuracy"] == b["val_accuracy"]
    distributed = load_file(tmp_path / "model.safetensors")
    for key, value in single.state_dict().items():  # all-reduce sums in another order: Adam makes that 1e-5
        torch.testing.assert_close(distributed[key], value, rtol=1e-4, atol=5e-5, msg=key)


def _run_diverging(rank: int, world: int, port: int, zoo: str, out: str) -> None:
    from tests.models import Diverging
    from wslgraph.errors import NonFiniteError

    _join(rank, world, port)
    try:  # NaN on rank 1 only, at its second training step
        train(Diverging(after=2, rank=1), ZooDataset(zoo, "train"), ZooDataset(zoo, "val"), TrainConfig(**CONFIG))
    except NonFiniteError as error:
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as file:
            file.write(str(error))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_non_finite_loss_in_one_process_stops_every_process_at_the_same_step(tmp_path) -> None:
    zoo, port = _zoo_and_port(tmp_path, steps=5)
    mp.spawn(_run_diverging, args=(2, port, str(zoo), str(tmp_path)), nprocs=2, join=True)
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert "became nan at epoch 0, step 1" in messages[1]
    assert "became non-finite in another process at epoch 0, step 1" in messages[0]


def _represent(rank: int, world: int, port: int, zoo: str, out: str, options: object, changes: dict) -> None:
    from wslgraph.tasks import train_representation

    _join(rank, world, port)
    train_representation(zoo, out, options, TrainConfig(**(CONFIG | changes)))
    dist.destroy_process_group()


def _contrast(rank: int, world: int, port: int, out: str) -> None:
    from wslgraph.represent import contrastive_losses

    _join(rank, world, port)
    a, b = (torch.randn(5, 4, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1))
    share = slice(0, 3) if rank == 0 else slice(3, 5)  # unequal shares: 3 and 2 models
    mine = [x[share].clone().requires_grad_(True) for x in (a, b)]
    losses = contrastive_losses(*mine, 0.5)
    (losses * torch.arange(1.0, 6.0)[share]).sum().backward()  # weighted: every row's gradient is distinct
    save_file({"losses": losses.detach(), "grad_a": mine[0].grad, "grad_b": mine[1].grad},
              os.path.join(out, f"rank{rank}.safetensors"))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_contrastive_negatives_come_from_the_whole_global_batch(tmp_path) -> None:
    """Under torch.distributed each process's NT-Xent losses, and the gradients that reach its own rows, are those
    of one process holding the whole batch, with unequal shares too."""
    from wslgraph.represent import nt_xent

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_contrast, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    parts = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1)]
    a, b = (torch.randn(5, 4, generator=torch.Generator().manual_seed(seed)).requires_grad_(True) for seed in (0, 1))
    losses = nt_xent(a, b, 0.5)
    (losses * torch.arange(1.0, 6.0)).sum().backward()
    torch.testing.assert_close(torch.cat([part["losses"] for part in parts]), losses.detach())
    torch.testing.assert_close(torch.cat([part["grad_a"] for part in parts]), a.grad)
    torch.testing.assert_close(torch.cat([part["grad_b"] for part in parts]), b.grad)
    assert not torch.allclose(nt_xent(a[:3], b[:3], 0.5), losses[:3])  # a share alone has other negatives


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_representation_trains_the_same_in_two_processes(tmp_path) -> None:
    """``wslgraph represent`` under torchrun: two gloo processes train the representation one process trains,
    reconstruction and NT-Xent (negatives gathered from every process), without random views, so that both runs
    see the same models: the shares' gradients average to the whole batch's."""
    from wslgraph.represent import RepresentOptions
    from wslgraph.tasks import train_representation

    options = RepresentOptions(gamma=0.5, noise=0.0, erase=0.0, latent=8, encoder_options={"hidden": 16,
                                                                                           "num_layers": 2})
    zoo, port = _zoo_and_port(tmp_path, steps=10)
    mp.spawn(_represent, args=(2, port, str(zoo), str(tmp_path / "ddp"), options, {}), nprocs=2, join=True)
    train_representation(zoo, tmp_path / "one", options, TrainConfig(**CONFIG))
    lines = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
             for run in ("ddp", "one")]
    assert len(lines[0]) == len(lines[1]) == CONFIG["epochs"]
    for a, b in zip(*lines):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    for key, value in load_file(tmp_path / "one" / "best.safetensors").items():
        torch.testing.assert_close(load_file(tmp_path / "ddp" / "best.safetensors")[key], value, rtol=1e-4,
                                   atol=5e-5, msg=key)
    # reconstruction alone (gamma 0) leaves the projection head out of every step, and global batches of 3 give
    # one process a single model: the processes still agree on every step and finish
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_represent, args=(2, port, str(zoo), str(tmp_path / "contrastive"), RepresentOptions(
        gamma=0.0, latent=8, encoder_options={"hidden": 16, "num_layers": 2}), {"batch_size": 3, "epochs": 1}),
        nprocs=2, join=True)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "contrastive" / "metrics.jsonl").open()]
    assert len(losses) == 1 and all(math.isfinite(loss) for loss in losses)
