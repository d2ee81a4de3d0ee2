"""Reasoning distillation: screen teacher traces, then train a student on them with SFT (docs/design.md §Regimes).

A trace is kept only if it passes two checks:

- **leakage** (:func:`leak_reason`): the teacher saw the gold label (and intent) and was told
  not to say so; traces that still reveal it ("the label", "I was told", "ground truth", …)
  would teach the student to cite an answer key it will never have;
- **label agreement**: the trace's parsed label (the one parser) must equal the gold label.

The screen also *measures* (it does not drop) two cues a student could learn instead of the task:

- **gold-intent overlap** (:func:`intent_leakage`): reasoning that copies the human intent makes
  the ``no_intent`` condition a hidden ``human_intent`` one, and the comparison measures nothing.
  Counted as traces whose reasoning shares any six-word sequence with the row's gold intent,
  plus a cheap similarity (:func:`aims_kit.scoring.probes.token_overlap`: share of the intent's content
  words the reasoning uses; MiniLM embeddings were ~50 s per 1,600 traces on one CPU core, too
  slow for a check that runs with every distillation). Expected 0 shared sequences for
  ``no_intent``; a live teacher that never saw the intent can still share one by quoting the prompt;
- **label through style** (:func:`aims_kit.scoring.probes.hedge_rates`): hedging words used by one
  label (or only by Uncertain rows) let the student read the label off the wording.

Students of every condition train on the *same* rows (those with a clean trace in every
condition compared) and the same seed, so the conditions differ only in what the traces say.
Only train and val rows are ever given to a teacher; the test split is for the final score.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from aims_kit.core import results
from aims_kit.core.distributed import is_main_process
from aims_kit.datasets import formats
from aims_kit.datasets.aims import require_split
from aims_kit.models.lora import LoraSettings
from aims_kit.scoring import probes
from aims_kit.training.teachers import (
    Teacher,
    Trace,
    TraceCondition,
    TraceConditionUnavailable,
    output_condition,
    save_traces,
)

#: Distillation used a larger adapter than SFT in the paper (r=32, α=64).
DISTILL_LORA = LoraSettings(r=32, alpha=64)

#: Phrases that reveal the teacher was given the answer. Matched case-insensitively on word
#: boundaries at the start; "annotat" catches annotator/annotation/annotated.
LEAK_PATTERNS = (
    r"the label", r"labell?ed", r"given label", r"i was told", r"ground[- ]truth", r"gold\b",
    r"annotat", r"provided answer", r"as instructed",
)
_LEAK_RE = re.compile(r"\b(" + "|".join(LEAK_PATTERNS) + r")", re.IGNORECASE)


def leak_reason(text: str) -> str | None:
    """The first phrase in ``text`` that reveals a given answer, or ``None`` if it reads clean."""
    match = _LEAK_RE.search(text or "")
    return match.group(0) if match else None


@dataclass
class ScreenReport:
    """How many traces each check dropped (and the rows no trace covered).

    ``intent_6gram`` / ``intent_overlap``: of the kept traces, how many repeat a six-word
    sequence of the gold intent, and their mean token overlap with it (:func:`intent_leakage`).
    """

    condition: str
    rows: int = 0
    traces: int = 0
    leaked: int = 0
    label_disagrees: int = 0
    kept: int = 0
    missing: int = 0
    intent_6gram: int = 0
    intent_overlap: float = 0.0
    leak_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def screen_traces(traces: list[Trace], frame: pd.DataFrame, trace_condition: str) -> tuple[dict[str, Trace], ScreenReport]:
    """Drop leaking traces and traces whose label disagrees with gold; returns kept traces by row id."""
    gold = dict(zip(frame["ID"].astype(str), frame["label"]))
    report = ScreenReport(condition=trace_condition, rows=len(frame), traces=len(traces))
    kept: dict[str, Trace] = {}
    for trace in traces:
        if trace.id not in gold:
            continue
        leak = leak_reason(trace.completion or trace.reasoning)
        if leak:
            report.leaked += 1
            if len(report.leak_examples) < 3:
                report.leak_examples.append(f"{trace.id}: …{leak}…")
            continue
        if formats.parse_output(trace.completion).label != gold[trace.id]:
            report.label_disagrees += 1
            continue
        kept[trace.id] = trace
    report.kept = len(kept)
    report.missing = len(frame) - len({t.id for t in traces} & set(gold))
    if "Intent" in frame.columns:
        leakage = intent_leakage(kept.values(), dict(zip(frame["ID"].astype(str), frame["Intent"])))
        report.intent_6gram, report.intent_overlap = leakage["intent_6gram"], leakage["intent_overlap"]
    return kept, report


def intent_leakage(traces: Iterable[Trace], intents: Mapping[str, str], n: int = 6) -> dict[str, float]:
    """How much the traces' *reasoning* repeats the gold intent of their row.

    Only the reasoning is read: in ``human_intent`` the completion states the intent once on
    its own line by design, and a reasoning that repeats it would state it twice. Returns the
    number of traces, how many share an ``n``-word sequence with the gold intent (and their
    share), and the mean :func:`aims_kit.scoring.probes.token_overlap`. Traces whose row has no intent
    in ``intents`` are skipped.
    """
    pairs = [(intents[t.id], t.reasoning or "") for t in traces if t.id in intents]
    shared = sum(bool(probes.shared_ngrams(intent, text, n)) for intent, text in pairs)
    overlap = sum(probes.token_overlap(intent, text) for intent, text in pairs)
    return {
        "traces": len(pairs),
        "intent_6gram": shared,
        "intent_6gram_rate": shared / len(pairs) if pairs else 0.0,
        "intent_overlap": overlap / len(pairs) if pairs else 0.0,
    }


def leakage_table(trace_sets: dict[str, TraceSet]) -> pd.DataFrame:
    """Per condition, over the train and val traces a student will learn from: gold-intent overlap and hedging.

    Columns: ``traces``; ``intent_6gram`` / ``intent_6gram_rate`` (reasoning sharing a six-word
    sequence with the gold intent); ``intent_overlap`` (mean token overlap with it);
    ``hedge_<group>`` (share of reasoning texts that hedge, by label and by certainty level) and
    the two gaps between them. Read the ``no_intent`` row first: its ``intent_6gram`` should be 0.
    """
    rows = []
    for trace_condition, ts in trace_sets.items():
        frame = pd.concat([ts.train, ts.val], ignore_index=True)
        by_id = {t.id: t for t in ts.traces}
        texts = [by_id[i].reasoning or "" for i in frame["ID"].astype(str)]
        leakage = intent_leakage(ts.traces, dict(zip(frame["ID"].astype(str), frame["Intent"])))
        hedges = probes.hedge_rates(texts, frame["label"], frame["Annotator Harm"])
        rows.append({
            "condition": trace_condition, **leakage,
            **{f"hedge_{g}": r for g, r in zip(hedges["group"], hedges["rate"])},
            **{f"hedge_{k}": v for k, v in probes.hedge_gaps(hedges).items()},
        })
    return pd.DataFrame(rows)


@dataclass
class TraceSet:
    """Clean traces of one trace condition for the shared train and val rows."""

    trace_condition: TraceCondition
    train: pd.DataFrame
    val: pd.DataFrame
    train_completions: list[str]
    val_completions: list[str]
    traces: list[Trace]
    reports: dict[str, ScreenReport]


def collect_traces(
    teacher: Teacher,
    train: pd.DataFrame,
    val: pd.DataFrame,
    trace_conditions: list[TraceCondition],
) -> tuple[dict[str, TraceSet], dict[str, str]]:
    """Screened traces per condition, restricted to the rows every available condition covers.

    Returns ``(trace_sets, skipped)``: ``skipped`` maps a condition the teacher cannot serve to
    the reason (a traces file without that condition, or one written for other prompts — the
    shipped file against the hub data), so the notebook can print it and the condition is
    reported not tested. A traces file that matches some rows by id and prompt but not others
    is an error (:class:`aims_kit.datasets.aims.AimsDataError`), not a skip.
    """
    require_split(train, "train", "distillation training rows")
    require_split(val, "val", "distillation early stopping")
    kept: dict[str, dict[str, dict[str, Trace]]] = {}
    reports: dict[str, dict[str, ScreenReport]] = {}
    skipped: dict[str, str] = {}
    for trace_condition in trace_conditions:
        try:
            per_split = {name: teacher.traces(frame, trace_condition) for name, frame in (("train", train), ("val", val))}
        except TraceConditionUnavailable as err:
            skipped[trace_condition] = str(err)
            continue
        kept[trace_condition], reports[trace_condition] = {}, {}
        for name, frame in (("train", train), ("val", val)):
            kept[trace_condition][name], reports[trace_condition][name] = screen_traces(per_split[name], frame, trace_condition)
        empty = [name for name in ("train", "val") if not kept[trace_condition][name]]
        if empty:  # e.g. a model that writes no intent: skipping it keeps the other conditions' rows
            report = reports[trace_condition][empty[0]]
            skipped[trace_condition] = (f"none of {report.traces} {empty[0]} traces survived the screen (leaked {report.leaked}, "
                                        f"label disagrees {report.label_disagrees}, the rest empty: e.g. no intent was written)")
            del kept[trace_condition], reports[trace_condition]
    sets = {}
    for trace_condition in kept:
        frames, completions = {}, {}
        for name, frame in (("train", train), ("val", val)):
            common = set.intersection(*(set(kept[c][name]) for c in kept))
            frames[name] = frame[frame["ID"].astype(str).isin(common)].reset_index(drop=True)
            completions[name] = [kept[trace_condition][name][i].completion for i in frames[name]["ID"].astype(str)]
        used = [kept[trace_condition][n][i] for n in ("train", "val") for i in frames[n]["ID"].astype(str)]
        sets[trace_condition] = TraceSet(
            trace_condition, frames["train"], frames["val"], completions["train"], completions["val"], used, reports[trace_condition]
        )
    return sets, skipped


def screen_table(trace_sets: dict[str, TraceSet]) -> pd.DataFrame:
    """One row per (condition, split): traces seen, dropped for leakage or label, kept, used."""
    rows = []
    for trace_condition, ts in trace_sets.items():
        for split, report in ts.reports.items():
            used = len(getattr(ts, split))
            rows.append({**{k: v for k, v in report.to_dict().items() if k != "leak_examples"}, "split": split, "used": used})
    return pd.DataFrame(rows)


def traces_table(trace_sets: dict[str, TraceSet], per_condition: int = 2) -> pd.DataFrame:
    """A few traces of each condition side by side, to read what the student will learn to write."""
    rows = [t.to_dict() for ts in trace_sets.values() for t in ts.traces[:per_condition]]
    return pd.DataFrame(rows, columns=["id", "condition", "teacher", "reasoning", "intent", "label", "completion"])[["id", "condition", "completion"]]


def train_student(model_name: str, trace_set: TraceSet, *, settings, run_dir: Path, val_f1_tokens: int = 0):
    """SFT a student on one condition's traces (output format from :func:`output_condition`).

    With ``val_f1_tokens`` its checkpoint is the one whose labels score best on the validation
    rows, as for every SFT run (:func:`aims_kit.training.sft.train_sft`).
    """
    from aims_kit.training.sft import train_sft

    if is_main_process():  # under several processes the main one writes
        save_traces(Path(run_dir) / "traces.jsonl", trace_set.traces)
        results.atomic_write_json(
            Path(run_dir) / "trace_screen.json", {split: r.to_dict() for split, r in trace_set.reports.items()}
        )
    return train_sft(
        model_name,
        trace_set.train,
        trace_set.val,
        condition=output_condition(trace_set.trace_condition),
        settings=settings,
        run_dir=run_dir,
        train_completions=trace_set.train_completions,
        val_completions=trace_set.val_completions,
        val_f1_tokens=val_f1_tokens,
        name=student_name(trace_set.trace_condition),
    )


def student_name(trace_condition: str) -> str:
    """What logs call a student: by the traces it learns from (``synthetic_intent`` and ``human_intent``
    students share the output format ``reasoning_intent_label``, so the format alone cannot tell them apart)."""
    return f"student {trace_condition}"
