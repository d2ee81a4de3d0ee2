"""Weight files follow the umask like everything else the kit writes (issue #42).

safetensors writes every ``adapter_model.safetensors`` and ``model.safetensors`` 0600; a class
sharing a run folder under umask 0022 must still be able to load them.
"""

import dataclasses
import os
import stat
from contextlib import contextmanager

import pytest
from run_factory import SMOKE_MODEL

from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams, SFTParams
from aims_kit.notebook import experiments


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder):
    """The permission bits of every file and every folder under ``folder`` (itself included)."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]
    return {stat.S_IMODE(p.stat().st_mode) for p in files}, {stat.S_IMODE(p.stat().st_mode) for p in folders}, files


@pytest.fixture(scope="module")
def splits():
    loaded = experiments.load_splits("", 22)
    return dataclasses.replace(loaded, val=loaded.val.head(8))


def test_share_like_umask_walks_a_folder_and_leaves_links_alone(tmp_path):
    folder = tmp_path / "run"
    (folder / "adapter").mkdir(parents=True)
    weights = folder / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"w")
    weights.chmod(0o600)
    (folder / "adapter").chmod(0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o600)
    (folder / "link").symlink_to(outside)
    with umask(0o022):
        results.share_like_umask(folder)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "adapter").stat().st_mode) == 0o755
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600  # a link's target is not the run's to change


def test_a_trained_sft_run_is_readable_by_the_class_adapter_and_checkpoints_included(splits, tmp_path):
    params = {"model": SMOKE_MODEL, "profile": "test", "seed": 22, "max_steps": 4, "learning_rate": 1e-2, "batch_size": 4,
              "eval_steps": 2, "eval_limit": 4, "eval_batch_size": 8, "max_new_tokens": 8, "latency_sample": 0, "n_boot": 0}
    with umask(0o022):
        run = experiments.sft_run(SFTParams.from_params(params), splits, "label_only", tmp_path)
    file_modes, folder_modes, files = modes(run)
    names = {p.name for p in files}
    assert "adapter_model.safetensors" in names
    assert sum(p.name == "adapter_model.safetensors" for p in files) >= 2  # the adapter and a checkpoint's
    assert file_modes == {0o644}, sorted((oct(stat.S_IMODE(p.stat().st_mode)), str(p.relative_to(run))) for p in files)
    assert folder_modes == {0o755}


def test_a_trained_encoder_run_is_readable_by_the_class(splits, tmp_path):
    from aims_kit.training import encoder

    params = {"encoder_max_steps": 2, "batch_size": 8, "eval_steps": 1, "seed": 22, "eval_limit": 8,
              "latency_sample": 0, "n_boot": 0}
    with umask(0o022):
        run = encoder.encoder_run(BenchmarkParams.from_params(params), splits, tmp_path)
    file_modes, folder_modes, files = modes(run)
    assert (run / "encoder" / "model.safetensors").exists()
    assert file_modes == {0o644}, sorted((oct(stat.S_IMODE(p.stat().st_mode)), str(p.relative_to(run))) for p in files)
    assert folder_modes == {0o755}
    record = results.read_json(run / "results" / "aims_test.json")
    assert {"auroc", "auprc"} <= set(record)  # and the record ranks by the head's P(harmful)


def test_the_tiny_models_weights_follow_the_umask(tmp_path):
    from aims_kit.models import tiny

    with umask(0o022):
        folder = tiny.build(tmp_path / "tiny")
    file_modes, folder_modes, _ = modes(folder)
    assert (folder / "model.safetensors").exists() and file_modes == {0o644} and folder_modes == {0o755}
