"""A small MNIST-5k INR zoo shared by the task tests (generated once per test session)."""

import pytest

from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo


@pytest.fixture(scope="session")
def inr_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo") / "inr"
    generate_zoo(root, inr_zoo_job("mnist5k", train_images=72, test_images=20, shard_size=48, steps=60),
                 progress=False)
    return root
