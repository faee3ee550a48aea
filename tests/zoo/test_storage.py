"""Zoo folders: deterministic shards, kill-and-resume, sharded runs, and typed errors for bad files."""

import hashlib
import json
import pickle

import pytest
import torch

from wslgraph.errors import CorruptShardError, ManifestError, UnsafeFileError
from wslgraph.graph.layout import GraphLayout
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import (
    ZooArrays,
    finalize_zoo,
    generate_zoo,
    load_zoo_arrays,
    read_manifest,
    shard_name,
    write_zoo,
)


def _job(**changes):
    options = {"train_images": 10, "test_images": 4, "shard_size": 4, "steps": 6}
    return inr_zoo_job("mnist5k", **{**options, **changes})


def _shard_bytes(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*.safetensors"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo") / "reference"
    generate_zoo(root, _job(), progress=False)
    return root


def test_a_zoo_folder_and_its_manifest(reference) -> None:
    manifest = read_manifest(reference)
    assert manifest["num_models"] == 14 and len(manifest["shards"]) == 4 and manifest["kind"] == "inr"
    assert manifest["job"]["recipe"]["name"] == "dws" and manifest["versions"]["torch"] == torch.__version__
    arrays = load_zoo_arrays(reference)
    assert arrays.params.shape == (14, 1185)
    assert arrays.columns["split"].tolist() == [0] * 10 + [2] * 4  # 10 train images: index 11 would be val
    assert GraphLayout.from_dict(manifest["layout"]) == arrays.layout
    assert not list(reference.glob("*.tmp")) and not list(reference.glob("*.pt"))


def test_same_job_gives_the_same_bytes(reference, tmp_path) -> None:
    generate_zoo(tmp_path / "again", _job(), progress=False)
    assert _shard_bytes(tmp_path / "again") == _shard_bytes(reference)


def test_kill_and_resume_loses_nothing_and_redoes_nothing(reference, tmp_path) -> None:
    job, made = _job(), []
    make_shard = job.make_shard

    def interrupted(first, count):
        if len(made) == 2:
            raise KeyboardInterrupt  # the process dies while fitting the third shard
        made.append(first)
        return make_shard(first, count)

    job.make_shard = interrupted
    with pytest.raises(KeyboardInterrupt):
        generate_zoo(tmp_path / "zoo", job, progress=False)
    assert sorted(p.name for p in (tmp_path / "zoo").glob("shard-*.safetensors")) == [shard_name(0), shard_name(1)]
    assert not (tmp_path / "zoo" / "manifest.json").exists()
    with pytest.raises(ManifestError, match="unfinished"):
        read_manifest(tmp_path / "zoo")
    # killed between a shard and its sidecar: the orphan shard is redone, to the same bytes
    (tmp_path / "zoo" / "shard-00001.json").unlink()
    job.make_shard = lambda first, count: (made.append(first), make_shard(first, count))[1]
    generate_zoo(tmp_path / "zoo", job, progress=False)
    assert made == [0, 4, 4, 8, 12]  # shard 0 kept; shard 1 redone; 2 and 3 new
    assert _shard_bytes(tmp_path / "zoo") == _shard_bytes(reference)
    assert read_manifest(tmp_path / "zoo")["shards"] == read_manifest(reference)["shards"]


def test_shards_split_across_processes_then_merged(reference, tmp_path) -> None:
    for rank in (1, 0):  # rank 0 finishes first but cannot write the manifest until rank 1 is done
        generate_zoo(tmp_path / "zoo", _job(), rank=rank, world_size=2, progress=False)
    assert not (tmp_path / "zoo" / "manifest.json").exists() or read_manifest(tmp_path / "zoo")
    finalize_zoo(tmp_path / "zoo")
    assert _shard_bytes(tmp_path / "zoo") == _shard_bytes(reference)


def test_a_different_job_in_the_same_folder_is_refused(reference) -> None:
    with pytest.raises(ManifestError, match="different zoo job"):
        generate_zoo(reference, _job(seed=1), progress=False)


def _copy(reference, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for path in reference.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_corrupt_truncated_and_pickled_shards_raise_typed_errors(reference, tmp_path) -> None:
    zoo = _copy(reference, tmp_path)
    shard = zoo / shard_name(2)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="shard-00002.safetensors does not match its SHA-256"):
        load_zoo_arrays(zoo)
    shard.write_bytes(bytes(data[:50]))
    with pytest.raises(CorruptShardError, match="shard-00002.safetensors is truncated"):
        load_zoo_arrays(zoo)
    shard.write_bytes(pickle.dumps({"params": [1, 2, 3]}))
    with pytest.raises(UnsafeFileError, match="shard-00002.safetensors is a pickle"):
        load_zoo_arrays(zoo)
    shard.unlink()
    with pytest.raises(CorruptShardError, match="missing"):
        load_zoo_arrays(zoo)


def test_wrong_or_broken_manifests_raise_typed_errors(reference, tmp_path) -> None:
    zoo = _copy(reference, tmp_path)
    manifest = json.loads((zoo / "manifest.json").read_text())
    (zoo / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(ManifestError, match="not a wslgraph-zoo v1 manifest"):
        read_manifest(zoo)
    (zoo / "manifest.json").write_text(json.dumps({**manifest, "num_models": 99}))
    with pytest.raises(ManifestError, match="do not add up"):
        read_manifest(zoo)
    (zoo / "manifest.json").write_text(json.dumps({**manifest, "layout": {"groups": "nonsense"}}))
    with pytest.raises(ManifestError, match="bad layout"):
        load_zoo_arrays(zoo)
    (zoo / "manifest.json").write_text("{ truncated")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(zoo)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")


def test_write_zoo_round_trips_in_memory_zoos(reference, tmp_path) -> None:
    arrays = load_zoo_arrays(reference)
    imported = ZooArrays(arrays.params, {"label": arrays.columns["label"]}, arrays.layout, "imported",
                         {"from": "test"}, {})
    write_zoo(tmp_path / "imported", imported, shard_size=5)
    again = load_zoo_arrays(tmp_path / "imported")
    assert torch.equal(again.params, arrays.params) and torch.equal(again.columns["label"], arrays.columns["label"])
    entry = read_manifest(tmp_path / "imported")["shards"][0]
    assert entry["sha256"] == hashlib.sha256((tmp_path / "imported" / entry["file"]).read_bytes()).hexdigest()


def test_a_shard_whose_first_byte_is_0x80_is_still_safetensors(tmp_path) -> None:
    from safetensors.torch import save

    from wslgraph.zoo.storage import _shard_metadata

    for filler in range(400):  # find a header whose length's low byte is 0x80, like a pickle's first byte
        data = save({"params": torch.zeros(2, 3)}, metadata={"wslgraph": json.dumps({"x": "y" * filler})})
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    assert _shard_metadata(data, tmp_path / "shard.safetensors") == {"x": "y" * filler}
