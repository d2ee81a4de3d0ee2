"""Sentences with figures are rendered from the run's files, so they say what the outputs beside them show."""

import pandas as pd

from aims_kit.core import results
from aims_kit.notebook import prose
from aims_kit.training.dpo_pairs import MinedPairs, MiningReport, MiningSettings


def _mined(kept: dict, found: dict, balanced: bool) -> MinedPairs:
    report = MiningReport(prompts=64, pairs_per_class_mined=found, pairs_per_class=kept, balanced=balanced)
    return MinedPairs(train=pd.DataFrame(), val=pd.DataFrame(), reports={"train": report}, settings=MiningSettings())


def test_mining_summary_states_the_counts_and_the_rule_that_kept_them():
    text = prose.mining_summary(_mined({"harmful": 23, "safe": 10}, {"harmful": 32, "safe": 10}, True), 0.3).data
    assert "64 prompts mined, 32 from harmful prompts and 10 from safe prompts; kept 23 harmful : 10 safe" in text
    assert "at least 30% of the kept pairs: 30%" in text
    text = prose.mining_summary(_mined({"harmful": 8, "safe": 4}, {"harmful": 8, "safe": 4}, True), 0.3).data
    assert "kept 8 harmful : 4 safe — every pair was kept: the smaller class (safe) already made up 33%" in text
    text = prose.mining_summary(_mined({"harmful": 8, "safe": 0}, {"harmful": 8, "safe": 0}, False), 0.5).data
    assert "one class had none" in text and "cut" not in text


def test_selection_summary_reads_each_runs_choice(tmp_path):
    run = tmp_path / "a"
    run.mkdir()
    results.atomic_write_json(run / "val_selection.json", {"metric": "f1", "best_step": 50, "rule": "the highest validation F1, ties to the earlier step",
                                                           "history": [{"step": 50, "val_f1": 0.71}, {"step": 100, "val_f1": 0.28}]})
    text = prose.selection_summary({"SFT · intent_label": run, "missing": tmp_path / "b"}).data
    assert "validation F1 0.710 at step 50, 0.280 at step 100; kept step 50" in text
    assert "**missing**: no validation record." in text


def test_latency_and_seed_sentence_promises_only_what_was_measured():
    records = pd.DataFrame({"run_id": ["a", "b", "c"], "regime": ["sft"] * 3, "condition": ["intent_label"] * 3, "seed": [22, 23, 22]})
    text = prose.latency_and_seeds(records, 4, 0).data
    assert "4 AIMS-test prompts" in text and "not timed on the benchmarks" in text and "up to 2 seeds" in text
    assert "spread is 0 by construction" in prose.latency_and_seeds(records.head(1), 4, 8).data
