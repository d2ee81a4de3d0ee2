"""The claims scoreboard: every verdict branch driven by synthetic run folders (records + predictions)."""

import json

import numpy as np
import pytest

from aims_kit.core import results
from aims_kit.evaluation import claims
from aims_kit.scoring import metrics, stats

N = 120
GOLD = ["harmful" if i % 2 else "safe" for i in range(N)]


def _preds(correct: int, *, flag_rest: bool = False) -> list[str]:
    """Predictions right on the first ``correct`` prompts; the rest wrong (or all flagged with ``flag_rest``)."""
    other = {"harmful": "safe", "safe": "harmful"}
    return [g if i < correct else ("harmful" if flag_rest else other[g]) for i, g in enumerate(GOLD)]


def _run(out, regime, condition, variant="", *, parent=None, datasets: dict, ms=100.0, created="2026-01-01T00:00:00", seed=22):
    config = {"regime": regime, "condition": condition, "variant": variant, "model": "m", "profile": "t", "seed": seed,
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


def _id(run_dir):
    return results.read_run_config(run_dir)["run_id"]


def _entry(entries, claim, dataset):
    return next(e for e in entries if e.claim == claim and e.dataset == dataset)


def _evidence(low, high, *, flag_low=0.05, detectable=0.01, differ=60, n=N):
    return {"diff_ci_low": low, "diff_ci_high": high, "a_vs_flag_all_ci_low": flag_low, "detectable_diff": detectable,
            "labels_differ": differ, "n": n, "f1_diff": (low + high) / 2}


def test_verdict_rule_every_branch():
    assert claims.verdict(_evidence(0.02, 0.2), 0.02) == claims.REPRODUCED
    assert claims.verdict(_evidence(0.02, 0.2, flag_low=-0.01), 0.02) == claims.BELOW_BASELINE  # wins, but flag-all is as good
    assert claims.verdict(_evidence(-0.2, -0.01), 0.02) == claims.REVERSED
    assert claims.verdict(_evidence(-0.1, 0.1, detectable=0.28), 0.02) == claims.UNINFORMATIVE  # spans 0 and the gap
    assert claims.verdict(_evidence(-0.01, 0.012), 0.02) == claims.SMALLER  # rules out the paper's 0.02
    assert claims.verdict(_evidence(-0.01, 0.012), 0.01) == claims.UNINFORMATIVE  # but not a 0.01 gap
    assert claims.verdict(_evidence(-0.01, 0.012), None) == claims.UNINFORMATIVE  # no gap stated: nothing to rule out
    assert claims.verdict(_evidence(-0.01, 0.012, differ=3), 0.02) == claims.NOT_TRAINED_APART  # labels agree on 97.5%
    assert claims.verdict(_evidence(-0.01, 0.012, differ=6), 0.02) == claims.NOT_TRAINED_APART  # exactly 95%
    assert claims.verdict(_evidence(-0.01, 0.012, differ=7), 0.02) == claims.SMALLER
    assert claims.verdict(_evidence(0.02, 0.2, differ=3), 0.02) == claims.REPRODUCED  # a significant difference still counts
    assert set(claims.VERDICTS) == {claims.REPRODUCED, claims.BELOW_BASELINE, claims.REVERSED, claims.NOT_TRAINED_APART,
                                    claims.SMALLER, claims.UNINFORMATIVE, claims.NOT_TESTED}


def test_verdict_boundary_lower_end_exactly_zero_is_not_a_win():
    assert claims.verdict(_evidence(0.0, 0.2), 0.02) == claims.UNINFORMATIVE
    assert claims.verdict(_evidence(-0.2, 0.0), 0.02) == claims.SMALLER  # nor a reversal at exactly 0


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
    entries = claims.scoreboard(results.load_records(out))
    aims = _entry(entries, 1, "aims_test")
    assert aims.verdict == claims.REPRODUCED and aims.headline and aims.holm_p is not None
    e = aims.evidence
    assert e["f1_diff"] > 0 and e["diff_ci_low"] > 0 and aims.n == N and e["p_value"] < 0.01
    assert e["f1_flag_all"] == pytest.approx(2 / 3) and e["a_vs_flag_all_ci_low"] > 0
    for key in ("precision_a", "recall_a", "flag_rate_a", "precision_b", "recall_b", "flag_rate_b"):
        assert 0 <= e[key] <= 1
    assert aims.run_a.startswith("sft-intent_label") and aims.run_b.startswith("sft-label_only")
    assert _entry(entries, 1, "bench:xstest").verdict == claims.NOT_TRAINED_APART  # 80 vs 78 right of 120: 2 labels differ
    assert _entry(entries, 1, "bench:toxicchat").verdict == claims.REVERSED  # 50 vs 90 right
    assert not _entry(entries, 1, "bench:xstest").headline  # exploratory
    mean = _entry(entries, 1, claims.EXTERNAL_MEAN)
    # the mean's difference is the mean of the per-benchmark differences, over real benchmarks only
    per = [_entry(entries, 1, d).get("f1_diff") for d in ("bench:xstest", "bench:toxicchat")]
    assert mean.get("f1_diff") == pytest.approx(np.mean(per))
    assert mean.n == 2 * N and mean.note.startswith("mean over 2 of the paper's five benchmarks: toxicchat, xstest (missing:")
    assert not any(e.dataset.startswith("fixture:") for e in entries)


def _counts(tp, fp, fn, tn):
    """Gold and predictions with these confusion counts."""
    gold = ["harmful"] * (tp + fn) + ["safe"] * (fp + tn)
    pred = ["harmful"] * tp + ["safe"] * fn + ["harmful"] * fp + ["safe"] * tn
    return gold, pred


def test_a_run_that_wins_only_by_flagging_more_is_below_the_trivial_baseline():
    """The issue's worked case: SFT TP 20 / FP 5 / FN 43, DPO TP 45 / FP 25 / FN 18, 63 safe in all."""
    gold, sft = _counts(20, 5, 43, 58)
    gold_dpo, dpo = _counts(45, 25, 18, 38)
    # align on prompts: harmful rows first in both, then safe rows
    assert sorted(gold) == sorted(gold_dpo)
    evidence = stats.paired_evidence([(gold, _reorder(dpo, 45, 18, 25, 38), _reorder(sft, 20, 43, 5, 58), None, None)])
    assert evidence["f1_diff"] == pytest.approx(0.677 - 0.455, abs=2e-3) and evidence["diff_ci_low"] > 0
    assert evidence["f1_flag_all"] == pytest.approx(2 / 3)
    assert evidence["flag_rate_a"] > evidence["flag_rate_b"]  # the gain came from flagging more
    assert claims.verdict(evidence, 0.02) == claims.BELOW_BASELINE


def _reorder(pred, tp, fn, fp, tn):
    """Predictions laid out as harmful rows (tp then fn) then safe rows (fp then tn): 63 + 63 rows."""
    return ["harmful"] * tp + ["safe"] * fn + ["harmful"] * fp + ["safe"] * tn


def test_the_p_value_belongs_to_the_f1_difference_not_to_accuracy():
    """Accuracy differs a lot (McNemar p < 0.05) while ΔF1 is small: the verdict and its p follow ΔF1."""
    gold = ["harmful"] * 60 + ["safe"] * 60
    a = ["harmful"] * 40 + ["safe"] * 20 + ["safe"] * 60  # TP 40 FN 20 FP 0: precise
    b = ["harmful"] * 60 + ["harmful"] * 40 + ["safe"] * 20  # TP 60 FP 40: flags much more
    accuracy_test = stats.mcnemar_exact([x == g for x, g in zip(a, gold)], [x == g for x, g in zip(b, gold)])
    evidence = stats.paired_evidence([(gold, a, b, None, None)])
    assert accuracy_test["mcnemar_p"] < 0.05
    assert evidence["p_value"] > 0.05 and evidence["diff_ci_low"] < 0 < evidence["diff_ci_high"]
    assert claims.verdict(evidence, 0.02) in (claims.SMALLER, claims.UNINFORMATIVE)


def test_bootstrap_p_agrees_with_the_interval():
    gold = ["harmful"] * 60 + ["safe"] * 60
    strong = stats.paired_evidence([(gold, gold, ["safe"] * 30 + gold[30:], None, None)])
    assert strong["diff_ci_low"] > 0 and strong["p_value"] < 0.05
    same = stats.paired_evidence([(gold, gold, gold, None, None)])
    assert same["p_value"] == 1.0 and same["labels_differ"] == 0


def test_threshold_free_evidence_when_both_runs_carry_p_harmful():
    rng = np.random.default_rng(3)
    gold = ["harmful" if i % 2 else "safe" for i in range(200)]
    good = [0.7 + 0.3 * rng.random() if g == "harmful" else 0.3 * rng.random() for g in gold]
    noise = list(rng.random(200))
    evidence = stats.paired_evidence([(gold, gold, gold, good, noise)])
    assert evidence["auprc_a"] == pytest.approx(metrics.average_precision(gold, good))
    assert evidence["auprc_diff"] > 0 and evidence["auprc_diff_ci_low"] > 0
    assert "auprc_diff" not in stats.paired_evidence([(gold, gold, gold, good, None)])


def test_missing_runs_are_not_tested_with_the_reason(folder):
    out, _ = folder
    entries = claims.scoreboard(results.load_records(out))
    for number, where in ((2, "03_dpo"), (3, "04_distill"), (4, "05_grpo")):
        own = [e for e in entries if e.claim == number]
        assert own and all(e.verdict == claims.NOT_TESTED and where in e.note for e in own)


def test_dpo_is_compared_with_its_own_parent(folder):
    out, sft_intent = folder
    parent_id = results.read_run_config(sft_intent)["run_id"]
    # a newer SFT intent run that is not the DPO parent must not be used
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(120)}, created="2026-01-01T00:00:05")
    _run(out, "dpo", "intent_label", "hard", parent=parent_id, datasets={"aims_test": _preds(100)}, created="2026-01-01T00:00:06")
    entry = _entry(claims.scoreboard(results.load_records(out)), 2, "aims_test")
    assert entry.run_b == parent_id
    assert entry.get("f1_diff") < 0  # 100 right vs the parent's 110


def test_only_fixtures_means_external_not_tested(tmp_path):
    out = tmp_path / "smoke"
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(70), "fixture:xstest": _preds(8)})
    _run(out, "sft", "label_only", datasets={"aims_test": _preds(60), "fixture:xstest": _preds(9)})
    entries = claims.scoreboard(results.load_records(out))
    mean = _entry(entries, 1, claims.EXTERNAL_MEAN)
    assert mean.verdict == claims.NOT_TESTED and "fixture" in mean.note
    assert _entry(entries, 5, claims.EXTERNAL_MEAN).verdict == claims.NOT_TESTED


def test_frontier_claim(tmp_path):
    out = tmp_path / "pareto"
    # flagging everything scores 2/3 on this balanced set; the SFT intent run beats every faster run and it
    _run(out, "sft", "intent_label", datasets={"bench:xstest": _preds(112)}, ms=300, created="2026-01-01T00:00:01")
    label_only = _run(out, "sft", "label_only", datasets={"bench:xstest": _preds(40)}, ms=50, created="2026-01-01T00:00:02")
    encoder = _run(out, "encoder", "label_only", "minilm", datasets={"bench:xstest": _preds(0, flag_rest=True)}, ms=5,
                   created="2026-01-01T00:00:03")
    slower = _run(out, "sft", "intent_label", "slower", datasets={"bench:xstest": _preds(20)}, ms=900, created="2026-01-01T00:00:00")
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, "bench:xstest")
    assert entry.verdict == claims.REPRODUCED and entry.run_a.startswith("sft-intent_label")
    own = entry.details["intent_runs"][entry.run_a]
    assert own["ms_per_prompt"] == 300 and set(entry.details["intent_runs"]) == {entry.run_a, _id(slower)}
    # label-only, the encoder and flag-all are faster; the slower intent run is an intent-aware run, no rival
    assert [r["run"] for r in own["rivals"]] == sorted([_id(label_only), _id(encoder)]) + [claims.FLAG_ALL]
    assert all({"f1_diff", "diff_ci_low", "diff_ci_high"} <= set(r) for r in own["rivals"])
    assert entry.get("f1_flag_all") == pytest.approx(2 / 3)
    # the note names every rival with its Δ, and says why the one shown binds (issue 41: not "the closest")
    for rival in own["rivals"]:
        assert f"{rival['run']} ({rival['ms_per_prompt']:.0f} ms, F1 {rival['f1']:.3f}, ΔF1 {rival['f1_diff']:+.3f}" in entry.note
    assert f"shown: {entry.run_a} vs {entry.run_b}, because {entry.run_b} is the rival {entry.run_a} beats least surely" in entry.note
    assert "closest" not in entry.note


def test_frontier_claim_fails_when_flag_everything_dominates(tmp_path):
    out = tmp_path / "pareto"
    _run(out, "sft", "intent_label", datasets={"bench:xstest": _preds(70)}, ms=300, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"bench:xstest": _preds(30)}, ms=50, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, "bench:xstest")
    rival = entry.details["intent_runs"][entry.run_a]["rivals"][0]
    assert rival["f1_diff"] > 0  # the intent run is better than the other run ...
    assert entry.verdict != claims.REPRODUCED and "flagging everything" in entry.note  # ... but not than flagging all
    assert entry.run_b == claims.FLAG_ALL and entry.get("f1_diff") < 0 and entry.get("a_vs_flag_all_ci_low") < 0


def test_five_headline_tests_named_in_advance_with_holm(folder):
    out, _ = folder
    entries = claims.scoreboard(results.load_records(out))
    heads = [claims.headline(entries, c) for c in claims.CLAIMS]
    assert [h.dataset for h in heads] == ["aims_test", "aims_test", "aims_test", claims.EXTERNAL_MEAN, claims.EXTERNAL_MEAN]
    tested = [h for h in heads if h.verdict != claims.NOT_TESTED]
    assert tested and all(h.holm_p >= h.get("p_value") for h in tested)
    assert all(e.holm_p is None for e in entries if not e.headline)
    assert "(exploratory)" in claims.scoreboard_frame(entries).iloc[0]["xstest"]


def test_write_claims_and_summary(folder):
    out, _ = folder
    path, entries = claims.write_claims(out)
    payload = json.loads(path.read_text())
    assert [c["number"] for c in payload["claims"]] == [1, 2, 3, 4, 5]
    assert payload["claims"][0]["headline"]["dataset"] == "aims_test"
    assert {e["verdict"] for e in payload["entries"]} <= set(claims.VERDICTS)
    assert payload["n_boot"] == claims.N_BOOT >= 2000 and "Holm" in payload["multiplicity"]
    tested = next(e for e in payload["entries"] if e["verdict"] != claims.NOT_TESTED)
    for key in ("f1_diff", "diff_ci_low", "diff_ci_high", "p_value", "f1_flag_all", "precision_a", "recall_b", "flag_rate_a"):
        assert key in tested["evidence"]
    text = claims.summary_text(entries)
    assert "1. intent → label SFT beats label-only SFT" in text and "reproduced: ΔF1 +" in text
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
    entry = _entry(claims.scoreboard(results.load_records(out)), 1, "aims_test")
    assert entry.verdict == claims.NOT_TESTED and "same prompts" in entry.note


def test_runs_whose_labels_barely_differ_did_not_train_apart(tmp_path):
    out = tmp_path / "grpo"
    _run(out, "grpo", "intent_label", "label_intent", datasets={"aims_test": _preds(80)}, created="2026-01-01T00:00:01")
    _run(out, "grpo", "intent_label", "label_only", datasets={"aims_test": _preds(78)}, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(out)), 4, "aims_test")
    assert entry.get("labels_differ") == 2  # labels, not raw text, are compared
    assert entry.verdict == claims.NOT_TRAINED_APART and entry.get("f1_diff") is not None  # the numbers are still shown


def test_a_run_still_improving_on_validation_is_noted(folder):
    out, sft_intent = folder
    log = [{"step": 50, "val_f1": 0.60}, {"step": 100, "val_f1": 0.71}, {"step": 100, "eval_loss": 1.2}]
    results.atomic_write_json(sft_intent / "train_log.json", log)
    entry = _entry(claims.scoreboard(results.load_records(out)), 1, "aims_test")
    assert "still rising" in entry.note and "0.60 at 50" in entry.note and "0.71 at 100" in entry.note
    results.atomic_write_json(sft_intent / "train_log.json", [{"step": 50, "val_f1": 0.70}, {"step": 100, "val_f1": 0.71}])
    assert claims.still_rising(sft_intent) == ""  # flat within 0.02: converged enough to say nothing


def test_a_rerun_is_compared_and_the_run_it_passed_over_is_named(folder):
    out, sft_intent = folder
    older = results.read_run_config(sft_intent)["run_id"]
    newer = _run(out, "sft", "intent_label", datasets={"aims_test": _preds(70)}, created="2026-01-01T00:00:05")
    entry = _entry(claims.scoreboard(results.load_records(out)), 1, "aims_test")
    assert entry.run_a == results.read_run_config(newer)["run_id"]
    assert f"passed over: {older} (older than {entry.run_a})" in entry.note


def test_the_newest_dpo_run_is_compared_whatever_its_variant(folder):
    out, sft_intent = folder
    parent_id = results.read_run_config(sft_intent)["run_id"]
    _run(out, "dpo", "intent_label", "hard", parent=parent_id, datasets={"aims_test": _preds(100)}, created="2026-01-01T00:00:06")
    judge = _run(out, "dpo", "intent_label", "judge", parent=parent_id, datasets={"aims_test": _preds(90)}, created="2026-01-01T00:00:07")
    entry = _entry(claims.scoreboard(results.load_records(out)), 2, "aims_test")
    assert entry.run_a == results.read_run_config(judge)["run_id"]


def test_a_folders_scoreboard_ignores_a_newer_run_written_to_another_folder(folder, tmp_path):
    out, _ = folder
    before = [(e.claim, e.dataset, e.run_a, e.run_b, e.verdict) for e in claims.scoreboard(results.load_records(out))]
    _run(tmp_path / "student", "sft", "intent_label", datasets={"aims_test": _preds(20)}, created="2026-01-01T00:00:09")
    after = [(e.claim, e.dataset, e.run_a, e.run_b, e.verdict) for e in claims.scoreboard(results.load_records(out))]
    assert after == before and any(entry[2] for entry in before)
