"""A trained run keeps the checkpoint with the best validation F1 (ties: the earlier step) and says so.

Real SFT steps on the tiny model; the validation F1 each pass reports is scripted, because the
random model's labels do not move with four steps: the test is of the choice, not of learning.
"""

import dataclasses

import pytest
import torch
from run_factory import SMOKE_MODEL
from safetensors.torch import load_file

from aims_kit.core import results
from aims_kit.core.params import SFTParams
from aims_kit.notebook import experiments
from aims_kit.scoring import evaluate as evaluation

PARAMS = {
    "model": SMOKE_MODEL, "profile": "test", "seed": 22, "max_steps": 4, "learning_rate": 1e-2, "batch_size": 4,
    "eval_steps": 1, "eval_limit": 4, "eval_batch_size": 8, "max_new_tokens": 8, "latency_sample": 0, "n_boot": 0,
}
#: Validation F1 at steps 1-4: the best is reached at step 2 and equalled at step 4.
SCRIPTED_F1 = [0.2, 0.6, 0.4, 0.6]


@pytest.fixture(scope="module")
def splits():
    loaded = experiments.load_splits("", 22)
    return dataclasses.replace(loaded, val=loaded.val.head(8))


@pytest.fixture(scope="module")
def scripted_run(splits, tmp_path_factory):
    """An SFT run whose validation passes report :data:`SCRIPTED_F1`; the test-split evaluation is real."""
    real, calls = evaluation.evaluate, []

    def scripted(model, tokenizer, frame, **kwargs):
        if kwargs.get("dataset") != "val":
            return real(model, tokenizer, frame, **kwargs)
        assert set(frame["split"]) == {"val"}  # selection never reads another split
        calls.append(len(calls))
        return {"f1": SCRIPTED_F1[len(calls) - 1], "parse_failure_rate": 0.0}, []

    patch = pytest.MonkeyPatch()
    patch.setattr(evaluation, "evaluate", scripted)
    try:
        run = experiments.sft_run(SFTParams.from_params(PARAMS), splits, "intent_label", tmp_path_factory.mktemp("select"))
    finally:
        patch.undo()
    assert len(calls) == 4
    return run


def test_the_adapter_is_the_best_validation_f1_checkpoint_and_a_tie_keeps_the_earlier(scripted_run):
    choice = results.read_json(scripted_run / "val_selection.json")
    assert choice["metric"] == "f1" and choice["split"] == "val"
    assert [(p["step"], p["val_f1"]) for p in choice["history"]] == list(zip([1, 2, 3, 4], SCRIPTED_F1))
    assert choice["best_step"] == 2
    kept = load_file(str(scripted_run / "adapter" / "adapter_model.safetensors"))
    at_2 = load_file(str(scripted_run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    at_4 = load_file(str(scripted_run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"))
    assert kept.keys() == at_2.keys()
    assert all(torch.equal(kept[k], at_2[k]) for k in kept)
    assert any(not torch.equal(kept[k], at_4[k]) for k in kept)  # the last step is another adapter


def test_every_record_of_the_run_names_the_step_and_the_curve(scripted_run):
    record = results.read_json(scripted_run / "results" / "aims_test.json")
    assert record["checkpoint_step"] == 2
    assert record["selected_checkpoint"]["history"][1] == {"step": 2, "val_f1": 0.6}
    assert "ties to the earlier step" in record["selected_checkpoint"]["rule"]


def test_without_the_f1_pass_the_validation_loss_chooses(splits, tmp_path):
    run = experiments.sft_run(SFTParams.from_params({**PARAMS, "max_steps": 2, "val_f1_curve": False}), splits,
                              "label_only", tmp_path)
    choice = results.read_json(run / "val_selection.json")
    losses = [(p["step"], p["eval_loss"]) for p in choice["history"]]
    assert choice["metric"] == "loss" and [step for step, _ in losses] == [1, 2]
    assert choice["best_step"] == min(losses, key=lambda pair: pair[1])[0]
