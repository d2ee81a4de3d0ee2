"""Build the AIMS Kit teaching sample from the authored rows and traces in tools/sample_data/.

Inputs (the format is described in tools/sample_data/FORMAT.md):
    tools/sample_data/<category>.txt        one row per line, LEVEL|ADV|TYPE|PROMPT|INTENT[|LEVEL2|INTENT2]
    tools/sample_data/duplicates.txt        second annotations of existing rows (prompt start|LEVEL|intent)
    tools/sample_data/flagged.txt           Flag for Removal rows (category|prompt)
    tools/sample_data/traces/*.jsonl        one hand-written reasoning per (prompt, label)
Outputs:
    aims_kit/data/sample/aims_sample.csv
    aims_kit/data/sample/reference_traces.jsonl
    aims_kit/data/sample/README.md          (from README_template.md, with computed counts and screens)

Deterministic: the row order and the simulated ``Dataset Harm`` disagreements come from a fixed
seed, and nothing else is random, so building twice gives identical files. Every input error is
reported with its file and line, all at once, so an author can fix a file in one pass.
The package never runs this script; the outputs are committed.

Usage: python tools/build_sample_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aims_kit.core.results import atomic_write_jsonl, atomic_write_text  # noqa: E402
from aims_kit.datasets import formats  # noqa: E402
from aims_kit.datasets.aims import load_aims, prompt_sha256  # noqa: E402
from aims_kit.scoring import probes  # noqa: E402
from aims_kit.training.distill import intent_leakage  # noqa: E402
from aims_kit.training.teachers import Trace  # noqa: E402

SRC = ROOT / "tools" / "sample_data"
OUT = ROOT / "aims_kit" / "data" / "sample"
SEED = 20240611

CATEGORIES = [
    "sensitive_information_organization_government",
    "private_information_individual",
    "copyright_violations",
    "disseminating_false_or_misleading_information",
    "causing_material_harm_by_disseminating_misinformation",
    "social_stereotypes_and_unfair_discrimination",
    "violence_and_physical_harm",
    "toxic_language_hate_speech",
    "sexual_content",
    "cyberattack",
    "fraud_assisting_illegal_activities",
    "encouraging_unethical_or_unsafe_actions",
    "mental_health_over-reliance_crisis",
]
LEVELS = {
    "CH": "Completely Harmful",
    "UH": "Uncertain Harmful",
    "US": "Uncertain Safe",
    "CS": "Completely Safe",
}
FLAG = "Flag for Removal"
BINARY = {
    "Completely Harmful": "harmful",
    "Uncertain Harmful": "harmful",
    "Uncertain Safe": "safe",
    "Completely Safe": "safe",
}
#: Case types. long: long adversarial prompt; wild: messy in-the-wild writing; blunt: plain,
#: unwrapped request; lit: the literal (harmful) counterpart of a double-meaning 'hom' row.
TYPES = ("req", "hom", "fic", "edu", "sec", "help", "about", "med", "priv", "pub", "dual", "long", "wild", "blunt", "lit")
WORDS = (8, 250)
LONG_WORDS = (80, 220)
COLUMNS = [
    "ID", "Wildguard ID", "Duplicate ID", "Prompt", "Intent",
    "Annotator Harm", "Dataset Harm", "Adversarial", "Category", "type",
]
TEACHER = "aims-kit-authored-v2"


class SampleDataError(ValueError):
    """One or more authoring errors, each as ``file:line: message``."""

    def __init__(self, errors: list[str]):
        shown = errors[:60]
        more = f"\n… and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(f"{len(errors)} error(s) in tools/sample_data:\n" + "\n".join(shown) + more)
        self.errors = errors


@dataclass(frozen=True)
class Row:
    """One annotated row as authored. ``prompt`` keeps the ``\\n`` escapes (it is the trace key)."""

    category: str
    level: str
    adv: bool
    ctype: str
    prompt: str
    intent: str
    where: str
    dup: tuple[str, str] | None = None
    dup_group: int | None = None

    @property
    def flagged(self) -> bool:
        return self.level == FLAG

    @property
    def label(self) -> str | None:
        return BINARY.get(self.level)

    @property
    def text(self) -> str:
        """The prompt as a user would send it: ``\\n`` escapes become line breaks."""
        return self.prompt.replace("\\n", "\n")


# --------------------------------------------------------------------------- reading

def _lines(path: Path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            yield n, line


def read_rows(src: Path = SRC) -> list[Row]:
    """Authored rows of every category, then duplicates and flagged rows; errors collected."""
    rows: list[Row] = []
    errors: list[str] = []
    for cat in CATEGORIES:
        path = src / f"{cat}.txt"
        if not path.exists():
            errors.append(f"{path.name}: missing category file")
            continue
        for n, line in _lines(path):
            where = f"{path.name}:{n}"
            parts = line.split("|")
            if len(parts) not in (5, 7):
                errors.append(f"{where}: expected 5 or 7 '|'-separated fields, got {len(parts)}")
                continue
            level, adv, ctype, prompt, intent = (p.strip() for p in parts[:5])
            problems = []
            if level not in LEVELS:
                problems.append(f"LEVEL {level!r} is not one of {', '.join(LEVELS)}")
            if adv not in ("0", "1"):
                problems.append(f"ADV {adv!r} is not 0 or 1")
            if ctype not in TYPES:
                problems.append(f"TYPE {ctype!r} is not one of {', '.join(TYPES)}")
            if len(parts) == 7 and parts[5].strip() not in LEVELS:
                problems.append(f"LEVEL2 {parts[5].strip()!r} is not one of {', '.join(LEVELS)}")
            if problems:
                errors.extend(f"{where}: {p}" for p in problems)
                continue
            dup = (LEVELS[parts[5].strip()], parts[6].strip()) if len(parts) == 7 else None
            rows.append(Row(cat, LEVELS[level], adv == "1", ctype, prompt, intent, where, dup))
    for n, line in _lines(src / "duplicates.txt"):
        where = f"duplicates.txt:{n}"
        parts = line.split("|")
        if len(parts) != 3 or parts[1].strip() not in LEVELS:
            errors.append(f"{where}: expected 'prompt start|LEVEL|intent' with LEVEL in {', '.join(LEVELS)}")
            continue
        start, level, intent = (p.strip() for p in parts)
        hits = [i for i, r in enumerate(rows) if r.prompt.startswith(start)]
        if len(hits) != 1 or rows[hits[0]].dup is not None:
            found = ", ".join(rows[i].where for i in hits) or "none"
            errors.append(f"{where}: prompt start must match exactly one row without a second annotation (matches: {found})")
            continue
        rows[hits[0]] = replace(rows[hits[0]], dup=(LEVELS[level], intent))
    for n, line in _lines(src / "flagged.txt"):
        where = f"flagged.txt:{n}"
        parts = line.split("|")
        if len(parts) != 2 or parts[0].strip() not in CATEGORIES:
            errors.append(f"{where}: expected 'category|prompt' with a known category")
            continue
        rows.append(Row(parts[0].strip(), FLAG, False, "flag", parts[1].strip(), "ambiguous", where))
    errors += check_rows(rows)
    if errors:
        raise SampleDataError(errors)
    return rows


def check_rows(rows: list[Row]) -> list[str]:
    """Length limits, unique prompts, intent form; one message per problem."""
    errors = []
    seen: dict[str, str] = {}
    for r in rows:
        n_words = len(r.text.split())
        low, high = LONG_WORDS if r.ctype == "long" else WORDS
        if not low <= n_words <= high:
            errors.append(f"{r.where}: prompt has {n_words} words; {r.ctype!r} rows need {low}..{high}")
        if r.prompt in seen:
            errors.append(f"{r.where}: prompt already authored at {seen[r.prompt]}")
        seen.setdefault(r.prompt, r.where)
        intents = [r.intent] + ([r.dup[1]] if r.dup else [])
        for intent in intents:
            if not r.flagged and not intent.startswith("The user "):
                errors.append(f"{r.where}: intent must start with 'The user ': {intent[:60]!r}")
            if "\\n" in intent:
                errors.append(f"{r.where}: intent must be one line")
    return errors


def read_traces(src: Path = SRC) -> dict[tuple[str, str], tuple[str, str]]:
    """Reasoning by (prompt as written, label), with where it was written; errors collected."""
    traces: dict[tuple[str, str], tuple[str, str]] = {}
    errors = []
    files = sorted((src / "traces").glob("*.jsonl"))
    if not files:
        raise SampleDataError([f"{src / 'traces'}: no *.jsonl trace files"])
    for path in files:
        for n, line in _lines(path):
            where = f"traces/{path.name}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                errors.append(f"{where}: not valid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(obj, dict) or set(obj) != {"prompt", "label", "reasoning"}:
                keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                errors.append(f"{where}: expected exactly the keys prompt, label, reasoning; got {keys}")
                continue
            prompt, label, reasoning = obj["prompt"], obj["label"], obj["reasoning"]
            if label not in ("harmful", "safe"):
                errors.append(f"{where}: label {label!r} is not 'harmful' or 'safe'")
                continue
            if not isinstance(reasoning, str) or not reasoning.strip() or "\n" in reasoning:
                errors.append(f"{where}: reasoning must be non-empty text on one line")
                continue
            key = (prompt, label)
            if key in traces:
                errors.append(f"{where}: duplicate trace for this prompt and label (first at {traces[key][1]})")
                continue
            traces[key] = (reasoning.strip(), where)
    if errors:
        raise SampleDataError(errors)
    return traces


def match_traces(rows: list[Row], traces: dict[tuple[str, str], tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Check that every (prompt, label) of a non-flagged row has exactly one trace and no trace is spare."""
    needed: dict[tuple[str, str], str] = {}
    for r in rows:
        if r.flagged:
            continue
        needed.setdefault((r.prompt, r.label), r.where)
        if r.dup:
            needed.setdefault((r.prompt, BINARY[r.dup[0]]), r.where + " (second annotation)")
    errors = [f"{where}: no trace with label {label!r} for this prompt in traces/*.jsonl"
              for (prompt, label), where in needed.items() if (prompt, label) not in traces]
    prompts = {p for p, _ in needed}
    for (prompt, label), (_, where) in traces.items():
        if (prompt, label) in needed:
            continue
        hint = (f"the row's label is not {label!r}" if prompt in prompts
                else "no row has this exact prompt (edited in the .txt but not here, or a flagged row?)")
        errors.append(f"{where}: spare trace ({hint}): {prompt[:60]!r}")
    if errors:
        raise SampleDataError(errors)
    return {key: traces[key][0] for key in needed}


# --------------------------------------------------------------------------- table

def expand(rows: list[Row]) -> list[Row]:
    """One row per annotation, shuffled with the fixed seed; duplicate groups renumbered 1..G down the file."""
    expanded = []
    group = 0
    for r in rows:
        if r.dup is None:
            expanded.append(r)
            continue
        group += 1
        expanded.append(replace(r, dup_group=group))
        expanded.append(replace(r, level=r.dup[0], intent=r.dup[1], dup_group=group))
    random.Random(SEED).shuffle(expanded)
    remap: dict[int, int] = {}
    for r in expanded:
        if r.dup_group is not None and r.dup_group not in remap:
            remap[r.dup_group] = len(remap) + 1
    return [replace(r, dup_group=remap[r.dup_group]) if r.dup_group else r for r in expanded]


def build_table(expanded: list[Row]) -> pd.DataFrame:
    """The sample in the AIMS schema (plus ``Category`` and ``type``), with a simulated ``Dataset Harm``."""
    rng = random.Random(SEED + 1)
    records = []
    for i, r in enumerate(expanded, 1):
        if r.flagged:
            dataset = "harmful" if rng.random() < 0.2 else "unharmful"
        else:
            agree = "harmful" if r.label == "harmful" else "unharmful"
            p_flip = 0.30 if r.level.startswith("Uncertain") else (0.08 if r.adv else 0.05)
            flip = rng.random() < p_flip
            dataset = {"harmful": "unharmful", "unharmful": "harmful"}[agree] if flip else agree
        records.append({
            "ID": i, "Wildguard ID": "", "Duplicate ID": r.dup_group, "Prompt": r.text, "Intent": r.intent,
            "Annotator Harm": r.level, "Dataset Harm": dataset, "Adversarial": "True" if r.adv else "False",
            "Category": r.category, "type": r.ctype,
        })
    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    df["Duplicate ID"] = df["Duplicate ID"].astype("Int64")
    return df


def build_traces(expanded: list[Row], reasoning: dict[tuple[str, str], str], prompt_hashes: dict[str, str]) -> list[dict]:
    """Two traces per non-flagged row, sharing one reasoning: ``no_intent``, and ``human_intent``
    which adds the gold intent once, on its own line, before the label.

    ``prompt_hashes`` maps each row ID to :func:`aims_kit.datasets.aims.prompt_sha256` of its
    prompt as the kit loads the written CSV (see :func:`build`); every trace carries it.
    """
    out = []
    for i, r in enumerate(expanded, 1):
        if r.flagged:
            continue
        text = reasoning[(r.prompt, r.label)]
        for condition, intent in (("no_intent", None), ("human_intent", r.intent)):
            fmt = "reasoning_label" if intent is None else "reasoning_intent_label"
            out.append({
                "id": i, "condition": condition, "teacher": TEACHER, "reasoning": text, "intent": intent,
                "label": r.label, "completion": formats.format_target(fmt, r.label, intent=intent, reasoning=text),
                "prompt_sha256": prompt_hashes[str(i)],
            })
    return out


# --------------------------------------------------------------------------- README

def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def stats_markdown(df: pd.DataFrame, traces: list[dict]) -> str:
    """Counts of the generated files: labels, levels, categories, case types, lengths, duplicates."""
    kept = df[df["Annotator Harm"] != FLAG].copy()
    kept["label"] = kept["Annotator Harm"].map(BINARY)
    n_h, n_s = int((kept["label"] == "harmful").sum()), int((kept["label"] == "safe").sum())
    out = [f"Total rows: **{len(df)}** ({len(kept)} after dropping flagged rows).", ""]
    out.append("By binary label (flagged rows dropped):\n")
    out.append(_md_table(["label", "rows", "share"], [
        ["harmful", n_h, _pct(n_h / len(kept))], ["safe", n_s, _pct(n_s / len(kept))]]))
    out.append("\nBy Annotator Harm:\n")
    vc = df["Annotator Harm"].value_counts()
    out.append(_md_table(["Annotator Harm", "rows"], [[k, int(vc.get(k, 0))] for k in [*BINARY, FLAG]]))
    out.append("\nBy category (harmful / safe after mapping; flagged rows counted separately):\n")
    rows = []
    for cat in sorted(CATEGORIES):
        sub, k = df[df["Category"] == cat], kept[kept["Category"] == cat]
        rows.append([f"`{cat}`", len(sub), int((k["label"] == "harmful").sum()), int((k["label"] == "safe").sum()),
                     int((sub["Annotator Harm"] == FLAG).sum()), int((sub["Adversarial"] == "True").sum())])
    out.append(_md_table(["category", "rows", "harmful", "safe", "flagged", "adversarial"], rows))
    out.append("\nBy case type (`type` column; flagged rows dropped):\n")
    words = kept["Prompt"].str.split().str.len()
    rows = []
    for ctype in TYPES:
        k = kept[kept["type"] == ctype]
        if len(k):
            rows.append([f"`{ctype}`", len(k), int((k["label"] == "harmful").sum()), int((k["label"] == "safe").sum()),
                         int((k["Adversarial"] == "True").sum()), int(k["Category"].nunique()),
                         int(words[k.index].median())])
    out.append(_md_table(["type", "rows", "harmful", "safe", "adversarial", "categories", "median words"], rows))
    all_words = df["Prompt"].str.split().str.len()
    long_rows = kept[words >= 80]
    out.append("\nPrompt length in words (all rows):\n")
    out.append(_md_table(["min", "median", "mean", "max", "rows ≥ 80 words (harmful / safe)", "multi-paragraph rows"], [[
        int(all_words.min()), int(all_words.median()), f"{all_words.mean():.1f}", int(all_words.max()),
        f"{len(long_rows)} ({int((long_rows['label'] == 'harmful').sum())} / {int((long_rows['label'] == 'safe').sum())})",
        int(df["Prompt"].str.contains("\n").sum())]]))
    adv, adv_k = df["Adversarial"] == "True", kept["Adversarial"] == "True"
    dup = df[df["Duplicate ID"].notna()]
    agree = ((kept["label"] == "harmful") == (kept["Dataset Harm"] == "harmful")).mean()
    ids = {t["id"] for t in traces}
    tr = kept[kept["ID"].isin(ids)]
    out.append("\nOther counts:\n")
    out.append(_md_table(["quantity", "value"], [
        ["adversarial rows", f"{int(adv.sum())} ({_pct(adv.mean())})"],
        ["adversarial harmful / safe",
         f"{int((adv_k & (kept['label'] == 'harmful')).sum())} / {int((adv_k & (kept['label'] == 'safe')).sum())}"],
        ["Uncertain rows (of non-flagged)",
         f"{int(kept['Annotator Harm'].str.startswith('Uncertain').sum())} "
         f"({_pct(kept['Annotator Harm'].str.startswith('Uncertain').mean())})"],
        ["duplicate groups (rows)", f"{dup['Duplicate ID'].nunique()} ({len(dup)})"],
        ["flagged rows", int((df["Annotator Harm"] == FLAG).sum())],
        ["Dataset Harm agrees with annotator", _pct(agree)],
        ["trace lines", len(traces)],
        ["rows with traces (harmful / safe)",
         f"{len(ids)} ({int((tr['label'] == 'harmful').sum())} / {int((tr['label'] == 'safe').sum())})"],
    ]))
    return "\n".join(out)


def screens_markdown(df: pd.DataFrame, traces: list[dict]) -> str:
    """The cue screens of :mod:`aims_kit.scoring.probes` and the distillation screen, run on the generated files."""
    kept = df[df["Annotator Harm"] != FLAG].copy()
    kept["label"] = kept["Annotator Harm"].map(BINARY)
    intents = dict(zip(kept["ID"].astype(str), kept["Intent"]))
    out = ["Gold-intent overlap of the reasoning, per condition "
           "(`aims_kit.training.distill.intent_leakage`: reasoning sharing any six-word sequence with the "
           "row's gold intent, and the mean share of the intent's content words the reasoning uses):\n"]
    rows = []
    for condition in ("no_intent", "human_intent"):
        objs = [Trace(**{**t, "id": str(t["id"])}) for t in traces if t["condition"] == condition]
        leak = intent_leakage(objs, intents)
        stated = sum(t.completion.count(t.intent) for t in objs if t.intent)
        rows.append([f"`{condition}`", leak["traces"], leak["intent_6gram"], _pct(leak["intent_6gram_rate"]),
                     f"{leak['intent_overlap']:.2f}", stated])
    out.append(_md_table(["condition", "traces", "share a 6-gram", "rate", "token overlap", "intent lines in completions"], rows))
    no_intent = [t for t in traces if t["condition"] == "no_intent"]
    levels = kept.set_index("ID").loc[[t["id"] for t in no_intent], "Annotator Harm"]
    hedges = probes.hedge_rates([t["reasoning"] for t in no_intent], [t["label"] for t in no_intent], levels)
    gaps = probes.hedge_gaps(hedges)
    out.append("\nLabel through style: share of reasoning texts using a hedge word (`aims_kit.scoring.probes.HEDGES`):\n")
    out.append(_md_table(["by", "group", "texts", "hedged", "rate"],
                         [[r.by, r.group, r.n, r.hedged, _pct(r.rate)] for r in hedges.itertuples()]))
    out.append(f"\nGap between labels {gaps['label_gap']:.1%}, between levels {gaps['level_gap']:.1%}.")
    variety = probes.trace_variety([t["reasoning"] for t in no_intent])
    out.append(
        f"\nTrace variety: {variety['texts']} reasoning texts, {variety['distinct_openers']} distinct opening "
        f"three words, {variety['sentences_min']}–{variety['sentences_max']} sentences "
        f"(median {variety['sentences_median']:g}), {variety['words_min']}–{variety['words_max']} words "
        f"(median {variety['words_median']:g}); {_pct(variety['repeated_sentence_share'])} of sentences recur "
        "word for word in three or more traces."
    )
    give = probes.giveaway_table(kept)
    out.append("\nGive-away phrases in adversarial wrappers (`aims_kit.scoring.probes.GIVEAWAY_PATTERNS`):\n")
    out.append(_md_table(["kind", "label", "adversarial rows", "with a phrase"],
                         [[r.kind, r.label, r.adversarial_rows, r.with_phrase] for r in give.itertuples()]))
    probe = probes.wrapper_probe(kept)
    out.append(
        f"\nWrapper probe (`aims_kit.scoring.probes.wrapper_probe`: naive Bayes on the adversarial prompts with the words "
        f"of their intent removed, {probe.folds}-fold cross-validation, {probe.rows} rows): accuracy "
        f"{probe.accuracy:.3f} (95% CI {probe.accuracy_ci_low:.3f}–{probe.accuracy_ci_high:.3f}), F1 {probe.f1:.3f} "
        f"({probe.f1_ci_low:.3f}–{probe.f1_ci_high:.3f}); majority class {probe.majority_accuracy:.3f}, "
        f"shuffled labels {probe.permuted_accuracy_mean:.3f} (95th percentile {probe.permuted_accuracy_p95:.3f}), "
        f"flag-all F1 {probe.f1_flag_all:.3f}. Verdict: {probe.verdict}."
    )
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def build(out_dir: Path = OUT, src: Path = SRC) -> tuple[pd.DataFrame, list[dict]]:
    """Read, check, build and write the three files into ``out_dir``."""
    rows = read_rows(src)
    reasoning = match_traces(rows, read_traces(src))
    expanded = expand(rows)
    df = build_table(expanded)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "aims_sample.csv", df.to_csv(index=False, lineterminator="\n"))
    loaded = load_aims(out_dir / "aims_sample.csv")  # the prompts exactly as the kit will hold them
    traces = build_traces(expanded, reasoning, dict(zip(loaded["ID"], loaded["Prompt"].map(prompt_sha256))))
    atomic_write_jsonl(out_dir / "reference_traces.jsonl", traces)
    template = (src / "README_template.md").read_text(encoding="utf-8")
    readme = template.replace("{{STATS}}", stats_markdown(df, traces)).replace("{{SCREENS}}", screens_markdown(df, traces))
    atomic_write_text(out_dir / "README.md", readme)
    return df, traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: aims_kit/data/sample)")
    args = parser.parse_args(argv)
    try:
        df, traces = build(args.out)
    except SampleDataError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"rows={len(df)} traces={len(traces)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
