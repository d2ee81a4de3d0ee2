"""Honest statistics: bootstrap intervals, paired comparisons, seed aggregation and slice F1.

A benchmark F1 is an estimate from a few hundred prompts; two runs whose F1 differ by 0.02 on
XSTest may be indistinguishable. These functions let a notebook say "A beats B on X" only when
the paired interval of the difference excludes 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from aims_kit.core.results import read_jsonl
from aims_kit.scoring.metrics import (
    POSITIVE,
    average_precision,
    confusion,
    from_confusion,
)

#: Config keys that do not make two runs different experiments (they differ run to run).
_RUN_KEYS = ("run_id", "created", "git_commit", "seed", "train")


def _as_bool(labels: Sequence[str]) -> np.ndarray:
    return np.asarray([label == POSITIVE for label in labels], dtype=bool)


def _f1_precision_recall(gold: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised metrics for each bootstrap resample (one row of ``idx`` per resample)."""
    g, p = gold[idx], pred[idx]
    tp = (g & p).sum(axis=1)
    fp = (~g & p).sum(axis=1)
    fn = (g & ~p).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0, precision + recall, 1), 0.0)
    return {"f1": f1, "precision": precision, "recall": recall}


def _resamples(n: int, n_boot: int, seed: int, chunk: int = 200):
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def bootstrap_ci(
    gold: Sequence[str], pred: Sequence[str], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Percentile bootstrap intervals for F1, precision and recall (harmful = positive).

    Returns ``f1_ci_low``, ``f1_ci_high``, ``precision_ci_low`` ... plus ``ci_level`` and
    ``n_boot``, ready to merge into a results record. Same seed, same interval.
    """
    if len(gold) != len(pred) or not len(gold):
        raise ValueError(f"gold and pred must be non-empty and equal in length ({len(gold)} vs {len(pred)})")
    g, p = _as_bool(gold), _as_bool(pred)
    draws: dict[str, list[np.ndarray]] = {"f1": [], "precision": [], "recall": []}
    for idx in _resamples(len(g), n_boot, seed):
        for key, values in _f1_precision_recall(g, p, idx).items():
            draws[key].append(values)
    alpha = (1 - level) / 2
    out: dict[str, float] = {}
    for key, chunks in draws.items():
        values = np.concatenate(chunks)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (float(q) for q in np.quantile(values, [alpha, 1 - alpha]))
    return {**out, "ci_level": level, "n_boot": n_boot}


def bootstrap_mean_ci(values: Sequence[float], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (e.g. accuracy, from per-row 0/1 correctness)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        raise ValueError("bootstrap_mean_ci needs at least one value")
    means = np.concatenate([v[idx].mean(axis=1) for idx in _resamples(len(v), n_boot, seed)])
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """McNemar's exact test on paired correctness: two-sided binomial test on the discordant pairs."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return {"only_a_correct": 0, "only_b_correct": 0, "mcnemar_p": 1.0}
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    p = min(1.0, 2 * tail / 2**n)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "mcnemar_p": float(p)}


def paired_comparison(
    gold: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | bool]:
    """F1(A) − F1(B) on the same prompts, with a paired bootstrap interval and McNemar's exact p.

    Both runs are resampled with the *same* indices, so prompt difficulty cancels out.
    ``a_better`` / ``b_better`` are true only when the interval excludes 0.
    """
    return paired_mean_comparison([(gold, pred_a, pred_b)], n_boot=n_boot, seed=seed, level=level)


def paired_mean_comparison(
    sets: Sequence[tuple[Sequence[str], Sequence[str], Sequence[str]]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | bool]:
    """Mean F1(A) − mean F1(B) over several datasets, each a ``(gold, pred_a, pred_b)`` on the same prompts.

    :func:`paired_evidence` (interval, bootstrap p) plus McNemar's exact p on the pooled per-prompt
    correctness, which tests *accuracy*, not F1 (``mcnemar_p``, kept for the tables that show it).
    """
    result = paired_evidence([(gold, a, b, None, None) for gold, a, b in sets], n_boot=n_boot, seed=seed, level=level)
    correct_a = np.concatenate([_as_bool(a) == _as_bool(g) for g, a, _ in sets])
    correct_b = np.concatenate([_as_bool(b) == _as_bool(g) for g, _, b in sets])
    return {**result, "a_better": result["diff_ci_low"] > 0, "b_better": result["diff_ci_high"] < 0,
            **mcnemar_exact(correct_a, correct_b)}


#: Effect sizes below about this multiple of the bootstrap standard error of Δ go undetected at
#: 5% two-sided with 80% power (1.96 + 0.84): the smallest detectable difference at this n.
DETECTABLE_SE = 2.8


def _bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p of "Δ = 0": twice the smaller share of resamples on either side of 0."""
    below, above = (np.sum(draws <= 0) + 1) / (len(draws) + 1), (np.sum(draws >= 0) + 1) / (len(draws) + 1)
    return float(min(1.0, 2 * min(below, above)))


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def _resampled_auprc(gold: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    labels = np.where(gold, POSITIVE, "safe")
    return np.array([average_precision(labels[row], scores[row]) for row in idx])


def paired_evidence(
    sets: Sequence[tuple[Sequence[str], Sequence[str], Sequence[str], Sequence[float] | None, Sequence[float] | None]],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Everything a verdict on "A beats B" needs, over one dataset or the unweighted mean of several.

    Each set is ``(gold, pred_a, pred_b, score_a, score_b)`` on the same prompts (scores: P(harmful),
    or ``None``). Every dataset is resampled on its own, with the *same* indices for A, B and the
    flag-everything baseline, and each statistic is the mean over datasets per resample, so every
    interval and p belongs to the number it is printed beside:

    - ΔF1 = F1(A) − F1(B): interval, two-sided bootstrap p, standard error and the smallest
      difference detectable at this n (:data:`DETECTABLE_SE` × the standard error);
    - F1(A) − F1(flag everything): does the winner beat the trivial baseline on the same resamples;
    - ΔAUPRC with its interval, where both runs carry P(harmful): evidence free of any threshold;
    - precision, recall and flag rate of both runs, and how many prompts their labels differ on.
    """
    if not sets:
        raise ValueError("paired_evidence needs at least one dataset")
    whole, f1_diffs, flag_diffs, auprc_diffs = [], [], [], []
    with_scores = all(sa is not None and sb is not None for *_, sa, sb in sets)
    differ = 0
    for position, (gold, pred_a, pred_b, score_a, score_b) in enumerate(sets):
        if not (len(gold) == len(pred_a) == len(pred_b)) or not len(gold):
            raise ValueError("gold, pred_a and pred_b must be non-empty and aligned on the same prompts")
        g, a, b = _as_bool(gold), _as_bool(pred_a), _as_bool(pred_b)
        everyone = np.ones_like(g)
        differ += int((a != b).sum())
        row = {"gold": g}
        for name, pred in (("a", a), ("b", b), ("flag_all", everyone)):
            counts = {"tp": int((g & pred).sum()), "fp": int((~g & pred).sum()), "fn": int((g & ~pred).sum())}
            counts["tn"] = len(g) - sum(counts.values())
            row[name] = from_confusion(**counts)
        if with_scores:
            sa, sb = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
            row["auprc_a"], row["auprc_b"] = average_precision(gold, sa), average_precision(gold, sb)
        whole.append(row)
        fd, gd, ad = [], [], []
        for idx in _resamples(len(g), n_boot, seed + position):
            f1_a, f1_b = _f1_precision_recall(g, a, idx)["f1"], _f1_precision_recall(g, b, idx)["f1"]
            fd.append(f1_a - f1_b)
            gd.append(f1_a - _f1_precision_recall(g, everyone, idx)["f1"])
            if with_scores:
                ad.append(_resampled_auprc(g, sa, idx) - _resampled_auprc(g, sb, idx))
        f1_diffs.append(np.concatenate(fd))
        flag_diffs.append(np.concatenate(gd))
        if with_scores:
            auprc_diffs.append(np.concatenate(ad))
    mean_f1_diff, mean_flag_diff = np.mean(f1_diffs, axis=0), np.mean(flag_diffs, axis=0)

    def mean_of(run: str, key: str) -> float:
        return float(np.mean([row[run][key] for row in whole]))

    low, high = _interval(mean_f1_diff, level)
    se = float(np.std(mean_f1_diff, ddof=1))
    result = {
        "n": int(sum(len(s[0]) for s in sets)),
        "f1_a": mean_of("a", "f1"),
        "f1_b": mean_of("b", "f1"),
        "f1_diff": mean_of("a", "f1") - mean_of("b", "f1"),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "p_value": _bootstrap_p(mean_f1_diff),
        "diff_se": se,
        "detectable_diff": DETECTABLE_SE * se,
        "f1_flag_all": mean_of("flag_all", "f1"),
        "a_vs_flag_all_ci_low": _interval(mean_flag_diff, level)[0],
        "a_vs_flag_all_ci_high": _interval(mean_flag_diff, level)[1],
        "a_vs_flag_all_p": _bootstrap_p(mean_flag_diff),
        "labels_differ": differ,
        **{f"{key}_{run}": mean_of(run, key) for run in ("a", "b") for key in ("precision", "recall", "flag_rate")},
    }
    if with_scores:
        mean_auprc_diff = np.mean(auprc_diffs, axis=0)
        auprc_a = float(np.mean([row["auprc_a"] for row in whole]))
        auprc_b = float(np.mean([row["auprc_b"] for row in whole]))
        result.update(auprc_a=auprc_a, auprc_b=auprc_b, auprc_diff=auprc_a - auprc_b,
                      auprc_diff_ci_low=_interval(mean_auprc_diff, level)[0], auprc_diff_ci_high=_interval(mean_auprc_diff, level)[1])
    return result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: adjusted p per test, in input order (family-wise error control)."""
    order = np.argsort(p_values, kind="mergesort")
    m, running, adjusted = len(p_values), 0.0, [0.0] * len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def aligned_predictions(run_a: Path, run_b: Path, dataset: str) -> pd.DataFrame:
    """Two runs' saved predictions on ``dataset`` joined on the prompt id (``_a`` / ``_b`` columns).

    Refuses runs evaluated on different prompts or gold labels: a paired test needs the same rows.
    """
    a = pd.DataFrame(read_jsonl(Path(run_a) / "predictions" / f"{dataset}.jsonl"))
    b = pd.DataFrame(read_jsonl(Path(run_b) / "predictions" / f"{dataset}.jsonl"))
    merged = a.merge(b, on="id", suffixes=("_a", "_b"))
    if len(merged) != len(a) or len(merged) != len(b):
        raise ValueError(f"{dataset}: the two runs were not evaluated on the same prompts ({len(a)} vs {len(b)}, {len(merged)} shared)")
    if (merged["gold_a"] != merged["gold_b"]).any():
        raise ValueError(f"{dataset}: the two runs disagree on gold labels; were they evaluated on different files?")
    return merged


def compare_runs(run_a: Path, run_b: Path, dataset: str, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`paired_comparison` of two runs' saved predictions on ``dataset``, with a verdict sentence."""
    merged = aligned_predictions(run_a, run_b, dataset)
    result = paired_comparison(merged["gold_a"], merged["pred_a"], merged["pred_b"], n_boot=n_boot, seed=seed)
    name_a, name_b = Path(run_a).name, Path(run_b).name
    if result["a_better"]:
        verdict = f"{name_a} beats {name_b} on {dataset}"
    elif result["b_better"]:
        verdict = f"{name_b} beats {name_a} on {dataset}"
    else:
        verdict = f"no detectable F1 difference on {dataset} (the interval contains 0)"
    return {"dataset": dataset, "run_a": name_a, "run_b": name_b, **result, "verdict": verdict}


def experiment_key(config: dict) -> str:
    """What identifies an experiment apart from its seed: everything in the config but run bookkeeping."""
    import json

    return json.dumps({k: v for k, v in config.items() if k not in _RUN_KEYS}, sort_keys=True, default=str)


def aggregate_seeds(records: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Group records of runs that differ only in seed; mean, std and count per (experiment, dataset)."""
    if records.empty:
        return pd.DataFrame(columns=["regime", "condition", "dataset", "n_seeds", f"{metric}_mean", f"{metric}_std"])
    frame = records.assign(
        experiment=records["config"].map(experiment_key),
        variant=records["config"].map(lambda c: c.get("variant", "")),
    )
    grouped = frame.groupby(["experiment", "dataset"], sort=False)
    out = grouped.agg(
        regime=("regime", "first"),
        condition=("condition", "first"),
        variant=("variant", "first"),
        model=("model", "first"),
        n_seeds=("seed", "nunique"),
        seeds=("seed", lambda s: sorted(set(s))),
        **{f"{metric}_mean": (metric, "mean"), f"{metric}_std": (metric, "std")},
    ).reset_index()
    out[f"{metric}_std"] = out[f"{metric}_std"].fillna(0.0)  # one seed: no spread measured
    out[f"{metric}_mean±std"] = out.apply(lambda r: f"{r[f'{metric}_mean']:.3f} ± {r[f'{metric}_std']:.3f}", axis=1)
    return out.drop(columns="experiment").sort_values(["dataset", "regime", "condition"]).reset_index(drop=True)


def slice_f1(predictions: pd.DataFrame, column: str, *, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Per-slice n, harmful share, accuracy and F1 of one run's predictions.

    A slice with no harmful prompts (XSTest's safe look-alike types) has no harmful-class F1:
    it is reported as NaN and accuracy (here: how often it was left unflagged) is what to read.
    """
    if column not in predictions.columns:
        raise KeyError(f"predictions have no slice column {column!r}; found {list(predictions.columns)}")
    rows = []
    for value, group in predictions.groupby(column, sort=True):
        gold, pred = list(group["gold"]), list(group["pred"])
        counts = confusion(gold, pred)
        scores = from_confusion(**counts)
        positives = counts["tp"] + counts["fn"]
        has_positive = positives > 0
        row = {
            column: value,
            "n": len(gold),
            "harmful_share": positives / len(gold),
            "accuracy": scores["accuracy"],
            "f1": scores["f1"] if has_positive else float("nan"),
        }
        if n_boot and has_positive:
            ci = bootstrap_ci(gold, pred, n_boot=n_boot, seed=seed)
            row.update(f1_ci_low=ci["f1_ci_low"], f1_ci_high=ci["f1_ci_high"])
        rows.append(row)
    return pd.DataFrame(rows)


def mean_f1_interval(half_widths: Sequence[float]) -> float:
    """Half-width of the interval of a mean over independent benchmarks, from each one's half-width.

    Bootstraps on different benchmarks are independent, so variances add: ``sqrt(sum(h²)) / k``.
    """
    values = np.asarray(half_widths, dtype=float)
    return float(np.sqrt(np.sum(values**2)) / len(values)) if len(values) else float("nan")


def pareto_mask(latency: list[float], score: list[float]) -> list[bool]:
    """True for points no other point beats on both axes (lower latency *and* higher score)."""
    mask = []
    for i, (x_i, y_i) in enumerate(zip(latency, score)):
        dominated = any(
            x_j <= x_i and y_j >= y_i and (x_j < x_i or y_j > y_i)
            for j, (x_j, y_j) in enumerate(zip(latency, score))
            if j != i
        )
        mask.append(not dominated)
    return mask
