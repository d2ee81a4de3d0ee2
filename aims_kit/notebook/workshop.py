"""The teacher's guide (``docs/workshop.md``) rendered from one named run folder.

Why: the guide's answers were typed by hand and drifted from every run after the one they were
read from (an answer quoting +0.079 beside a results page with +0.025). Here the guide's prose
lives in a template (``docs/workshop.template.md``) whose every figure is a placeholder, and the
kit fills each one from the run folder's files: ``parameters.json``, ``status.json``, the results
records, ``claims.json`` and the DPO run's mining report. The values used are saved beside the
guide (``workshop.values.json``), so a test can re-render it and hold it to them.

A placeholder is ``{{ KIND ARG … }}``; the kinds are the keys of :data:`KINDS`. One the run
cannot fill is an error naming it, never a blank in the guide.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import pandas as pd

from aims_kit.core.progress import format_duration
from aims_kit.core.results import load_records, read_json, read_jsonl

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
#: Where the template lives, relative to the checkout.
TEMPLATE = Path("docs") / "workshop.template.md"


class WorkshopError(ValueError):
    """A placeholder the run folder cannot fill (named with what is missing)."""


def values_path(guide: Path) -> Path:
    """Where the values a guide was rendered with are kept: ``workshop.values.json`` beside ``workshop.md``."""
    return Path(guide).with_suffix(".values.json")


def placeholders(template: str) -> list[str]:
    """Every placeholder of ``template`` in order, each once (its text between the braces, spaces normalised)."""
    return list(dict.fromkeys(" ".join(m.split()) for m in PLACEHOLDER.findall(template)))


def render(template: str, lookup: Callable[[str], str]) -> str:
    """``template`` with every placeholder replaced by ``lookup(placeholder)``."""
    return PLACEHOLDER.sub(lambda m: lookup(" ".join(m.group(1).split())), template)


@dataclass
class RunFolder:
    """What a run folder holds, read once; the placeholders' source."""

    path: Path
    parameters: dict
    status: dict
    records: pd.DataFrame
    claims: list = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> RunFolder:
        from aims_kit.evaluation import claims

        path = Path(path)
        records = load_records(path)
        if records.empty:
            raise WorkshopError(f"{path}: no results records (is it a run folder written by `python -m aims_kit run`?)")
        entries = claims.read_claims(path / "claims.json") if (path / "claims.json").exists() else claims.scoreboard(records)
        return cls(path, _json(path / "parameters.json"), _json(path / "status.json"), records, entries)

    def run(self, key: str) -> pd.Series:
        """The newest record set of the run named ``regime/variant`` (or ``regime/condition``): one row per dataset."""
        regime, _, kind = key.partition("/")
        variant = self.records["variant"].fillna("") if "variant" in self.records else pd.Series("", index=self.records.index)
        mine = self.records[(self.records["regime"] == regime)
                            & ((variant == kind) | ((variant == "") & (self.records["condition"] == kind)))]
        if mine.empty:
            raise WorkshopError(f"no {key} run in {self.path.name}")
        created = mine["config"].map(lambda c: (c or {}).get("created", ""))
        return mine[created == created.max()]

    def record(self, key: str, dataset: str) -> pd.Series:
        rows = self.run(key)
        rows = rows[rows["dataset"] == _dataset(dataset)]
        if rows.empty:
            raise WorkshopError(f"the {key} run was not evaluated on {dataset} in {self.path.name}")
        return rows.iloc[0]

    def entry(self, claim: str, dataset: str):
        found = [e for e in self.claims if str(e.claim) == claim and e.dataset == _dataset(dataset)]
        if not found:
            raise WorkshopError(f"claims.json of {self.path.name} has no claim {claim} on {dataset}")
        return found[0]

    def table_entry(self, claim: str, dataset: str):
        """The cell as the claim's own notebook table shows it (:func:`aims_kit.evaluation.claims.claim_table`:
        read at 95%, no Holm adjustment), so the guide can quote what a student sees there."""
        from aims_kit.evaluation import claims

        found = [e for e in claims.scoreboard(self.records, only=int(claim)) if e.dataset == _dataset(dataset)]
        if not found:
            raise WorkshopError(f"{self.path.name} has no claim {claim} on {dataset}")
        return found[0]


def _json(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def _dataset(name: str) -> str:
    """A dataset as records name it: ``xstest`` → ``bench:xstest``, ``external_mean`` → the claims' mean."""
    from aims_kit.evaluation.claims import EXTERNAL_MEAN

    if name == "external_mean":
        return EXTERNAL_MEAN
    return name if name.startswith(("aims_", "bench:", "fixture:")) else f"bench:{name}"


def _short(commit: str) -> str:
    return commit.removesuffix("+dirty")[:12] + ("+dirty" if commit.endswith("+dirty") else "")


# --- the kinds of placeholder -------------------------------------------------------------------


def _identity(run: RunFolder, *, what: str) -> str:
    records = run.records
    if what == "run":
        return run.path.name
    if what in ("profile", "model", "seed"):
        return str(run.parameters.get(what, records.iloc[0].get(what)))
    if what == "commit":
        commits = sorted({str(c) for c in records["config"].map(lambda c: (c or {}).get("git_commit")) if c})
        return ", ".join(f"`{_short(c)}`" for c in commits) or "unknown"
    if what == "date":
        created = sorted(str(c) for c in records["config"].map(lambda c: (c or {}).get("created")) if c)
        return created[0][:10] if created else "unknown"
    if what == "machine":
        first = records.iloc[0]
        threads = records["torch_threads"].dropna().iloc[0] if "torch_threads" in records and records["torch_threads"].notna().any() else None
        return ", ".join(str(part) for part in (first.get("device"), f"{first.get('compute_dtype') or first.get('dtype')} compute",
                                                f"{int(threads)} torch threads" if threads else None) if part)
    if what == "dtype":
        dtype = records.iloc[0].get("compute_dtype") or records.iloc[0].get("dtype")
        return "native bf16" if dtype == "bfloat16" else f"{dtype} (no native bf16)"
    raise WorkshopError(f"unknown run fact {what!r}")


def _time(run: RunFolder, notebook: str) -> str:
    seconds = run.status.get("seconds", {})
    if notebook == "total":
        if not seconds:
            raise WorkshopError(f"{run.path.name}/status.json records no notebook times")
        return format_duration(sum(seconds.values()))
    found = [s for name, s in seconds.items() if name.startswith(notebook)]
    if not found:
        raise WorkshopError(f"{run.path.name}/status.json has no time for {notebook}")
    return format_duration(found[0])


def _param(run: RunFolder, name: str) -> str:
    value: object = run.parameters
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise WorkshopError(f"{run.path.name}/parameters.json has no {name}")
        value = value[part]
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


#: Per-record figures: ``{{ f1 sft/intent_label aims_test }}``.
METRICS: dict[str, Callable[[pd.Series], str]] = {
    "f1": lambda r: format(r["f1"], ".3f"),
    "ci": lambda r: f"[{r['f1_ci_low']:.3f}, {r['f1_ci_high']:.3f}]",
    "flag_rate": lambda r: format(r["flag_rate"], ".0%"),
    "precision": lambda r: format(r["precision"], ".2f"),
    "recall": lambda r: format(r["recall"], ".2f"),
    "accuracy": lambda r: format(r["accuracy"], ".2f"),
    "auprc": lambda r: format(r["auprc"], ".3f"),
    "parse": lambda r: format(r["parse_failure_rate"], ".0%"),
    "ms": lambda r: format(r["ms_per_prompt"], ".0f"),
    "p50": lambda r: format(r["latency_p50_ms"], ".0f"),
    "tokens": lambda r: format(r["tokens_per_prompt"], ".0f"),
    "tp": lambda r: str(int(r["tp"])),
    "fp": lambda r: str(int(r["fp"])),
    "fn": lambda r: str(int(r["fn"])),
}


def _metric(run: RunFolder, key: str, dataset: str, *, metric: str) -> str:
    record = run.record(key, dataset)
    try:
        return METRICS[metric](record)
    except (KeyError, TypeError, ValueError) as err:
        raise WorkshopError(f"the {key} record on {dataset} has no {metric} ({err})") from None


def _dataset_fact(run: RunFolder, dataset: str, *, what: str) -> str:
    rows = run.records[run.records["dataset"] == _dataset(dataset)]
    if rows.empty:
        raise WorkshopError(f"nothing was evaluated on {dataset} in {run.path.name}")
    row = rows.iloc[0]
    harmful = int(row["tp"] + row["fn"])
    return {"flag_all": format(row["f1_flag_all"], ".3f"), "n": str(int(row["n"])), "harmful": str(harmful),
            "harmful_share": format(harmful / row["n"], ".3f")}[what]


def _claim(run: RunFolder, number: str, dataset: str, what: str) -> str:
    entry = run.entry(number, dataset)
    e = entry.evidence
    if what == "verdict":
        return f"*{entry.verdict}*"
    if what == "table_verdict":
        return f"*{run.table_entry(number, dataset).verdict}*"
    if not e:
        raise WorkshopError(f"claim {number} on {dataset} was not tested: {entry.note}")
    figures = {
        "diff": lambda: f"{e['f1_diff']:+.3f} [{e['diff_ci_low']:+.3f}, {e['diff_ci_high']:+.3f}]",
        "f1s": lambda: f"{e['f1_a']:.3f} against {e['f1_b']:.3f}",
        "detectable": lambda: f"{e['detectable_diff']:.2f}",
        "differ": lambda: str(int(e["labels_differ"])),
        "differ_share": lambda: f"{e['labels_differ'] / e['n']:.0%}",
        "n": lambda: str(int(e["n"])),
        "holm_p": lambda: f"{entry.holm_p:.2g}" if entry.holm_p is not None else "none (exploratory)",
        "auprc": lambda: f"{e['auprc_a']:.3f} against {e['auprc_b']:.3f}",
        "runs": lambda: f"`{entry.run_a}` against `{entry.run_b}`",
        "gap": lambda: f"{entry.paper_gap:.2f}",
        # the prompts the paper's gap would need at this discordance (the power table's rule)
        "needed": lambda: f"{math.ceil(e['n'] * (e['detectable_diff'] / entry.paper_gap) ** 2):,}",
    }
    if what not in figures:
        raise WorkshopError(f"unknown claim figure {what!r}")
    try:
        return figures[what]()
    except (KeyError, TypeError) as err:
        raise WorkshopError(f"claim {number} on {dataset} has no {what} ({err})") from None


def _dpo(run: RunFolder, what: str) -> str:
    rows = run.run("dpo/" + str(run.parameters.get("dpo_variant", "judge")))
    report = (rows.iloc[0]["config"] or {}).get("mining_report", {}).get("train", {})
    if not report:
        raise WorkshopError("the DPO run's config has no mining report")
    mined, kept = report.get("pairs_per_class_mined", {}), report.get("pairs_per_class", {})
    if what == "mined":
        return f"{mined.get('harmful', 0)} harmful and {mined.get('safe', 0)} safe pairs from {report.get('prompts')} prompts"
    if what == "kept":
        return f"{kept.get('harmful', 0)} harmful : {kept.get('safe', 0)} safe"
    raise WorkshopError(f"unknown DPO figure {what!r}")


def _reward(run: RunFolder, key: str) -> str:
    rows = run.run(key)
    log = read_jsonl(Path(rows.iloc[0]["run_dir"]) / "reward_log.jsonl")
    if not log:
        raise WorkshopError(f"the {key} run has no reward log")
    return " → ".join(f"{row['reward']:.3f}" for row in log)


#: Placeholder kinds: name → (number of arguments, how to fill it).
KINDS: dict[str, tuple[int, Callable[..., str]]] = {
    **{what: (0, partial(_identity, what=what)) for what in ("run", "profile", "model", "seed", "commit", "date", "machine", "dtype")},
    "time": (1, _time),
    "param": (1, _param),
    **{metric: (2, partial(_metric, metric=metric)) for metric in METRICS},
    **{what: (1, partial(_dataset_fact, what=what)) for what in ("flag_all", "n", "harmful", "harmful_share")},
    "claim": (3, _claim),
    "dpo": (1, _dpo),
    "reward": (1, _reward),
}


def fill(run: RunFolder, placeholder: str) -> str:
    """One placeholder's value from ``run`` (:data:`KINDS` says what each kind reads)."""
    kind, *args = placeholder.split()
    if kind not in KINDS:
        raise WorkshopError(f"{{{{ {placeholder} }}}}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    arity, function = KINDS[kind]
    if len(args) != arity:
        raise WorkshopError(f"{{{{ {placeholder} }}}}: {kind} takes {arity} argument(s)")
    return function(run, *args)


def workshop_values(template: str, out_dir: Path) -> dict[str, str]:
    """Every placeholder of ``template`` filled from the run folder ``out_dir``; the first that cannot be is an error."""
    run = RunFolder.read(out_dir)
    values = {}
    for placeholder in placeholders(template):
        try:
            values[placeholder] = fill(run, placeholder)
        except WorkshopError as err:
            raise WorkshopError(f"{{{{ {placeholder} }}}}: {err}") from None
    return values


def write_workshop(out_dir: Path, guide: Path, template_path: Path) -> Path:
    """Render ``template_path`` from ``out_dir`` into ``guide``, and the values used into :func:`values_path`."""
    from aims_kit.core.results import atomic_write_json, atomic_write_text, git_commit

    template = Path(template_path).read_text(encoding="utf-8")
    values = workshop_values(template, out_dir)
    atomic_write_text(guide, render(template, values.__getitem__))
    atomic_write_json(values_path(guide), {"run_folder": Path(out_dir).name, "written_at": _short(git_commit()),
                                           "template": str(template_path), "values": values})
    return guide
