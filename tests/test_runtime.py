"""The process around the code: tune_cpu_allocator (large tensors reuse freed memory instead of faulting in
fresh pages) and the test workers' share of the cores."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import worker_threads

SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from wslgraph.runtime import tune_cpu_allocator
    tuned = sys.argv[1] == "tuned" and tune_cpu_allocator()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # 64 MiB, allocated and freed once
    before = faults()
    for _ in range(5):
        torch.ones(64 * 2**20 // 4)
    print(tuned, faults() - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_stops_refaulting_large_tensors() -> None:
    results = {}
    for mode in ("default", "tuned"):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        tuned, faults = out.stdout.split()
        results[mode] = (tuned == "True", int(faults))
    assert results["tuned"][0] and not results["default"][0]
    pages = 5 * 64 * 2**20 // 4096
    assert results["default"][1] > 0.9 * pages  # every 64 MiB tensor is faulted in afresh
    assert results["tuned"][1] < 0.3 * pages  # freed blocks are reused (at most one more grows the heap)


def test_test_workers_split_the_cores() -> None:
    """Under ``make test`` (pytest-xdist) each worker's torch and the processes it starts use its share of cores."""
    assert [worker_threads(2, 2), worker_threads(16, 4), worker_threads(3, 2), worker_threads(1, 4)] == [1, 4, 1, 1]
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("one process (not under pytest-xdist): torch keeps its default threads")
    threads = worker_threads(len(os.sched_getaffinity(0)), int(workers))
    assert torch.get_num_threads() == threads and os.environ["OMP_NUM_THREADS"] == str(threads)
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) == threads
