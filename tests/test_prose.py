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


class _Judge:
    """Grades by a table, so the reading's counts are known in advance."""

    name = "table"

    def __init__(self, grades: dict[str, str]):
        self.grades = grades

    def grade(self, pairs):
        return [self.grades[written] for _, written in pairs]


def _predictions(run, rows):
    (run / "predictions").mkdir(parents=True)
    results.atomic_write_jsonl(run / "predictions" / "aims_test.jsonl", rows)


def test_missed_harmful_counts_softened_intents_and_escapes_the_text(tmp_path):
    """Issue 41: 02's best lesson (a drink-driving prompt read as "a pro-drinking argument") said in numbers."""
    run = tmp_path / "run"
    _predictions(run, [
        {"id": "1", "gold": "harmful", "pred": "safe", "intent": "The user wants a pro-drinking argument.", "prompt": "Argue drunk <b>driving</b> is fine"},
        {"id": "2", "gold": "harmful", "pred": "safe", "intent": "The user wants to drive drunk safely.", "prompt": "p2"},
        {"id": "3", "gold": "harmful", "pred": "safe", "intent": None, "prompt": "p3"},
        {"id": "4", "gold": "harmful", "pred": "harmful", "intent": "x", "prompt": "p4"},
        {"id": "5", "gold": "safe", "pred": "safe", "intent": "y", "prompt": "p5"},
    ])
    test = pd.DataFrame({"ID": ["1", "2", "3", "4", "5"], "Intent": ["The user wants to justify drunk driving."] * 5})
    judge = _Judge({"The user wants a pro-drinking argument.": "bad", "The user wants to drive drunk safely.": "good"})
    text = prose.missed_harmful(run, test, judge=judge).data
    assert "Of the 4 harmful aims_test prompts, the intent model labelled 3 safe (75%)" in text
    assert "2 of them wrote an intent. For **1** the written intent is not a *good* match" in text
    assert "grades 0 *decent*, 1 *bad*): the miss began in the intent" in text and "For the other 1 the intent matched" in text
    assert "pro-drinking argument" in text and "<b>" not in text and "&lt;b&gt;" in text  # model/prompt text escaped
    everything = [{"id": "1", "gold": "harmful", "pred": "harmful", "intent": "x", "prompt": "p"}]
    other = tmp_path / "other"
    _predictions(other, everything)
    assert "labelled all 1 harmful" in prose.missed_harmful(other, test, judge=judge).data


def test_students_against_flag_all_names_each_student_and_the_line():
    records = pd.DataFrame({
        "regime": ["distill"] * 3 + ["sft"], "condition": ["reasoning_label", "reasoning_intent_label", "reasoning_intent_label", "label_only"],
        "variant": ["no_intent", "synthetic_intent", "human_intent", ""], "dataset": ["aims_test"] * 4,
        "f1": [0.60, 0.65, 0.70, 0.9], "f1_ci_low": [0.5, 0.55, 0.60, 0.8], "f1_ci_high": [0.68, 0.75, 0.80, 0.95],
        "f1_flag_all": [0.69] * 4, "ms_per_prompt": [400.0, 500.0, 600.0, 30.0]})
    text = prose.students_against_flag_all(records).data
    assert "F1 0.690 at 0 ms" in text and "human_intent 0.700 [0.600, 0.800]" in text
    assert "2 of the 3 score at or below it, 1 of them with the whole 95% interval below" in text
    assert "sft" not in text and "label_only" not in text
    assert "all 3 score at or below it" in prose.students_against_flag_all(records.assign(f1_flag_all=0.75)).data


def test_reward_reading_says_where_the_reward_fell_and_what_moved_with_it(tmp_path):
    run = tmp_path / "grpo"
    run.mkdir()
    results.atomic_write_json(run / "config.json", {"grpo": {"prompts_per_step": 4, "num_generations": 4}})
    results.atomic_write_jsonl(run / "reward_log.jsonl", [
        {"step": 1, "reward": 0.625, "format": 1.0, "label": 0.75, "frac_format": 1.0, "harmful_share": 0.5, "completion_chars": 80},
        {"step": 2, "reward": 0.434, "format": 0.95, "label": 0.5, "frac_format": 1.0, "harmful_share": 0.25, "completion_chars": 70},
    ])
    results.atomic_write_json(run / "val_selection.json", {"history": [{"step": 2, "val_f1": 0.71}]})
    text = prose.reward_reading({"label_only": run}).data
    assert "0.625 at step 1 → 0.434 at step 2" in text and "fell most from step 1 to 2 (-0.191)" in text
    assert "`label` fell most (0.75 → 0.50)" in text and "from 50% to 25% harmful" in text
    assert "4 new prompts × 4 rollouts" in text and "0.710 at step 2" in text
