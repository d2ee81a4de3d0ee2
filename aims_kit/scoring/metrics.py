"""Harmful-class metrics, the trivial baselines every F1 table must show beside it, and threshold-free AUROC / AUPRC."""

from __future__ import annotations

from typing import Sequence

import numpy as np

POSITIVE = "harmful"


def confusion(gold: Sequence[str], pred: Sequence[str]) -> dict[str, int]:
    """Counts with ``harmful`` as the positive class."""
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    tp = sum(g == POSITIVE and p == POSITIVE for g, p in zip(gold, pred))
    fp = sum(g != POSITIVE and p == POSITIVE for g, p in zip(gold, pred))
    fn = sum(g == POSITIVE and p != POSITIVE for g, p in zip(gold, pred))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(gold) - tp - fp - fn}


def from_confusion(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Precision, recall, F1, accuracy and flag rate (share flagged harmful); an undefined ratio (0/0) is reported as 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = tp + fp + fn + tn
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": (tp + tn) / n if n else 0.0,
            "flag_rate": (tp + fp) / n if n else 0.0}


def binary_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    counts = confusion(gold, pred)
    return {**from_confusion(**counts), **counts, "n": len(gold)}


def trivial_baselines(gold: Sequence[str]) -> dict[str, float]:
    """F1 of flagging everything and of flagging nothing: the floor a classifier must clear.

    (On XSTest, flagging everything scores 0.615; flagging nothing always scores 0.)
    """
    return {
        "f1_flag_all": binary_metrics(gold, [POSITIVE] * len(gold))["f1"],
        "f1_flag_none": binary_metrics(gold, ["safe"] * len(gold))["f1"],
    }


def _missing(p: float | None) -> bool:
    """No P(harmful): ``None`` as generation writes it, or NaN as a DataFrame column holds it."""
    return p is None or p != p


def _ranked(gold: Sequence[str], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives and false positives at each distinct score threshold, highest first."""
    y = np.asarray([g == POSITIVE for g in gold], dtype=float)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s):
        raise ValueError(f"gold and scores differ in length ({len(y)} vs {len(s)})")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def average_precision(gold: Sequence[str], scores: Sequence[float]) -> float:
    """AUPRC as average precision: sum over thresholds of (recall gained) × precision there.

    Ties share one threshold (no interpolation), the definition scikit-learn's
    ``average_precision_score`` uses. ``nan`` without a harmful row. A classifier that scores
    every row alike gets the harmful share, the flag-all baseline of this metric.
    """
    tps, fps, _ = _ranked(gold, scores)
    if not len(tps) or tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auroc(gold: Sequence[str], scores: Sequence[float]) -> float:
    """Area under the ROC curve (ties count half); ``nan`` unless both classes are present. Chance: 0.5."""
    tps, fps, _ = _ranked(gold, scores)
    if not len(tps) or tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(gold: Sequence[str], scores: Sequence[float]) -> dict[str, list[float]]:
    """Precision and recall at each distinct threshold (highest first), for PR plots."""
    tps, fps, thresholds = _ranked(gold, scores)
    total = tps[-1] if len(tps) and tps[-1] else 1.0
    return {"precision": (tps / (tps + fps)).tolist(), "recall": (tps / total).tolist(), "threshold": thresholds.tolist()}


def threshold_free(gold: Sequence[str], p_harmful: Sequence[float | None]) -> dict[str, float]:
    """AUROC and AUPRC of P(harmful) over the rows that have one, and how many rows had none.

    A row has no P(harmful) when its answer has no readable label (a parse failure): it is left
    out of the ranking rather than given a made-up score, so AUROC / AUPRC measure how well the
    model ranks the prompts it answered, and ``p_harmful_missing`` (with the record's
    ``parse_failure_rate``) says how many it did not. ``nan`` where the rows with P hold one class
    only, or there are none.
    """
    if len(gold) != len(p_harmful):
        raise ValueError(f"gold and p_harmful differ in length ({len(gold)} vs {len(p_harmful)})")
    kept = [(g, float(p)) for g, p in zip(gold, p_harmful) if not _missing(p)]
    gold_kept, scores = [g for g, _ in kept], [p for _, p in kept]
    return {
        "auroc": auroc(gold_kept, scores) if kept else float("nan"),
        "auprc": average_precision(gold_kept, scores) if kept else float("nan"),
        "p_harmful_missing": len(gold) - len(kept),
    }
