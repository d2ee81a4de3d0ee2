"""Honest statistics: bootstrap intervals, paired comparisons, seed aggregation and slice F1.

A benchmark F1 is an estimate from a few hundred prompts; two runs whose F1 differ by 0.02 on
XSTest may be indistinguishable. These functions let a notebook say "A beats B on X" only when
the paired interval of the difference excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

#: Config keys that do not make two runs different experiments (they differ run to run). The
#: parent differs with the seed: each seed's DPO or GRPO run starts from that seed's own SFT run.
_RUN_KEYS = ("run_id", "created", "git_commit", "seed", "train", "parent_run")


def _as_bool(labels: Sequence[str]) -> np.ndarray:
    return np.asarray([label == POSITIVE for label in labels], dtype=bool)


def _f1_precision_recall(gold: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised metrics for each bootstrap resample (one row of ``idx`` per resample)."""
    g, p = gold[idx], pred[idx]
    tp = (g & p).sum(axis=1)
    fp = (~g & p).sum(axis=1)
    fn = (g & ~p).sum(axis=1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    return {"f1": _f1(tp, fp, fn), "precision": precision, "recall": recall}


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) elementwise (the harmonic mean of precision and recall); 0 for 0/0."""
    denominator = 2 * np.asarray(tp) + fp + fn
    return np.divide(2 * np.asarray(tp), denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)


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
#: Two statistics closer than this are equal (a tie): F1 differences reached through different
#: confusion counts can agree mathematically yet differ in their last bits.
_TIE = 1e-12
#: Booleans drawn per chunk of permutations (draws × prompts that differ): a few MB whatever n.
_CHUNK_CELLS = 1_000_000


def _tail_shares(draws: np.ndarray, at: float) -> tuple[float, float]:
    """The shares of ``draws`` below ``at`` and above it, a draw equal to ``at`` counting half on each side.

    ``at`` itself counts as one more draw, tied: for a permutation test it is the observed
    arrangement, one of those the test samples from; for the bootstrap it is the usual + 1 that
    keeps a p from finitely many resamples above 0. Why half: a tie is evidence for neither side,
    and a lump of exact ties (two runs that agree on most resamples) counted on both sides would
    push p to 1 however lopsided the rest.
    """
    ties = np.sum(np.abs(draws - at) <= _TIE) + 1
    total = len(draws) + 1
    below = (np.sum(draws < at - _TIE) + ties / 2) / total
    above = (np.sum(draws > at + _TIE) + ties / 2) / total
    return float(below), float(above)


def _two_sided(shares: tuple[float, float]) -> float:
    """Twice the smaller of the two tails, at most 1."""
    return float(min(1.0, 2 * min(shares)))


def _bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p of "Δ = 0": twice the smaller share of resamples on either side of 0."""
    return _two_sided(_tail_shares(draws, 0.0))


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def _resampled_auprc(gold: np.ndarray, scores: np.ndarray, idx: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """AUPRC per resample over its rows that every compared run answered (``answered``)."""
    labels = np.where(gold, POSITIVE, "safe")
    kept = [row[answered[row]] for row in idx]
    return np.array([average_precision(labels[row], scores[row]) for row in kept])


Arm = Sequence[str] | Sequence[Sequence[str]]
Scores = Sequence[float] | Sequence[Sequence[float]] | None


def _prepared(gold: Sequence[str], pred_a: Arm, pred_b: Arm, score_a: Scores = None, score_b: Scores = None) -> tuple:
    """One dataset as harmful masks: gold ``(n,)``, each arm ``(seeds, n)`` (one row for a single run), scores likewise."""
    g = _as_bool(gold)
    a, b = (np.atleast_2d(np.asarray(pred, dtype=object)) == POSITIVE for pred in (pred_a, pred_b))
    if not len(g) or a.shape[1] != len(g) or b.shape[1] != len(g):
        raise ValueError("gold, pred_a and pred_b must be non-empty and aligned on the same prompts")
    sa, sb = (None if s is None else np.atleast_2d(np.asarray(s, dtype=float)) for s in (score_a, score_b))
    return g, a, b, sa, sb


def _swapped_f1_diffs(gold: np.ndarray, a: np.ndarray, b: np.ndarray, swap: np.ndarray) -> np.ndarray:
    """F1(A*) − F1(B*) for each row of ``swap``, where A* takes B's label on the prompts that row swaps.

    ``swap`` has one column per prompt on which A and B differ: only there does a swap change
    anything, so the prompts they agree on enter as fixed counts and memory grows with the
    disagreements, not with n. Swapping every column gives exactly −Δ (the counts trade places).
    """
    same = a == b
    tp0, fp0, fn0 = np.sum(gold & a & same), np.sum(~gold & a & same), np.sum(gold & ~a & same)
    g = gold[~same]
    flagged = a[~same] ^ swap  # A*'s labels where the runs differ; B* holds the other label there
    x, y = (flagged & g).sum(axis=1), (flagged & ~g).sum(axis=1)
    harmful, safe = int(g.sum()), int((~g).sum())
    return _f1(tp0 + x, fp0 + y, fn0 + harmful - x) - _f1(tp0 + harmful - x, fp0 + safe - y, fn0 + x)


def permutation_p(sets: Sequence[tuple[Sequence[str], Arm, Arm]], *, n_perm: int = 10_000, seed: int = 0) -> dict:
    """Paired permutation test of ΔF1 = mean over datasets of F1(A) − F1(B), each set ``(gold, pred_a, pred_b)``.

    If A and B are interchangeable, each prompt's two labels could have come from either run: the
    test swaps them per prompt with probability 1/2, independently, and asks how often the
    swapped Δ lies as far out as the observed one. It holds the two trained models fixed (do
    these two runs differ on prompts like these?), so it takes one run per arm; an arm of several
    seeds is compared by the two-level bootstrap instead (:func:`paired_draws`).

    Draws come in mirrored pairs (a swap pattern and its complement give Δ and exactly −Δ), so
    the sampled distribution is symmetric like the exact one; at least ``n_perm`` are drawn,
    :data:`_CHUNK_CELLS` booleans at a time. ``p_a_better`` / ``p_b_better`` are one-sided,
    ``p_value`` two-sided (twice the smaller, at most 1); a draw tied with the observed Δ counts
    half (:func:`_tail_shares`), so two identical runs get p = 1.
    """
    prepared = [_prepared(*one)[:3] for one in sets]
    if not prepared or any(len(a) > 1 or len(b) > 1 for _, a, b in prepared):
        raise ValueError("the permutation test needs at least one dataset and one run per arm")
    data = [(g, a[0], b[0]) for g, a, b in prepared]
    widths = [int(np.sum(a != b)) for _, a, b in data]

    def statistic(swaps: list[np.ndarray]) -> np.ndarray:
        return sum(_swapped_f1_diffs(g, a, b, s) for (g, a, b), s in zip(data, swaps)) / len(data)

    observed = float(statistic([np.zeros((1, w), dtype=bool) for w in widths])[0])
    rng = np.random.default_rng(seed)
    half, rows = -(-n_perm // 2), max(1, _CHUNK_CELLS // max(1, sum(widths)))
    draws = []
    for start in range(0, half, rows):
        delta = statistic([rng.integers(0, 2, size=(min(rows, half - start), w), dtype=bool) for w in widths])
        draws += [delta, -delta]
    below, above = _tail_shares(np.concatenate(draws), observed)
    return {"p_value": _two_sided((below, above)), "p_a_better": above, "p_b_better": below, "n_perm": 2 * half}


def _seed_weights(seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Per resample, how often each seed is drawn (with replacement), over the number of seeds.

    The first level of the two-level bootstrap; a single seed weighs 1 everywhere and draws
    nothing, so a one-seed comparison resamples exactly as it did before seeds were handled.
    """
    if seeds == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=n_boot) / seeds


def _weighted(per_seed: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Each resample's mean over the seeds it drew: ``per_seed`` holds one statistic per seed and resample."""
    return (np.stack(per_seed, axis=1) * weights).sum(axis=1)


def _arm_scores(gold: np.ndarray, arm: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1, accuracy and flag rate of each seed's labels, averaged over the seeds."""
    rows = [from_confusion(tp=int(np.sum(gold & p)), fp=int(np.sum(~gold & p)), fn=int(np.sum(gold & ~p)),
                           tn=int(np.sum(~gold & ~p))) for p in arm]
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


@dataclass(frozen=True)
class Paired:
    """One paired comparison, resampled once: its point estimates and p values, and the bootstrap draws.

    Why keep the draws: a headline test's interval is shown at its Holm-adjusted level, known only
    once all five p values are; :meth:`evidence` reads an interval at any level off the same
    resamples instead of resampling again.
    """

    point: dict
    #: Per statistic (``diff``: ΔF1, ``a_vs_flag_all``, ``auprc_diff``): its value on every resample.
    draws: dict[str, np.ndarray]

    def evidence(self, level: float = 0.95) -> dict:
        """The point estimates and p values, with each statistic's percentile interval at ``level``."""
        out = {**self.point, "ci_level": level}
        for key, values in self.draws.items():
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _interval(values, level)
        return out


def paired_draws(
    sets: Sequence[tuple[Sequence[str], Arm, Arm, Scores, Scores]],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    n_perm: int = 0,
) -> Paired:
    """Everything a verdict on "A beats B" needs, over one dataset or the unweighted mean of several.

    Each set is ``(gold, pred_a, pred_b, score_a, score_b)`` on the same prompts (scores:
    P(harmful), or ``None``). An arm is one run's labels, or a list of them, one per seed of the
    same experiment. Every dataset is resampled on its own, with the *same* prompt indices for
    A, B and the flag-everything baseline, and each statistic is the mean over datasets per
    resample, so every interval and p belongs to the number it is printed beside:

    - ΔF1 = F1(A) − F1(B): draws, p values, standard error and the smallest difference
      detectable at this n (:data:`DETECTABLE_SE` × the standard error);
    - F1(A) − F1(flag everything): does the winner beat the trivial baseline on the same resamples;
    - ΔAUPRC, where both runs carry P(harmful) (``NaN`` on a row without a readable label): evidence
      free of any threshold, over the rows every compared run answered (``auprc_rows``), so
      parse-failure rates that differ between runs do not bias it;
    - precision, recall and flag rate of both runs, and how many prompts their labels differ on.

    **Seeds.** With several seeds in an arm the bootstrap has two levels: each resample draws
    that arm's seeds with replacement (the same draw on every dataset: a seed is one trained
    model), then the prompts, and an arm's F1 is the mean over the seeds drawn; so the interval
    covers seed-to-seed spread too. With one seed per arm it covers prompts only.

    **p.** ``p_value`` (two-sided), ``p_a_better`` and ``p_b_better`` (one-sided) come from the
    bootstrap draws (resamples exactly at 0 count half on each side), or, with ``n_perm`` and one
    run per arm, from :func:`permutation_p`; ``p_method`` says which.
    """
    if not sets:
        raise ValueError("paired_evidence needs at least one dataset")
    prepared = [_prepared(*one) for one in sets]
    seeds_a, seeds_b = len(prepared[0][1]), len(prepared[0][2])
    if any(len(a) != seeds_a or len(b) != seeds_b for _, a, b, *_ in prepared):
        raise ValueError("every dataset needs the same seeds of each arm")
    with_scores = all(sa is not None and sb is not None for *_, sa, sb in prepared)
    seed_rng = np.random.default_rng((seed, 1))
    weights_a, weights_b = _seed_weights(seeds_a, n_boot, seed_rng), _seed_weights(seeds_b, n_boot, seed_rng)
    whole, f1_diffs, flag_diffs, auprc_diffs, differ = [], [], [], [], 0.0
    for position, (g, a, b, sa, sb) in enumerate(prepared):
        everyone = np.ones((1, len(g)), dtype=bool)
        differ += float(np.mean([np.sum(row_a != row_b) for row_a in a for row_b in b]))
        row = {name: _arm_scores(g, arm) for name, arm in (("a", a), ("b", b), ("flag_all", everyone))}
        if with_scores:
            # rows some run wrote no readable label for have no P(harmful): they leave the ranking
            # for every run alike, so a run's parse failures neither help nor hurt the other's AUPRC
            answered = np.all(np.isfinite(np.vstack([sa, sb])), axis=0)
            labels = np.where(g[answered], POSITIVE, "safe")
            row["auprc_a"], row["auprc_b"] = (float(np.mean([average_precision(labels, s[answered]) for s in arm]))
                                              for arm in (sa, sb))
            row["auprc_rows"] = int(answered.sum())
        whole.append(row)
        fd, gd, ad, done = [], [], [], 0
        for idx in _resamples(len(g), n_boot, seed + position):
            wa, wb = weights_a[done:done + len(idx)], weights_b[done:done + len(idx)]
            done += len(idx)
            f1_a = _weighted([_f1_precision_recall(g, pred, idx)["f1"] for pred in a], wa)
            f1_b = _weighted([_f1_precision_recall(g, pred, idx)["f1"] for pred in b], wb)
            fd.append(f1_a - f1_b)
            gd.append(f1_a - _f1_precision_recall(g, everyone[0], idx)["f1"])
            if with_scores:
                auprc_a = _weighted([_resampled_auprc(g, s, idx, answered) for s in sa], wa)
                ad.append(auprc_a - _weighted([_resampled_auprc(g, s, idx, answered) for s in sb], wb))
        f1_diffs.append(np.concatenate(fd))
        flag_diffs.append(np.concatenate(gd))
        if with_scores:
            auprc_diffs.append(np.concatenate(ad))
    diff, flag = np.mean(f1_diffs, axis=0), np.mean(flag_diffs, axis=0)

    def mean_of(run: str, key: str) -> float:
        return float(np.mean([row[run][key] for row in whole]))

    one_seed = seeds_a == seeds_b == 1
    below, above = _tail_shares(diff, 0.0)
    p = {"p_value": _two_sided((below, above)), "p_a_better": below, "p_b_better": above,
         "p_method": "bootstrap" if one_seed else "two-level bootstrap"}
    if n_perm and one_seed:
        p = {**permutation_p([one[:3] for one in sets], n_perm=n_perm, seed=seed), "p_method": "permutation"}
    se = float(np.std(diff, ddof=1))
    point = {
        "n": int(sum(len(g) for g, *_ in prepared)),
        "f1_a": mean_of("a", "f1"),
        "f1_b": mean_of("b", "f1"),
        "f1_diff": mean_of("a", "f1") - mean_of("b", "f1"),
        **p,
        "diff_se": se,
        "detectable_diff": DETECTABLE_SE * se,
        "f1_flag_all": mean_of("flag_all", "f1"),
        "a_vs_flag_all_p": _bootstrap_p(flag),
        "labels_differ": int(round(differ)),
        "seeds_a": seeds_a,
        "seeds_b": seeds_b,
        **{f"{key}_{run}": mean_of(run, key) for run in ("a", "b") for key in ("precision", "recall", "flag_rate")},
    }
    draws = {"diff": diff, "a_vs_flag_all": flag}
    if with_scores:
        auprc_a = float(np.mean([row["auprc_a"] for row in whole]))
        auprc_b = float(np.mean([row["auprc_b"] for row in whole]))
        point.update(auprc_a=auprc_a, auprc_b=auprc_b, auprc_diff=auprc_a - auprc_b,
                     auprc_rows=int(sum(row["auprc_rows"] for row in whole)))
        draws["auprc_diff"] = np.mean(auprc_diffs, axis=0)
    return Paired(point, draws)


def paired_evidence(
    sets: Sequence[tuple[Sequence[str], Arm, Arm, Scores, Scores]],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    n_perm: int = 0,
) -> dict:
    """:func:`paired_draws` with every interval at ``level`` (:meth:`Paired.evidence`)."""
    return paired_draws(sets, n_boot=n_boot, seed=seed, n_perm=n_perm).evidence(level)


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


def pareto_mask(latency: list[float], score: list[float], *, baseline: tuple[float, float] | None = None) -> list[bool]:
    """True for points no other point beats on both axes (lower latency *and* higher score).

    ``baseline`` is a ``(latency, score)`` point that competes without being one of the points:
    flagging everything (0 ms, its F1). Why: it needs no model, so a run it matches or beats at
    no cost is not a trade-off anyone would choose, however fast the run is among the others.
    A point at the baseline's latency or slower whose score is at most the baseline's is off the
    frontier.
    """
    rivals = list(zip(latency, score)) + ([baseline] if baseline is not None else [])
    mask = []
    for i, (x_i, y_i) in enumerate(zip(latency, score)):
        dominated = any(
            x_j <= x_i and y_j >= y_i and (x_j < x_i or y_j > y_i or j == len(latency))
            for j, (x_j, y_j) in enumerate(rivals)
            if j != i
        )
        mask.append(not dominated)
    return mask
