"""One line under a notebook table defining its columns, the first time a notebook shows each one.

Why: a workshop participant reads ``intent_similarity`` or ``a_vs_flag_all_ci_low`` in a table
and should not have to leave the notebook to learn what it measures. ``docs/glossary.md`` holds
the full entries; these are their one-line forms (tests/test_glossary_columns.py checks that both
name the same columns and that every column a table shows has a line here).
"""

from __future__ import annotations

import html

import pandas as pd

#: One line per column, as short as the glossary entry allows.
NOTES: dict[str, str] = {
    # what a run is
    "regime": "how the run was trained (sft, dpo, distill, grpo, encoder, zero_shot, served)",
    "condition": "the output format it learned (label_only, intent_label, reasoning_label, reasoning_intent_label)",
    "variant": "what tells runs of one regime and condition apart (DPO rejects, distillation traces, GRPO reward set)",
    "seed": "training seed (on the teaching sample it also draws the val/test split)",
    "seeds": "the seeds grouped into the row",
    "model": "the base model",
    "run_id": "the run folder's name under runs/",
    "run": "the run, as regime, condition and variant",
    "run_a": "the run the paper says wins",
    "run_b": "the run it is compared with (flag everything: the trivial baseline)",
    "device": "where it was scored, and in which dtype",
    "dataset": "what it was scored on",
    "what": "a real benchmark, or a fixture (a format check, never a result)",
    "n": "prompts scored",
    "type": "XSTest's prompt type (the slice)",
    "harmful_share": "share of the slice's prompts that are harmful",
    # scores
    "f1": "harmful-class F1",
    "F1 [95% CI]": "harmful-class F1 with its bootstrap 95% interval",
    "f1_ci_low": "lower end of F1's bootstrap 95% interval",
    "f1_ci_high": "upper end of F1's bootstrap 95% interval",
    "precision": "of the prompts flagged harmful, the share that are",
    "recall": "of the harmful prompts, the share flagged",
    "accuracy": "share of prompts labelled right (both classes)",
    "flag_rate": "share of prompts flagged harmful",
    "f1_flag_all": "F1 of flagging every prompt harmful: the baseline to beat",
    "flag-all F1": "F1 of flagging every prompt harmful: the baseline to beat",
    "f1_flag_none": "F1 of flagging nothing (0)",
    "parse_failure_rate": "share of answers with no readable label (each counted safe)",
    "parse fail": "share of answers with no readable label (each counted safe)",
    "n_unknown_skipped": "benchmark rows without a label of their own, skipped and counted",
    "checkpoint_step": "the training step kept, chosen on validation",
    "intent_repeat_rate": "share of written intents that repeat a four-word sequence (a model stuck in a loop)",
    "intent repeats": "share of written intents that repeat a four-word sequence (a model stuck in a loop)",
    "intent_similarity": "mean 0–1 similarity of the written intent to the human one (offline MiniLM judge)",
    "intent sim.": "mean 0–1 similarity of the written intent to the human one (offline MiniLM judge)",
    # cost
    "ms_per_prompt": "batched throughput: wall clock of the whole set ÷ prompts",
    "ms/prompt": "batched throughput: wall clock of the whole set ÷ prompts",
    "latency_p50_ms": "median single-request latency (a few prompts sent one at a time)",
    "latency_p95_ms": "95th-percentile single-request latency",
    "tokens_per_prompt": "tokens generated per prompt (none where the label is scored or a head classifies)",
    "label_method": "generated (decoded, then parsed) or scored (one forward pass reads the label word)",
    "ms_median": "claim 5's latency: median ms/prompt of the passes, every run timed at one moment",
    "ms_min": "fastest pass of the controlled timing",
    "ms_max": "slowest pass of the controlled timing",
    "repeats": "timed passes of the controlled timing",
    # seeds and the Pareto summary
    "n_seeds": "seeds grouped into the row or point",
    "f1_mean": "F1 averaged over the seeds",
    "f1_std": "standard deviation of F1 across the seeds",
    "f1_mean±std": "F1 over the seeds, mean ± standard deviation",
    "n_datasets": "datasets the mean is over",
    "mean_f1": "F1 averaged over the datasets named in the plot's title",
    "f1_err": "error bar: half-width of the mean's interval, or the seed spread",
    "setting": "condition and variant",
    "label": "regime and setting, the legend's name",
    "on_frontier": "no run and not flagging everything is both at least as fast and better",
    # paired comparisons
    "f1_a": "F1 of run_a",
    "f1_b": "F1 of run_b",
    "f1_diff": "ΔF1 = F1(run_a) − F1(run_b), on the same prompts",
    "diff_ci_low": "lower end of ΔF1's paired interval",
    "diff_ci_high": "upper end of ΔF1's paired interval",
    "ci_level": "the level of those intervals (95%, or Holm's level for a headline)",
    "p_value": "two-sided p of ΔF1",
    "p_a_better": "one-sided p that run_a is better",
    "p_b_better": "one-sided p that run_b is better",
    "p_method": "how p was computed (permutation, bootstrap, two-level bootstrap)",
    "holm_p": "headline p after Holm's correction across the five claims (it decides the verdict)",
    "diff_se": "bootstrap standard error of ΔF1",
    "detectable_diff": "smallest ΔF1 these prompts could detect (5% two-sided, 80% power)",
    "a_vs_flag_all_p": "p that run_a beats flagging everything",
    "a_vs_flag_all_ci_low": "lower end of F1(run_a) − F1(flag everything)",
    "a_vs_flag_all_ci_high": "upper end of F1(run_a) − F1(flag everything)",
    "labels_differ": "prompts on which the two runs' labels differ",
    "seeds_a": "seeds in run_a's arm",
    "seeds_b": "seeds in run_b's arm",
    "precision_a": "precision of run_a",
    "recall_a": "recall of run_a",
    "flag_rate_a": "flag rate of run_a",
    "precision_b": "precision of run_b",
    "recall_b": "recall of run_b",
    "flag_rate_b": "flag rate of run_b",
    "a_better": "the interval says run_a is better",
    "b_better": "the interval says run_b is better",
    "only_a_correct": "prompts only run_a labels right",
    "only_b_correct": "prompts only run_b labels right",
    "mcnemar_p": "exact McNemar p on those discordant prompts",
    "auprc_a": "AUPRC of run_a's P(harmful): ranking quality, no threshold",
    "auprc_b": "AUPRC of run_b's P(harmful)",
    "auprc_diff": "ΔAUPRC on the prompts both runs answered",
    "auprc_diff_ci_low": "lower end of ΔAUPRC's paired interval",
    "auprc_diff_ci_high": "upper end of ΔAUPRC's paired interval",
    "verdict": "what the numbers say of the paper's claim (docs/glossary.md, Verdicts)",
    "headline": "the one test per claim named in advance (Holm-adjusted)",
    "note": "what else a reader needs: seeds, rivals, what was missing",
    # power
    "claim": "the paper's claim",
    "discordance": "share of prompts on which the two runs' correctness differs",
    "paper_gap": "the F1 difference the paper reports for the claim",
    "prompts_needed": "prompts needed to detect the paper's gap",
    "prompts_needed_holm": "the same under Holm's strictest step",
}


class Explained:
    """A table shown with one line defining the columns a notebook has not defined yet."""

    def __init__(self, frame: pd.DataFrame, defined: list[str]):
        self.frame, self.defined = frame, defined

    def line(self) -> str:
        return "Columns: " + "; ".join(f"{name}: {NOTES[name]}" for name in self.defined) + "." if self.defined else ""

    def _repr_html_(self) -> str:
        note = "; ".join(f"<code>{html.escape(name)}</code>: {html.escape(NOTES[name])}" for name in self.defined)
        return self.frame.to_html(escape=True) + (f"<p><small>Columns: {note}.</small></p>" if note else "")

    def __repr__(self) -> str:
        return repr(self.frame) + ("\n" + self.line() if self.defined else "")


_SHOWN: set[str] = set()


def explained(frame: pd.DataFrame | None) -> Explained | None:
    """``frame`` with a line defining each of its columns this kernel has not shown before (dataset columns of a
    scoreboard are named, not defined). ``None`` passes through (a notebook cell with nothing to show)."""
    if frame is None:
        return None
    new = [str(c) for c in frame.columns if str(c) in NOTES and str(c) not in _SHOWN]
    _SHOWN.update(new)
    return Explained(frame, new)
