"""Bootstrap intervals, the paired comparison, seed aggregation and slice F1 on cases with known answers."""

import numpy as np
import pandas as pd
import pytest

from aims_kit.core import results
from aims_kit.scoring import stats
from aims_kit.scoring.metrics import binary_metrics


def _noisy(n, error_rate, seed=0):
    rng = np.random.default_rng(seed)
    gold = ["harmful" if i % 2 else "safe" for i in range(n)]
    flip = rng.random(n) < error_rate
    pred = [("safe" if g == "harmful" else "harmful") if f else g for g, f in zip(gold, flip)]
    return gold, pred


def test_perfect_predictions_give_a_degenerate_interval_at_one():
    gold = ["harmful", "safe"] * 20
    ci = stats.bootstrap_ci(gold, gold, n_boot=300)
    assert ci["f1_ci_low"] == ci["f1_ci_high"] == 1.0
    assert ci["precision_ci_low"] == ci["recall_ci_high"] == 1.0


def test_interval_contains_the_estimate_and_shrinks_with_n():
    widths = []
    for n in (60, 600, 3000):
        gold, pred = _noisy(n, 0.25)
        f1 = binary_metrics(gold, pred)["f1"]
        ci = stats.bootstrap_ci(gold, pred, n_boot=500, seed=3)
        assert ci["f1_ci_low"] < f1 < ci["f1_ci_high"]
        widths.append(ci["f1_ci_high"] - ci["f1_ci_low"])
    assert widths[0] > widths[1] > widths[2]
    # roughly 1/sqrt(n): 50x the data, about 7x narrower
    assert 4 < widths[0] / widths[2] < 11


def test_bootstrap_is_seeded():
    gold, pred = _noisy(200, 0.3)
    assert stats.bootstrap_ci(gold, pred, n_boot=200, seed=5) == stats.bootstrap_ci(gold, pred, n_boot=200, seed=5)
    assert stats.bootstrap_ci(gold, pred, n_boot=200, seed=5) != stats.bootstrap_ci(gold, pred, n_boot=200, seed=6)


def test_identical_runs_differ_by_exactly_zero():
    gold, pred = _noisy(300, 0.3)
    result = stats.paired_comparison(gold, pred, pred, n_boot=300)
    assert result["f1_diff"] == result["diff_ci_low"] == result["diff_ci_high"] == 0.0
    assert result["mcnemar_p"] == 1.0 and not result["a_better"] and not result["b_better"]


def test_a_clearly_better_run_wins_and_a_noisy_tie_does_not():
    gold, good = _noisy(400, 0.05, seed=1)
    _, bad = _noisy(400, 0.35, seed=2)
    result = stats.paired_comparison(gold, good, bad, n_boot=500)
    assert result["a_better"] and result["diff_ci_low"] > 0 and result["mcnemar_p"] < 1e-6
    swapped = stats.paired_comparison(gold, bad, good, n_boot=500)
    assert swapped["b_better"] and not swapped["a_better"]
    _, other = _noisy(400, 0.35, seed=3)
    tie = stats.paired_comparison(gold, bad, other, n_boot=500)
    assert tie["diff_ci_low"] < 0 < tie["diff_ci_high"] and not (tie["a_better"] or tie["b_better"])


def test_mcnemar_exact_matches_the_binomial():
    a = [True] * 10 + [False] * 2 + [True] * 30
    b = [False] * 10 + [True] * 2 + [True] * 30
    result = stats.mcnemar_exact(a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 2)
    # Two-sided exact binomial on the 12 discordant pairs, by hand: 2 * P(X <= 2), X ~ Bin(12, 1/2)
    # = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12 = 2 * (1 + 12 + 66) / 4096.
    assert result["mcnemar_p"] == pytest.approx(158 / 4096)
    assert stats.mcnemar_exact([True] * 6, [False] * 6)["mcnemar_p"] == pytest.approx(2 / 64)  # 2 * (1/2)**6
    assert stats.mcnemar_exact([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)["mcnemar_p"] == 1.0  # balanced: capped at 1


def test_compare_runs_from_saved_predictions(tmp_path):
    gold, good = _noisy(300, 0.05, seed=1)
    _, bad = _noisy(300, 0.4, seed=2)
    runs = []
    for name, pred in (("good", good), ("bad", bad)):
        run = results.create_run(tmp_path, name, {"regime": "sft", "condition": name, "seed": 1})
        rows = [{"id": str(i), "gold": g, "pred": p} for i, (g, p) in enumerate(zip(gold, pred))]
        results.write_record(run, "bench:x", {"f1": 0.0}, rows[::-1] if name == "bad" else rows)  # order must not matter
        runs.append(run)
    verdict = stats.compare_runs(runs[0], runs[1], "bench:x", n_boot=300)
    assert verdict["a_better"] and verdict["verdict"].startswith(runs[0].name)
    results.write_record(runs[1], "bench:y", {"f1": 0.0}, [{"id": "0", "gold": "safe", "pred": "safe"}])
    results.write_record(runs[0], "bench:y", {"f1": 0.0}, [{"id": "1", "gold": "safe", "pred": "safe"}])
    with pytest.raises(ValueError, match="same prompts"):
        stats.compare_runs(runs[0], runs[1], "bench:y")


def test_seeds_are_grouped_and_other_settings_are_not():
    def record(seed, f1, lr=0.1, dataset="bench:x"):
        config = {"regime": "sft", "condition": "intent_label", "model": "m", "seed": seed, "run_id": f"r{seed}{lr}",
                  "lr": lr, "created": str(seed)}
        return {"regime": "sft", "condition": "intent_label", "model": "m", "seed": seed, "dataset": dataset, "f1": f1,
                "config": config}

    frame = pd.DataFrame([record(1, 0.5), record(2, 0.7), record(3, 0.6), record(1, 0.9, lr=0.2)])
    out = stats.aggregate_seeds(frame)
    grouped = out[out["n_seeds"] == 3].iloc[0]
    assert grouped["f1_mean"] == pytest.approx(0.6) and grouped["f1_std"] == pytest.approx(0.1)
    single = out[out["n_seeds"] == 1].iloc[0]
    assert single["f1_mean"] == 0.9 and single["f1_std"] == 0.0


def test_slice_f1():
    predictions = pd.DataFrame({
        "type": ["homonyms"] * 4 + ["contrast_homonyms"] * 4,
        "gold": ["safe"] * 4 + ["harmful"] * 4,
        "pred": ["safe", "safe", "safe", "harmful", "harmful", "harmful", "safe", "safe"],
    })
    table = stats.slice_f1(predictions, "type").set_index("type")
    assert np.isnan(table.loc["homonyms", "f1"]) and table.loc["homonyms", "accuracy"] == 0.75
    assert table.loc["contrast_homonyms", "f1"] == pytest.approx(2 / 3)
    assert table.loc["contrast_homonyms", "harmful_share"] == 1.0
    with pytest.raises(KeyError, match="Category"):
        stats.slice_f1(predictions, "Category")


def test_mean_interval_of_independent_benchmarks():
    assert stats.mean_f1_interval([0.1, 0.1, 0.1, 0.1]) == pytest.approx(0.05)


def test_bootstrap_p_counts_a_lump_at_zero_half_on_each_side():
    lump = np.r_[np.zeros(50), np.ones(50)]  # half the resamples exactly 0, the rest above
    # below: (0 + (50 + 1) / 2) / 101, above: (50 + 51 / 2) / 101; twice the smaller
    assert stats._bootstrap_p(lump) == pytest.approx(51 / 101)
    assert stats._bootstrap_p(np.zeros(100)) == 1.0
    assert stats._bootstrap_p(np.r_[-lump, lump]) == 1.0  # symmetric: no evidence either way


def test_permutation_of_identical_runs_gives_p_one():
    gold, pred = _noisy(200, 0.3)
    result = stats.permutation_p([(gold, pred, pred)])
    assert result["p_value"] == 1.0 and result["p_a_better"] == result["p_b_better"] == 0.5
    assert result["n_perm"] >= 10_000


def test_permutation_p_matches_the_exact_enumeration_with_ties_counted_half():
    """Ten prompts, 2**10 swap patterns enumerated by hand; F1 differences tie often at this size."""
    import itertools

    gold = ["harmful"] * 5 + ["safe"] * 5
    a = ["harmful", "harmful", "harmful", "harmful", "safe", "safe", "safe", "safe", "harmful", "safe"]
    b = ["harmful", "safe", "safe", "harmful", "safe", "harmful", "safe", "harmful", "harmful", "safe"]

    def delta(x, y):
        return binary_metrics(gold, x)["f1"] - binary_metrics(gold, y)["f1"]

    observed = abs(delta(a, b))
    swapped = np.array([abs(delta([q if s else p for p, q, s in zip(a, b, flips)], [p if s else q for p, q, s in zip(a, b, flips)]))
                        for flips in itertools.product([False, True], repeat=len(gold))])
    exact = np.mean(swapped > observed + 1e-12) + 0.5 * np.mean(np.abs(swapped - observed) <= 1e-12)
    assert exact == pytest.approx(0.0625)
    result = stats.permutation_p([(gold, a, b)], n_perm=40_000, seed=1)
    assert result["p_value"] == pytest.approx(exact, abs=0.01)
    mirrored = stats.permutation_p([(gold, b, a)], n_perm=40_000, seed=1)
    assert mirrored["p_value"] == result["p_value"] and mirrored["p_a_better"] == result["p_b_better"]


def test_permutation_takes_one_run_per_arm():
    gold, pred = _noisy(50, 0.2)
    with pytest.raises(ValueError, match="one run per arm"):
        stats.permutation_p([(gold, [pred, pred], pred)])


def test_two_level_bootstrap_widens_the_interval_when_seeds_disagree():
    gold, steady = _noisy(300, 0.2, seed=1)
    seeds = [_noisy(300, error, seed=s)[1] for s, error in ((2, 0.05), (3, 0.2), (4, 0.35))]
    one = stats.paired_evidence([(gold, seeds[1], steady, None, None)], n_boot=1000)
    several = stats.paired_evidence([(gold, seeds, steady, None, None)], n_boot=1000, n_perm=2000)
    assert several["seeds_a"] == 3 and several["p_method"] == "two-level bootstrap"  # no permutation across seeds
    assert one["p_method"] == "bootstrap" and one["seeds_a"] == 1
    assert several["diff_ci_high"] - several["diff_ci_low"] > 1.5 * (one["diff_ci_high"] - one["diff_ci_low"])
    assert several["f1_a"] == pytest.approx(np.mean([binary_metrics(gold, s)["f1"] for s in seeds]))


def test_one_seed_in_a_list_is_the_same_comparison_as_one_run():
    gold, a = _noisy(150, 0.2, seed=1)
    _, b = _noisy(150, 0.3, seed=2)
    assert stats.paired_evidence([(gold, [a], [b], None, None)]) == stats.paired_evidence([(gold, a, b, None, None)])


def test_flag_all_as_a_baseline_takes_runs_it_matches_off_the_frontier():
    """Flagging everything competes at 0 ms: a run at or below its F1 is off the frontier however fast."""
    latency, score = [24.0, 120.0, 300.0], [0.587, 0.70, 0.65]
    assert stats.pareto_mask(latency, score) == [True, True, False]
    assert stats.pareto_mask(latency, score, baseline=(0.0, 0.592)) == [False, True, False]
    assert stats.pareto_mask([24.0], [0.592], baseline=(0.0, 0.592)) == [False]  # a tie with flag-all is not a win
    assert stats.pareto_mask([24.0], [0.6], baseline=(0.0, 0.592)) == [True]


def test_delta_auprc_ranks_only_rows_every_run_answered():
    """A parse failure (no P(harmful), NaN) leaves its row out of both runs' ranking: scoring it 0 would
    reward a run for failing on harmful prompts' rivals and punish the other's ranking for nothing."""
    from aims_kit.scoring.metrics import average_precision

    gold = ["harmful", "safe"] * 20
    pred = ["harmful" if i % 3 else "safe" for i in range(40)]
    a = [0.9 if g == "harmful" else 0.1 for g in gold]
    b = [0.6 if g == "harmful" else 0.4 for g in gold]
    b[0] = b[2] = float("nan")  # run B wrote no label on two harmful prompts
    e = stats.paired_evidence([(gold, pred, pred, a, b)], n_boot=200)
    kept = [i for i in range(40) if i not in (0, 2)]
    assert e["auprc_rows"] == 38
    assert e["auprc_b"] == pytest.approx(average_precision([gold[i] for i in kept], [b[i] for i in kept])) == 1.0
    assert e["auprc_diff"] == pytest.approx(0.0) and np.isfinite(e["auprc_diff_ci_low"])
