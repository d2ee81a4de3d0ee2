"""The claims scoreboard: every verdict branch driven by synthetic run folders (records + predictions)."""

import json

import numpy as np
import pytest

from aims_kit.core import results
from aims_kit.evaluation import claims
from aims_kit.scoring import metrics

N = 120
GOLD = ["harmful" if i % 2 else "safe" for i in range(N)]


def _preds(correct: int, *, flag_rest: bool = False) -> list[str]:
    """Predictions right on the first ``correct`` prompts; the rest wrong (or all flagged with ``flag_rest``)."""
    other = {"harmful": "safe", "safe": "harmful"}
    return [g if i < correct else ("harmful" if flag_rest else other[g]) for i, g in enumerate(GOLD)]


def _run(out, regime, condition, variant="", *, parent=None, datasets: dict, ms=100.0, created="2026-01-01T00:00:00"):
    config = {"regime": regime, "condition": condition, "variant": variant, "model": "m", "profile": "t", "seed": 22,
              "parent_run": parent}
    run = results.create_run(out, f"{regime}-{condition}", config)
    # runs created within one second keep a stable order through an explicit timestamp
    saved = results.read_run_config(run)
    saved["created"] = created
    (run / "config.json").write_text(json.dumps(saved))
    for dataset, pred in datasets.items():
        gold = GOLD
        record = {**metrics.binary_metrics(gold, pred), **metrics.trivial_baselines(gold), "ms_per_prompt": ms,
                  "parse_failure_rate": 0.0, "tokens_per_prompt": 5.0}
        rows = [{"id": str(i), "gold": g, "pred": p, "output": f"{regime} {condition} {variant} {p}"} for i, (g, p) in enumerate(zip(gold, pred))]
        results.write_record(run, dataset, record, rows)
    return run


def _entry(entries, claim, dataset):
    return next(e for e in entries if e.claim == claim and e.dataset == dataset)


def test_verdict_rule():
    assert claims.verdict(0.1, 0.02, 0.2) == claims.REPRODUCED
    assert claims.verdict(0.1, -0.02, 0.2) == claims.NOT_SIGNIFICANT
    assert claims.verdict(0.0, -0.1, 0.1) == claims.NOT_REPRODUCED
    assert claims.verdict(-0.1, -0.2, -0.01) == claims.NOT_REPRODUCED


@pytest.fixture()
def folder(tmp_path):
    """SFT: intent clearly better on AIMS test, slightly better on XSTest, worse on a second benchmark."""
    out = tmp_path / "run"
    sft_intent = _run(out, "sft", "intent_label", datasets={
        "aims_test": _preds(110), "bench:xstest": _preds(80), "bench:toxicchat": _preds(50), "fixture:aegis2": _preds(10),
    }, ms=200, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={
        "aims_test": _preds(60), "bench:xstest": _preds(78), "bench:toxicchat": _preds(90), "fixture:aegis2": _preds(12),
    }, ms=50, created="2026-01-01T00:00:02")
    return out, sft_intent


def test_sft_verdicts_per_dataset_and_mean(folder):
    out, _ = folder
    entries = claims.scoreboard(results.load_records(out), n_boot=300)
    aims = _entry(entries, 1, "aims_test")
    assert aims.verdict == claims.REPRODUCED
    assert aims.f1_diff > 0 and aims.diff_ci_low > 0 and aims.n == N and aims.mcnemar_p < 0.01
    assert aims.run_a.startswith("sft-intent_label") and aims.run_b.startswith("sft-label_only")
    assert _entry(entries, 1, "bench:xstest").verdict == claims.NOT_SIGNIFICANT
    assert _entry(entries, 1, "bench:toxicchat").verdict == claims.NOT_REPRODUCED
    mean = _entry(entries, 1, claims.EXTERNAL_MEAN)
    # the mean's difference is the mean of the per-benchmark differences, over real benchmarks only
    per = [_entry(entries, 1, d).f1_diff for d in ("bench:xstest", "bench:toxicchat")]
    assert mean.f1_diff == pytest.approx(np.mean(per))
    assert mean.n == 2 * N and "aegis2" not in mean.note
    assert not any(e.dataset.startswith("fixture:") for e in entries)


def test_missing_runs_are_not_tested_with_the_reason(folder):
    out, _ = folder
    entries = claims.scoreboard(results.load_records(out), n_boot=100)
    for number, where in ((2, "03_dpo"), (3, "04_distill"), (4, "05_grpo")):
        own = [e for e in entries if e.claim == number]
        assert own and all(e.verdict == claims.NOT_TESTED and where in e.note for e in own)


def test_dpo_is_compared_with_its_own_parent(folder):
    out, sft_intent = folder
    parent_id = results.read_run_config(sft_intent)["run_id"]
    # a newer SFT intent run that is not the DPO parent must not be used
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(120)}, created="2026-01-01T00:00:05")
    _run(out, "dpo", "intent_label", "hard", parent=parent_id, datasets={"aims_test": _preds(100)}, created="2026-01-01T00:00:06")
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=100), 2, "aims_test")
    assert entry.run_b == parent_id
    assert entry.verdict == claims.NOT_REPRODUCED  # 100 right vs the parent's 110


def test_only_fixtures_means_external_not_tested(tmp_path):
    out = tmp_path / "smoke"
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(70), "fixture:xstest": _preds(8)})
    _run(out, "sft", "label_only", datasets={"aims_test": _preds(60), "fixture:xstest": _preds(9)})
    entries = claims.scoreboard(results.load_records(out), n_boot=100)
    mean = _entry(entries, 1, claims.EXTERNAL_MEAN)
    assert mean.verdict == claims.NOT_TESTED and "fixture" in mean.note
    assert _entry(entries, 5, claims.EXTERNAL_MEAN).verdict == claims.NOT_TESTED


def test_frontier_claim(tmp_path):
    out = tmp_path / "pareto"
    # flagging everything scores 2/3 on this balanced set; intent run above it, label-only and encoder below
    _run(out, "sft", "intent_label", datasets={"bench:xstest": _preds(112)}, ms=300, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"bench:xstest": _preds(40)}, ms=50, created="2026-01-01T00:00:02")
    _run(out, "encoder", "label_only", "minilm", datasets={"bench:xstest": _preds(0, flag_rest=True)}, ms=5, created="2026-01-01T00:00:03")
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=200), 5, "bench:xstest")
    assert entry.verdict == claims.REPRODUCED
    frontier = entry.details["frontier"]
    assert [m["intent_aware"] for m in frontier] == [True]  # the others sit at or below flag-everything
    assert entry.details["flag_all_f1"] == pytest.approx(2 / 3)


def test_frontier_claim_fails_when_flag_everything_dominates(tmp_path):
    out = tmp_path / "pareto"
    _run(out, "sft", "intent_label", datasets={"bench:xstest": _preds(70)}, ms=300, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"bench:xstest": _preds(62)}, ms=50, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=200), 5, "bench:xstest")
    assert entry.f1_diff > 0  # the intent run is better than the other run ...
    assert entry.verdict == claims.NOT_REPRODUCED and "flagging everything" in entry.note  # ... but not than flagging all


def test_write_claims_and_summary(folder):
    out, _ = folder
    path, entries = claims.write_claims(out, n_boot=100)
    payload = json.loads(path.read_text())
    assert [c["number"] for c in payload["claims"]] == [1, 2, 3, 4, 5]
    assert payload["claims"][0]["headline"]["dataset"] == "aims_test"
    assert {e["verdict"] for e in payload["entries"]} <= set(claims.VERDICTS)
    text = claims.summary_text(entries)
    assert "1. intent → label SFT beats label-only SFT" in text and "reproduced (Δ +" in text
    frame = claims.scoreboard_frame(entries)
    assert list(frame.columns[:2]) == ["claim", "aims_test"] and len(frame) == 5


def test_empty_folder(tmp_path):
    entries = claims.scoreboard(results.load_records(tmp_path))
    assert {e.verdict for e in entries} == {claims.NOT_TESTED}


def test_runs_scored_on_different_prompts_are_not_tested(tmp_path):
    out = tmp_path / "mixed"
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(70)}, created="2026-01-01T00:00:01")
    other = _run(out, "sft", "label_only", datasets={"aims_test": _preds(60)}, created="2026-01-01T00:00:02")
    rows = results.read_jsonl(other / "predictions" / "aims_test.jsonl")[:24]  # another eval_limit
    results.atomic_write_jsonl(other / "predictions" / "aims_test.jsonl", rows)
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=100), 1, "aims_test")
    assert entry.verdict == claims.NOT_TESTED and "same prompts" in entry.note


def test_runs_that_did_not_train_apart_are_not_tested_at_this_budget(tmp_path):
    out = tmp_path / "grpo"
    a = _run(out, "grpo", "intent_label", "label_intent", datasets={"aims_test": _preds(80)}, created="2026-01-01T00:00:01")
    b = _run(out, "grpo", "intent_label", "label_only", datasets={"aims_test": _preds(78)}, created="2026-01-01T00:00:02")
    for run in (a, b):  # the same answers on all prompts but two
        rows = results.read_jsonl(run / "predictions" / "aims_test.jsonl")
        for row in rows:
            row["output"] = row["pred"]
        results.atomic_write_jsonl(run / "predictions" / "aims_test.jsonl", rows)
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=100), 4, "aims_test")
    assert entry.verdict == claims.NOT_TESTED and "at this budget" in entry.note and "98%" in entry.note
    assert entry.f1_diff is not None  # the numbers are still shown


def test_a_run_still_improving_on_validation_is_noted(folder):
    out, sft_intent = folder
    log = [{"step": 50, "val_f1": 0.60}, {"step": 100, "val_f1": 0.71}, {"step": 100, "eval_loss": 1.2}]
    results.atomic_write_json(sft_intent / "train_log.json", log)
    entry = _entry(claims.scoreboard(results.load_records(out), n_boot=100), 1, "aims_test")
    assert "still rising" in entry.note and "0.60 at 50" in entry.note and "0.71 at 100" in entry.note
    results.atomic_write_json(sft_intent / "train_log.json", [{"step": 50, "val_f1": 0.70}, {"step": 100, "val_f1": 0.71}])
    assert claims.still_rising(sft_intent) == ""  # flat within 0.02: converged enough to say nothing
