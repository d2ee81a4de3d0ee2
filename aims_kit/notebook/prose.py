"""Sentences that state a figure, rendered from the run's own data.

Why: a count, time, F1 or verdict typed into a markdown cell drifts from what the cells beside it
compute the first time a profile or a seed changes (03 once said "32 harmful, 10 safe" above a
table of 32 and 9). The fixed markdown of a notebook keeps the *why*; every figure a reader is
told comes from here, next to the output it describes, so the two cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from aims_kit.core.results import read_json


def markdown(text: str) -> Markdown:
    """``text`` displayed as a Markdown cell output (the figures in it already formatted)."""
    return Markdown(text)


def mining_summary(mined, min_class_share: float) -> Markdown:
    """What DPO mining found and kept, per split, in words (03).

    ``min_class_share`` is the floor the smaller class's share of the kept pairs was held to.
    """
    lines = []
    for split, report in mined.reports.items():
        found = report.pairs_per_class_mined
        kept = report.pairs_per_class
        found_text = " and ".join(f"{n} from {label} prompts" for label, n in found.items()) or "no pair"
        kept_total = sum(kept.values())
        if not kept_total:
            lines.append(f"- **{split}**: {report.prompts} prompts mined, no pair.")
            continue
        smaller = min(kept, key=kept.get)
        share = kept[smaller] / kept_total
        if kept != found and report.balanced:
            rule = (f"the larger class was cut until the smaller ({smaller}) made up at least {min_class_share:.0%} "
                    f"of the kept pairs: {share:.0%}")
        elif report.balanced:
            rule = f"every pair was kept: the smaller class ({smaller}) already made up {share:.0%}, at least {min_class_share:.0%}"
        else:
            rule = "every pair was kept: one class had none, so there was nothing to balance against"
        kept_text = " : ".join(f"{n} {label}" for label, n in kept.items())
        lines.append(f"- **{split}**: {report.prompts} prompts mined, {found_text}; kept {kept_text} — {rule}.")
    return Markdown("In this run:\n\n" + "\n".join(lines))


def selection_summary(runs: dict[str, Path]) -> Markdown:
    """Per run: the steps its validation F1 (or loss) was measured at and the step kept (02, 04)."""
    lines = []
    for name, run_dir in runs.items():
        path = Path(run_dir) / "val_selection.json"
        if not path.exists():
            lines.append(f"- **{name}**: no validation record.")
            continue
        choice = read_json(path)
        history = choice.get("history") or []
        if not history:
            lines.append(f"- **{name}**: {choice.get('rule', 'the last step')}: step {choice.get('best_step')}.")
            continue
        key = "val_f1" if choice.get("metric") == "f1" else "eval_loss"
        points = ", ".join(f"{point[key]:.3f} at step {point['step']}" for point in history)
        one = " (one validation pass: nothing to choose between)" if len(history) == 1 else ""
        metric = "F1" if choice.get("metric") == "f1" else "loss"
        lines.append(f"- **{name}**: validation {metric} {points}; kept step {choice.get('best_step')}, "
                     f"{choice.get('rule')}{one}.")
    return Markdown("\n".join(lines))


def latency_and_seeds(records: pd.DataFrame, latency_sample: int, benchmark_latency_sample: int | None) -> Markdown:
    """What this run measured of single-request latency and of seed spread, so 06 promises no more (06)."""
    timed = benchmark_latency_sample if benchmark_latency_sample is not None else latency_sample
    benchmarks = "timed on every benchmark too" if timed else "not timed on the benchmarks (`benchmark_latency_sample = 0`: their p50/p95 are empty)"
    seeds = records.drop_duplicates("run_id").groupby(["regime", "condition"])["seed"].nunique() if not records.empty else pd.Series(dtype=int)
    most = int(seeds.max()) if len(seeds) else 0
    seed_text = (f"Runs of one kind come in up to {most} seeds here, so the seed table shows a spread."
                 if most > 1 else "Every kind of run has one seed here: the seed table's spread is 0 by construction, not a measurement.")
    return Markdown(f"Single-request p50/p95: {latency_sample} AIMS-test prompts per run (`latency_sample`), {benchmarks}. {seed_text}")


def mean_over(datasets: list[str]) -> Markdown:
    """Which benchmarks a mean F1 averages, named (06, 07)."""
    from aims_kit.notebook.plots import dataset_name

    if not datasets:
        return Markdown("No external benchmark was evaluated: there is no mean to plot.")
    names = ", ".join(dataset_name(d) for d in datasets)
    return Markdown(f"The mean below is over {len(datasets)} benchmark{'s' if len(datasets) > 1 else ''}: {names}.")
