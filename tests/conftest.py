"""Test-session setup shared by every test module.

``make test`` runs the suite on pytest-xdist workers (``-n N --dist loadscope``: each module's tests on one
worker, so module fixtures are built once). Torch's intra-op threads and OpenMP's (inherited by the scripts
and CLI commands the tests start) are split evenly among the workers: two processes that each use every core
slow each other down several times over.
"""

import os

import torch


def worker_threads(cpus: int, workers: int) -> int:
    """Threads for each of ``workers`` processes sharing ``cpus`` cores (at least one)."""
    return max(1, cpus // max(1, workers))


def pytest_configure(config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:  # one process: torch's own default
        return
    threads = worker_threads(len(os.sched_getaffinity(0)), int(workers))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
