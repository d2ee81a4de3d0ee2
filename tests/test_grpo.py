"""A tiny GRPO run on the tiny random model: run folder, reward log, val-only checkpoint selection."""

import pytest

from aims_kit.core import results
from aims_kit.core.params import GRPOParams, SFTParams
from aims_kit.datasets.aims import SplitHygieneError
from aims_kit.notebook import experiments
from aims_kit.inference import generation
from aims_kit.training import grpo
from aims_kit.training.grpo import GRPOSettings, train_grpo

PARAMS = {
    "model": "tiny-random", "profile": "test", "seed": 22, "max_steps": 2, "epochs": 1.0, "learning_rate": 2e-3,
    "batch_size": 4, "eval_steps": 2, "eval_limit": 4, "max_new_tokens": 12,
    "grpo_steps": 2, "grpo_num_generations": 2, "grpo_prompts_per_step": 2, "grpo_eval_steps": 1,
    "grpo_learning_rate": 1e-3, "judge": "embedding",
}


@pytest.fixture(scope="module")
def splits():
    return experiments.load_splits("", 22)


def test_grpo_from_sft_writes_a_run_with_its_reward_log(splits, tmp_path, monkeypatch):
    rollouts = []
    real = generation.decode_batch
    monkeypatch.setattr(generation, "decode_batch", lambda model, tok, ids, *a, **kw: rollouts.append((len(ids), kw)) or real(model, tok, ids, *a, **kw))
    sft = experiments.sft_run(SFTParams.from_params(PARAMS), splits, "intent_label", tmp_path)
    rollouts.clear()
    run = experiments.grpo_run(GRPOParams.from_params(PARAMS), splits, "label_intent", tmp_path)
    # every rollout batch ran each prompt's pass once for its samples (validation decodes greedily)
    sampled = [(n, kw) for n, kw in rollouts if kw.get("temperature") is not None]
    assert sampled and all(kw["k"] == PARAMS["grpo_num_generations"] and n == PARAMS["grpo_prompts_per_step"] for n, kw in sampled)
    config = results.read_run_config(run)
    assert (config["regime"], config["condition"], config["variant"]) == ("grpo", "intent_label", "label_intent")
    assert config["parent_run"] == sft.name and config["grpo"]["start"] == "sft"
    log = results.read_jsonl(run / "reward_log.jsonl")
    assert [row["step"] for row in log] == [0, 1]
    for row in log:
        assert {"reward", "format", "label", "intent_length", "faithfulness", "frac_format", "completion_tokens"} <= set(row)
        assert 0 <= row["reward"] <= 1 and 0 < row["completion_tokens"] <= PARAMS["max_new_tokens"]
    selection = results.read_json(run / "val_selection.json")
    assert selection["split"] == "val" and [p["step"] for p in selection["history"]] == [1, 2]
    assert selection["best_step"] in (1, 2)
    # only the trained adapter is saved; TRL's frozen "ref" copy stays out of the run
    assert (run / "adapter" / "adapter_config.json").exists() and not (run / "adapter" / "ref").exists()
    record = results.read_json(run / "results" / "aims_test.json")
    assert record["regime"] == "grpo" and record["variant"] == "label_intent" and record["n"] == 4
    assert any("components/frac_format" in entry for entry in results.read_json(run / "train_log.json"))


def test_rollout_groups_are_runs_of_k_copies_or_nothing():
    assert grpo.shared_rollout_groups([[1, 2], [1, 2], [3], [3]], 2) == [[1, 2], [3]]
    assert grpo.shared_rollout_groups([[1, 2], [3], [1, 2], [3]], 2) is None  # interleaved: TRL's own path
    assert grpo.shared_rollout_groups([[1], [1], [1]], 2) is None


def test_grpo_refuses_test_rows_for_checkpoint_selection(splits, tmp_path):
    with pytest.raises(SplitHygieneError, match="checkpoint selection"):
        train_grpo("tiny-random", splits.train, splits.test, settings=GRPOSettings(start="base"), run_dir=tmp_path)


def test_grpo_settings_are_checked():
    with pytest.raises(ValueError, match="at least 2"):
        GRPOSettings(num_generations=1)
    with pytest.raises(ValueError, match="unknown reward set"):
        GRPOSettings(reward_set="vibes")


def test_dpo_and_grpo_refuse_an_sft_parent_trained_on_another_split(splits, tmp_path):
    from run_factory import adapter_run

    from aims_kit.core.params import DPOParams

    parent = adapter_run(tmp_path, "intent_label")  # seed 22, the kit's sample
    other = {**PARAMS, "seed": 23, "sft_run": str(parent)}
    with pytest.raises(SplitHygieneError, match="seed 22 .* this run has seed 23"):
        experiments.grpo_run(GRPOParams.from_params(other), experiments.load_splits("", 23), "label_only", tmp_path)
    with pytest.raises(SplitHygieneError, match="prompts the parent trained on"):
        experiments.mine_dpo_pairs(DPOParams.from_params(other), experiments.load_splits("", 23), parent)
    assert not results.find_runs(tmp_path, regime="grpo")  # refused before a run folder was made
    experiments.require_parent_split(parent, GRPOParams.from_params({**other, "seed": 22}))  # the same split passes
