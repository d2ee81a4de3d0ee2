"""Harmful-class metrics and the trivial baselines every F1 table must show beside it."""

from __future__ import annotations

from typing import Sequence

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
    """Precision, recall, F1 and accuracy; an undefined ratio (0/0) is reported as 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = tp + fp + fn + tn
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": (tp + tn) / n if n else 0.0}


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
