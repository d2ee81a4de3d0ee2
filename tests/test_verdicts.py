"""Issue #38's statistics: Holm decides a headline, per-claim gaps, the verdict vocabulary, the frontier
test, seeds, the power table and the external mean, on synthetic run folders with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from test_claims import GOLD, N, _entry, _id, _preds, _run

from aims_kit.core import results
from aims_kit.evaluation import claims

OTHER = {"harmful": "safe", "safe": "harmful"}


def _wrong(indices) -> list[str]:
    """Predictions wrong exactly on ``indices``."""
    wrong = set(indices)
    return [OTHER[g] if i in wrong else g for i, g in enumerate(GOLD)]


def _evidence(low, high, diff, *, flag_low=0.05, differ=60):
    return {"diff_ci_low": low, "diff_ci_high": high, "f1_diff": diff, "a_vs_flag_all_ci_low": flag_low,
            "labels_differ": differ, "n": N}


def test_a_headline_follows_its_holm_p_not_its_unadjusted_interval():
    above_zero = _evidence(0.01, 0.2, 0.1)  # the plain interval excludes 0 ...
    assert claims.verdict(above_zero, 0.02) == claims.REPRODUCED  # ... which decides an exploratory cell
    assert claims.verdict(above_zero, 0.02, holm_p=0.07) == claims.UNINFORMATIVE  # a headline: Holm p 0.07 decides
    assert claims.verdict(_evidence(-0.2, -0.01, -0.1), 0.02, holm_p=0.07) == claims.SMALLER  # nor reversed
    assert claims.verdict(_evidence(-0.2, -0.01, -0.1), 0.02, holm_p=0.01) == claims.REVERSED  # direction: the sign of ΔF1
    assert claims.holm_level(0.01, 0.05) == pytest.approx(0.99)  # Holm multiplied p by 5: the 1 − α/5 interval


def test_holm_turns_a_nominal_win_into_no_verdict_on_the_scoreboard(tmp_path):
    """Claim 1: permutation p ≈ 0.035 (< 0.05); claim 3's runs are identical (p = 1), so Holm doubles it past 0.05."""
    out = tmp_path / "holm"
    _run(out, "sft", "intent_label", datasets={"aims_test": _wrong(range(6))}, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"aims_test": _wrong(range(6, 22))}, created="2026-01-01T00:00:02")
    for variant in ("human_intent", "no_intent"):
        _run(out, "distill", "reasoning_intent_label", variant, datasets={"aims_test": _preds(90)}, created="2026-01-01T00:00:03")
    records = results.load_records(out)
    entry = _entry(claims.scoreboard(records), 1, "aims_test")
    assert entry.get("p_method") == "permutation" and entry.get("p_value") < 0.05
    assert entry.holm_p == pytest.approx(2 * entry.get("p_value")) and entry.holm_p > 0.05
    assert entry.verdict not in (claims.REPRODUCED, claims.BELOW_BASELINE, claims.REVERSED)
    # the interval beside it is Holm's (97.5% for the second of two steps) and agrees: it reaches 0
    assert entry.get("ci_level") == pytest.approx(0.975) and entry.get("diff_ci_low") <= 0
    assert "97.5% Holm interval" in claims.scoreboard_frame([entry]).iloc[0]["aims_test"]
    # the same comparison read alone (a notebook's table, no Holm) would have said reproduced
    alone = _entry(claims.scoreboard(records, only=1), 1, "aims_test")
    assert alone.verdict == claims.REPRODUCED and alone.get("diff_ci_low") > 0 and alone.get("ci_level") == 0.95
    assert _entry(claims.scoreboard(records), 3, "aims_test").get("p_value") == 1.0


def test_each_claim_states_its_own_gap():
    assert {c.number: c.gap for c in claims.CLAIMS} == {1: 0.02, 2: 0.02, 3: 0.02, 4: 0.01, 5: None}
    interval = _evidence(-0.005, 0.015, 0.005)
    assert claims.verdict(interval, claims.CLAIMS[1].gap) == claims.SMALLER  # rules out DPO's 0.02
    assert claims.verdict(interval, claims.CLAIMS[3].gap) == claims.UNINFORMATIVE  # cannot rule out GRPO's 0.01
    assert not hasattr(claims, "PAPER_GAP")  # no single gap applied to every claim


def test_entries_carry_their_claims_gap(tmp_path):
    out = tmp_path / "grpo"
    _run(out, "grpo", "intent_label", "label_intent", datasets={"aims_test": _preds(100)}, created="2026-01-01T00:00:01")
    _run(out, "grpo", "intent_label", "label_only", datasets={"aims_test": _preds(80)}, created="2026-01-01T00:00:02")
    entries = claims.scoreboard(results.load_records(out))
    assert _entry(entries, 4, "aims_test").paper_gap == 0.01
    assert {e.paper_gap for e in entries if e.claim == 2} == {0.02}  # not tested, but the gap is stated
    assert {e.paper_gap for e in entries if e.claim == 5} == {None}


def test_runs_that_did_not_train_apart_have_their_own_verdict(tmp_path):
    out = tmp_path / "same"
    _run(out, "sft", "intent_label", datasets={"aims_test": _wrong([*range(100, 120), 0, 1])}, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"aims_test": _wrong([*range(100, 120), 2, 3, 4])}, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(out), only=1), 1, "aims_test")
    assert entry.get("labels_differ") == 5 and entry.verdict == claims.NOT_TRAINED_APART  # 5 of 120 (4%) differ
    assert "detectable Δ" in claims.scoreboard_frame([entry]).iloc[0]["aims_test"]
    apart = tmp_path / "apart"  # 7 of 120 (5.8%) differ: the runs trained apart, and the interval is read against the gap
    _run(apart, "sft", "intent_label", datasets={"aims_test": _wrong([*range(100, 120), 0, 1, 2])}, created="2026-01-01T00:00:01")
    _run(apart, "sft", "label_only", datasets={"aims_test": _wrong([*range(100, 120), 3, 4, 5, 6])}, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(apart), only=1), 1, "aims_test")
    assert entry.get("labels_differ") == 7 and entry.verdict == claims.UNINFORMATIVE


def test_a_tie_in_latency_is_a_rival_and_it_can_reverse_the_frontier(tmp_path):
    out = tmp_path / "tied"
    intent = _run(out, "sft", "intent_label", datasets={"aims_test": _preds(100)}, ms=100, created="2026-01-01T00:00:01")
    weaker = _run(out, "sft", "label_only", datasets={"aims_test": _preds(90)}, ms=100, created="2026-01-01T00:00:02")
    better = _run(out, "encoder", "label_only", "minilm", datasets={"aims_test": _preds(118)}, ms=100, created="2026-01-01T00:00:03")
    _run(out, "encoder", "label_only", "large", datasets={"aims_test": _preds(120)}, ms=101, created="2026-01-01T00:00:04")
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, "aims_test")
    rivals = entry.details["intent_runs"][_id(intent)]["rivals"]
    assert [r["run"] for r in rivals] == sorted([_id(weaker), _id(better)]) + [claims.FLAG_ALL]  # 101 ms is slower
    assert all(r["ms_per_prompt"] <= 100 and r["diff_ci_high"] > r["diff_ci_low"] for r in rivals)
    # the equally fast, better encoder beats the only intent-aware run: the claim is reversed, and it is the one shown
    assert entry.verdict == claims.REVERSED and (entry.run_a, entry.run_b) == (_id(intent), _id(better))
    assert entry.get("f1_diff") < 0


def test_the_binding_rival_is_the_closest_one_not_the_first(tmp_path):
    """Two equally fast rivals: the one the intent run barely beats is shown, whatever the order of their ids."""
    out = tmp_path / "binding"
    intent = _run(out, "sft", "intent_label", datasets={"aims_test": _preds(110)}, ms=100, created="2026-01-01T00:00:01")
    _run(out, "encoder", "label_only", "a", datasets={"aims_test": _preds(80)}, ms=50, created="2026-01-01T00:00:02")
    close = _run(out, "sft", "label_only", datasets={"aims_test": _wrong(range(2, 16))}, ms=50, created="2026-01-01T00:00:03")
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, "aims_test")
    own = entry.details["intent_runs"][_id(intent)]
    assert entry.run_b == _id(close) and own["p_on_frontier"] == entry.get("p_a_better")
    assert own["p_on_frontier"] == max(r["p_a_better"] for r in own["rivals"])


def test_a_rival_that_loses_to_flag_all_is_off_the_frontier(tmp_path):
    """The intent run is below flag-all (one-sided p ≈ 0.02); a faster run flagging nothing is off the frontier.

    Counted as a rival it would double the reversal's Bonferroni factor (p ≈ 0.08, no verdict);
    off the frontier, flag-all alone is the rival and the claim is reversed (p ≈ 0.04).
    """
    out = tmp_path / "off"
    harmful, safe = [i for i in range(N) if i % 2], [i for i in range(N) if not i % 2]
    unflagged = set(harmful[:9]) | set(safe[:6])
    intent = _run(out, "sft", "intent_label", datasets={"bench:xstest": ["safe" if i in unflagged else "harmful" for i in range(N)]},
                  ms=300, created="2026-01-01T00:00:01")
    silent = _run(out, "encoder", "label_only", "silent", datasets={"bench:xstest": ["safe"] * N}, ms=5, created="2026-01-01T00:00:02")
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, claims.EXTERNAL_MEAN)
    rivals = {r["run"]: r for r in entry.details["intent_runs"][_id(intent)]["rivals"]}
    assert rivals[_id(silent)]["off_frontier"] and rivals[_id(silent)]["f1_diff"] > 0  # listed, with its Δ ...
    assert entry.details["against_flag_all"][_id(silent)]["diff_ci_high"] < 0  # ... because flag-all beats it
    assert not rivals[claims.FLAG_ALL]["off_frontier"] and "off the frontier" in entry.note
    assert entry.details["p_reversed"] == pytest.approx(1 - rivals[claims.FLAG_ALL]["p_a_better"])  # one rival, no factor 2
    assert entry.headline and entry.holm_p < 0.05 and entry.verdict == claims.REVERSED
    assert (entry.run_a, entry.run_b) == (_id(intent), claims.FLAG_ALL)


def test_seeds_take_the_two_level_bootstrap_and_widen_the_interval(tmp_path):
    out = tmp_path / "seeds"
    rng = np.random.default_rng(4)
    for seed, error in ((1, 0.05), (2, 0.3)):  # two seeds of one experiment that trained very differently
        wrong = np.flatnonzero(rng.random(N) < error)
        _run(out, "sft", "intent_label", datasets={"aims_test": _wrong(wrong)}, created=f"2026-01-01T00:00:0{seed}", seed=seed)
    _run(out, "sft", "label_only", datasets={"aims_test": _wrong(range(0, 120, 6))}, created="2026-01-01T00:00:05", seed=1)
    both = _entry(claims.scoreboard(results.load_records(out), only=1), 1, "aims_test")
    assert both.get("seeds_a") == 2 and both.get("seeds_b") == 1 and both.get("p_method") == "two-level bootstrap"
    assert "two-level bootstrap" in both.note and "2 seeds" in both.note
    records = results.load_records(out)
    one_seed = records[(records["condition"] == "label_only") | (records["seed"] == 2)]  # the noisier seed alone
    one = _entry(claims.scoreboard(one_seed, only=1), 1, "aims_test")
    assert one.get("seeds_a") == 1 and "covers prompts only" in one.note
    width = lambda e: e.get("diff_ci_high") - e.get("diff_ci_low")  # noqa: E731
    assert width(both) > width(one)


def test_power_table_on_a_hand_made_example():
    def entry(number, verdict, n, differ, detectable):
        claim = claims.CLAIMS[number - 1]
        return claims.Entry(claim=number, name=claim.name, dataset=claim.headline, verdict=verdict, n=n, headline=True,
                            evidence={"labels_differ": differ, "detectable_diff": detectable})

    entries = [entry(1, claims.UNINFORMATIVE, 120, 30, 0.1), entry(4, claims.SMALLER, 400, 20, 0.03),
               entry(5, claims.UNINFORMATIVE, 400, 100, 0.05)]
    table = claims.power_table(entries).set_index("claim")
    assert claims.HOLM_SAMPLE_FACTOR == pytest.approx(1.49, abs=0.005)
    assert table.loc[1, "discordance"] == 0.25 and table.loc[1, "detectable_diff"] == 0.1
    assert table.loc[1, "prompts_needed"] == 3000  # 120 × (0.1 / 0.02)²
    assert table.loc[1, "prompts_needed_holm"] == math.ceil(3000 * claims.HOLM_SAMPLE_FACTOR)
    assert table.loc[4, "prompts_needed"] == 3600 and table.loc[4, "paper_gap"] == 0.01  # 400 × (0.03 / 0.01)²
    assert table.loc[5, "discordance"] == 0.25 and pd.isna(table.loc[5, "prompts_needed"])  # no gap stated
    assert table.loc[2, "verdict"] == claims.NOT_TESTED and pd.isna(table.loc[2, "detectable_diff"])


def test_the_external_mean_averages_the_papers_five_only(tmp_path):
    out = tmp_path / "mean"
    sets = {"bench:xstest": (100, 80), "bench:toxicchat": (90, 95), "bench:harmbench": (120, 30), "bench:simplesafetytests": (40, 110)}
    _run(out, "sft", "intent_label", datasets={d: _preds(a) for d, (a, _) in sets.items()}, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={d: _preds(b) for d, (_, b) in sets.items()}, created="2026-01-01T00:00:02")
    entries = claims.scoreboard(results.load_records(out))
    mean = _entry(entries, 1, claims.EXTERNAL_MEAN)
    per = [_entry(entries, 1, d).get("f1_diff") for d in ("bench:toxicchat", "bench:xstest")]
    assert mean.get("f1_diff") == pytest.approx(np.mean(per)) and mean.n == 2 * N
    assert mean.note.startswith("mean over 2 of the paper's five benchmarks: toxicchat, xstest "
                                "(missing: wildguardtest, aegis2, openai_moderation)")
    assert not _entry(entries, 1, "bench:harmbench").headline  # other benchmarks keep their own, exploratory, cells
    assert _entry(entries, 5, claims.EXTERNAL_MEAN).n == 2 * N

    only_others = tmp_path / "others"
    _run(only_others, "sft", "intent_label", datasets={"bench:harmbench": _preds(120)}, created="2026-01-01T00:00:01")
    _run(only_others, "sft", "label_only", datasets={"bench:harmbench": _preds(30)}, created="2026-01-01T00:00:02")
    mean = _entry(claims.scoreboard(results.load_records(only_others)), 1, claims.EXTERNAL_MEAN)
    assert mean.verdict == claims.NOT_TESTED and "none of the paper's five" in mean.note
