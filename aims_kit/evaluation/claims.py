"""The claims scoreboard: does this run folder reproduce the paper's five claims, dataset by dataset?

Everything here is computed from the results records and prediction files a run folder holds
(:func:`aims_kit.core.results.load_records`), never written by hand. Each claim names the two runs it
compares; they are compared **paired, on the same prompts**: ΔF1 = F1(paper's winner) − F1(the
other) with a paired bootstrap 95% interval and McNemar's exact p (:mod:`aims_kit.scoring.stats`). The
verdict follows from those numbers alone:

- *reproduced*: Δ > 0 and the whole interval above 0;
- *same direction, not significant*: Δ > 0, the interval reaches 0 or below;
- *not reproduced*: Δ ≤ 0;
- *not tested*: a run or a dataset is missing (the reason is given).

Datasets are the AIMS test split and every **real** external benchmark both runs were scored on,
plus ``external mean``: the paper's headline, the unweighted mean F1 over those benchmarks.
Fixture rows (``fixture:<name>``, a dozen of the kit's own sentences in a benchmark's file format)
are never a benchmark: a folder with only fixtures has its external claims *not tested*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from aims_kit.core.results import atomic_write_json, load_records, read_json
from aims_kit.scoring import stats
from aims_kit.scoring.stats import pareto_mask

REPRODUCED = "reproduced"
NOT_SIGNIFICANT = "same direction, not significant"
NOT_REPRODUCED = "not reproduced"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, NOT_SIGNIFICANT, NOT_REPRODUCED, NOT_TESTED)

#: The dataset name of the mean over real external benchmarks.
EXTERNAL_MEAN = "external mean"
#: Two runs that write the same answer for at least this share of prompts have not trained apart:
#: their comparison cannot come out either way, so the claim is *not tested* at this budget.
SAME_OUTPUT_SHARE = 0.95
#: Output conditions whose answer states the user's intent.
INTENT_CONDITIONS = ("intent_label", "reasoning_intent_label")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: what it says and which two runs test it."""

    number: int
    name: str
    #: The paper's direction, in words: "A beats B".
    statement: str
    #: What the paper measured (8B models, the real AIMS data, GPU hours).
    paper: str
    #: Datasets whose entry decides the claim's headline verdict, in order of preference.
    headline: tuple[str, ...]


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "intent SFT", "intent → label SFT beats label-only SFT",
          "SFT with the intent-then-label target is the base every other regime builds on", ("aims_test", EXTERNAL_MEAN)),
    Claim(2, "DPO on intent errors", "DPO on the SFT model's own intent errors beats its SFT start",
          "DPO mean F1 .812 vs SFT .792 (Llama-8B, five benchmarks)", ("aims_test", EXTERNAL_MEAN)),
    Claim(3, "intent-conditioned distillation", "a student of intent-conditioned traces beats one of reasoning-only traces",
          "human-intent traces beat reasoning-only traces for most teacher/student pairs (distillation .817)", ("aims_test", EXTERNAL_MEAN)),
    Claim(4, "GRPO intent reward", "GRPO rewarding intent faithfulness beats GRPO rewarding the label only, on mean F1 over external benchmarks",
          "label + intent reward: best mean F1 on five benchmarks (.826)", (EXTERNAL_MEAN, "aims_test")),
    Claim(5, "Pareto frontier", "intent-aware models form the latency–F1 Pareto frontier",
          "the intent-aware models form the latency–F1 frontier (SFT 4.66 ms/prompt … GRPO 25.3, one GPU)", (EXTERNAL_MEAN, "aims_test")),
)


@dataclass
class Entry:
    """One claim on one dataset: the two runs compared, the paired numbers and the verdict."""

    claim: int
    name: str
    dataset: str
    verdict: str
    run_a: str = ""
    run_b: str = ""
    n: int = 0
    f1_a: float | None = None
    f1_b: float | None = None
    f1_diff: float | None = None
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    mcnemar_p: float | None = None
    #: Why a claim was not tested, or what else a reader needs (frontier members, trivial baselines).
    note: str = ""
    details: dict = field(default_factory=dict)


def verdict(diff: float, low: float, high: float) -> str:
    """The verdict for a paired difference (paper's winner minus the other) and its interval."""
    if diff <= 0:
        return NOT_REPRODUCED
    return REPRODUCED if low > 0 else NOT_SIGNIFICANT


# ---------------------------------------------------------------- choosing the runs


def _runs(records: pd.DataFrame) -> pd.DataFrame:
    """One row per run: id, folder, regime, condition, variant, parent and creation time."""
    first = records.drop_duplicates("run_id")
    return pd.DataFrame({
        "run_id": first["run_id"],
        "run_dir": first["run_dir"],
        "regime": first["regime"],
        "condition": first["condition"],
        "variant": first["variant"].fillna("") if "variant" in first else "",
        "parent": first["config"].map(lambda c: (c or {}).get("parent_run") or ""),
        "created": first["config"].map(lambda c: (c or {}).get("created") or ""),
    }).sort_values("created")


def _latest(runs: pd.DataFrame, **match) -> pd.Series | None:
    chosen = runs
    for key, value in match.items():
        chosen = chosen[chosen[key] == value]
    return chosen.iloc[-1] if len(chosen) else None


Pair = tuple["pd.Series | None", "pd.Series | None", str]


def _sft_pair(runs: pd.DataFrame) -> Pair:
    return _latest(runs, regime="sft", condition="intent_label"), _latest(runs, regime="sft", condition="label_only"), "02_sft"


def _dpo_pair(runs: pd.DataFrame) -> Pair:
    dpo = _latest(runs, regime="dpo", variant="hard")
    dpo = dpo if dpo is not None else _latest(runs, regime="dpo")
    parent = None if dpo is None else _latest(runs, run_id=dpo["parent"])
    return dpo, parent, "03_dpo (its SFT parent must be in the same folder)"


def _distill_pair(runs: pd.DataFrame) -> Pair:
    return _latest(runs, regime="distill", variant="human_intent"), _latest(runs, regime="distill", variant="no_intent"), "04_distill"


def _grpo_pair(runs: pd.DataFrame) -> Pair:
    return _latest(runs, regime="grpo", variant="label_intent"), _latest(runs, regime="grpo", variant="label_only"), "05_grpo"


PAIRS: dict[int, Callable[[pd.DataFrame], Pair]] = {1: _sft_pair, 2: _dpo_pair, 3: _distill_pair, 4: _grpo_pair}


# ---------------------------------------------------------------- comparing them


def real_benchmarks(records: pd.DataFrame) -> list[str]:
    """The real external benchmark datasets among the records (never fixtures)."""
    return sorted(d for d in records["dataset"].unique() if str(d).startswith("bench:"))


def _datasets_of(records: pd.DataFrame, run_id: str) -> set[str]:
    return set(records.loc[records["run_id"] == run_id, "dataset"])


def _paired(a: pd.Series, b: pd.Series, datasets: list[str], *, n_boot: int, seed: int) -> dict:
    sets, same = [], []
    for dataset in datasets:
        merged = stats.aligned_predictions(Path(a["run_dir"]), Path(b["run_dir"]), dataset)
        sets.append((merged["gold_a"].tolist(), merged["pred_a"].tolist(), merged["pred_b"].tolist()))
        if "output_a" in merged and "output_b" in merged:
            same.extend((merged["output_a"] == merged["output_b"]).tolist())
    result = stats.paired_mean_comparison(sets, n_boot=n_boot, seed=seed)
    result["same_output_share"] = sum(same) / len(same) if same else None
    return result


def _entry(claim: Claim, dataset: str, a, b, datasets: list[str], *, n_boot: int, seed: int, note: str = "", details=None) -> Entry:
    try:
        result = _paired(a, b, datasets, n_boot=n_boot, seed=seed)
    except ValueError as err:  # evaluated on different prompts (another eval_limit): no paired test
        return _not_tested(claim, dataset, f"{a['run_id']} vs {b['run_id']}: {err}")
    share = result["same_output_share"]
    if share is not None and share >= SAME_OUTPUT_SHARE:
        note = (f"not tested at this budget: the two runs wrote the same answer for {share:.0%} of {result['n']} prompts "
                f"(they did not train apart; more steps or a larger model may); " + note)
    return Entry(
        claim=claim.number, name=claim.name, dataset=dataset,
        verdict=NOT_TESTED if share is not None and share >= SAME_OUTPUT_SHARE
        else verdict(result["f1_diff"], result["diff_ci_low"], result["diff_ci_high"]),
        run_a=a["run_id"], run_b=b["run_id"], n=result["n"],
        **{key: float(result[key]) for key in ("f1_a", "f1_b", "f1_diff", "diff_ci_low", "diff_ci_high", "mcnemar_p")},
        note=note, details=details or {},
    )


def _not_tested(claim: Claim, dataset: str, why: str) -> Entry:
    return Entry(claim=claim.number, name=claim.name, dataset=dataset, verdict=NOT_TESTED, note=why)


def still_rising(run_dir: str | Path, margin: float = 0.02) -> str:
    """A sentence when the run's validation F1 curve (``val_f1`` in ``train_log.json``) rose by more
    than ``margin`` over its last two points: the run stopped before it converged, so a longer
    budget may change the comparison. Empty otherwise, or without a curve."""
    log = Path(run_dir) / "train_log.json"
    curve = [(h["step"], h["val_f1"]) for h in (read_json(log) if log.exists() else []) if "val_f1" in h]
    if len(curve) < 2 or curve[-1][1] - curve[-2][1] <= margin:
        return ""
    (s1, f1), (s2, f2) = curve[-2:]
    return f"{Path(run_dir).name}: validation F1 still rising at its last step ({f1:.2f} at {s1} → {f2:.2f} at {s2}); a longer budget may change this"


def _pair_entries(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, external: list[str], *, n_boot: int, seed: int) -> list[Entry]:
    a, b, where = PAIRS[claim.number](runs)
    wanted = ["aims_test", *external, EXTERNAL_MEAN]
    if a is None or b is None:
        missing = "both runs" if a is None and b is None else ("the first run" if a is None else "the second run")
        return [_not_tested(claim, dataset, f"{missing} missing in this folder: run {where}") for dataset in wanted]
    shared = _datasets_of(records, a["run_id"]) & _datasets_of(records, b["run_id"])
    entries = []
    for dataset in ["aims_test", *external]:
        if dataset not in shared:
            entries.append(_not_tested(claim, dataset, f"not evaluated on {dataset} by both runs"))
        else:
            entries.append(_entry(claim, dataset, a, b, [dataset], n_boot=n_boot, seed=seed))
    both = [d for d in external if d in shared]
    if both:
        entries.append(_entry(claim, EXTERNAL_MEAN, a, b, both, n_boot=n_boot, seed=seed,
                              note=f"mean over {', '.join(d.removeprefix('bench:') for d in both)}"))
    else:
        entries.append(_not_tested(claim, EXTERNAL_MEAN, _no_external_reason(records)))
    rising = "; ".join(filter(None, (still_rising(a["run_dir"]), still_rising(b["run_dir"]))))
    for entry in entries:
        if rising and entry.verdict != NOT_TESTED:
            entry.note = "; ".join(filter(None, (entry.note, rising)))
    return entries


def _no_external_reason(records: pd.DataFrame) -> str:
    if any(str(d).startswith("fixture:") for d in records["dataset"].unique()):
        return "only fixture rows (the kit's own sentences, not benchmarks): no real external benchmark was evaluated"
    return "no real external benchmark was evaluated (06_benchmarks)"


def _frontier_entry(claim: Claim, records: pd.DataFrame, datasets: list[str], label: str, *, n_boot: int, seed: int) -> Entry:
    """Claim 5 on one dataset (or the external mean): is the top of the latency–F1 frontier intent-aware?

    Flagging every prompt costs nothing and scores ``f1_flag_all``: a run at or below it is
    dominated by that free classifier, so the frontier is read among the runs above it. The
    verdict compares the best intent-aware run with the best other run, paired.
    """
    subset = records[records["dataset"].isin(datasets)]
    per_run = subset.groupby("run_id").agg(
        run_dir=("run_dir", "first"), condition=("condition", "first"), n=("dataset", "nunique"),
        f1=("f1", "mean"), ms=("ms_per_prompt", "mean"), flag_all=("f1_flag_all", "mean"),
    )
    per_run = per_run[per_run["n"] == len(datasets)].reset_index()
    per_run["intent_aware"] = per_run["condition"].isin(INTENT_CONDITIONS)
    if not per_run["intent_aware"].any() or per_run["intent_aware"].all():
        return _not_tested(claim, label, "needs intent-aware runs and other runs evaluated on the same data")
    flag_all = float(per_run["flag_all"].iloc[0])
    above = per_run[per_run["f1"] > flag_all].reset_index(drop=True)
    frontier = above[pareto_mask(above["ms"].tolist(), above["f1"].tolist())] if len(above) else above
    details = {
        "flag_all_f1": flag_all,
        "frontier": [
            {"run": r.run_id, "condition": r.condition, "intent_aware": bool(r.intent_aware), "f1": float(r.f1), "ms_per_prompt": float(r.ms)}
            for r in frontier.sort_values("ms").itertuples()
        ],
        "runs_above_flag_all": int(len(above)),
        "runs": int(len(per_run)),
    }
    best_intent = per_run[per_run["intent_aware"]].sort_values("f1").iloc[-1]
    best_other = per_run[~per_run["intent_aware"]].sort_values("f1").iloc[-1]
    entry = _entry(claim, label, best_intent, best_other, datasets, n_boot=n_boot, seed=seed, details=details)
    if entry.verdict == NOT_TESTED:
        return entry
    members = ", ".join(f"{m['run']} ({'intent' if m['intent_aware'] else 'no intent'})" for m in details["frontier"]) or "none"
    entry.note = (f"best intent-aware run vs best other run; frontier above flag-everything (F1 {flag_all:.3f} at 0 ms): {members}")
    if entry.verdict != NOT_REPRODUCED and best_intent["f1"] <= flag_all:
        entry.verdict = NOT_REPRODUCED
        entry.note = f"no intent-aware run beats flagging everything (F1 {flag_all:.3f} at 0 ms), which dominates them; " + entry.note
    return entry


def _frontier_entries(claim: Claim, records: pd.DataFrame, external: list[str], *, n_boot: int, seed: int) -> list[Entry]:
    entries = [_frontier_entry(claim, records, [dataset], dataset, n_boot=n_boot, seed=seed) for dataset in ["aims_test", *external]]
    if external:
        entries.append(_frontier_entry(claim, records, external, EXTERNAL_MEAN, n_boot=n_boot, seed=seed))
        entries[-1].note = f"mean over {', '.join(d.removeprefix('bench:') for d in external)}; " + entries[-1].note
    else:
        entries.append(_not_tested(claim, EXTERNAL_MEAN, _no_external_reason(records)))
    return entries


def scoreboard(records: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> list[Entry]:
    """Every claim on the AIMS test split, each real external benchmark and their mean."""
    if records.empty:
        return [_not_tested(claim, "aims_test", "no results records in this folder") for claim in CLAIMS]
    runs = _runs(records)
    external = real_benchmarks(records)
    entries: list[Entry] = []
    for claim in CLAIMS:
        if claim.number in PAIRS:
            entries += _pair_entries(claim, records, runs, external, n_boot=n_boot, seed=seed)
        else:
            entries += _frontier_entries(claim, records, external, n_boot=n_boot, seed=seed)
    return entries


def headline(entries: list[Entry], claim: Claim) -> Entry:
    """The entry that decides a claim's verdict: its first headline dataset that was tested."""
    own = {e.dataset: e for e in entries if e.claim == claim.number}
    for dataset in claim.headline:
        if dataset in own and own[dataset].verdict != NOT_TESTED:
            return own[dataset]
    return own.get(claim.headline[0]) or next(iter(own.values()))


def _cell(entry: Entry) -> str:
    if entry.verdict == NOT_TESTED:
        return NOT_TESTED
    return f"{entry.verdict} (Δ {entry.f1_diff:+.3f} [{entry.diff_ci_low:+.3f}, {entry.diff_ci_high:+.3f}], p {entry.mcnemar_p:.2g})"


def scoreboard_frame(entries: list[Entry]) -> pd.DataFrame:
    """One row per claim, one column per dataset: verdict with ΔF1, its 95% interval and McNemar's p."""
    datasets = list(dict.fromkeys(e.dataset for e in entries))
    rows = []
    for claim in CLAIMS:
        own = {e.dataset: e for e in entries if e.claim == claim.number}
        rows.append({"claim": f"{claim.number}. {claim.statement}",
                     **{_short(d): _cell(own[d]) if d in own else "" for d in datasets}})
    return pd.DataFrame(rows)


def _short(dataset: str) -> str:
    return dataset.removeprefix("bench:")


def summary_text(entries: list[Entry]) -> str:
    """The scoreboard as the terminal prints it at the end of ``python -m aims_kit run``."""
    lines = ["Claims scoreboard (paired on the same prompts; Δ = F1 of the paper's winner minus the other, 95% CI, McNemar p)"]
    for claim in CLAIMS:
        lines.append(f"{claim.number}. {claim.statement}")
        for entry in (e for e in entries if e.claim == claim.number):
            text = _cell(entry)
            if entry.verdict == NOT_TESTED:
                text += f": {entry.note}"
            elif entry.run_a:
                text += f"  [{entry.run_a} vs {entry.run_b}, n={entry.n}]"
            lines.append(f"   {_short(entry.dataset):<14} {text}")
    return "\n".join(lines)


def claim_table(out_dir: str | Path, number: int, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One claim's entries for a notebook: per dataset the runs compared, F1 of each, Δ with its interval, p, verdict.

    Computed from the records under ``out_dir`` so far: a claim whose runs or datasets come in a
    later notebook says *not tested* and why.
    """
    entries = [e for e in scoreboard(load_records(out_dir), n_boot=n_boot, seed=seed) if e.claim == number]
    frame = pd.DataFrame([asdict(e) for e in entries]).drop(columns=["claim", "name", "details"])
    frame["dataset"] = frame["dataset"].map(_short)
    return frame.round(3)


def read_claims(path: str | Path) -> list[Entry]:
    """The entries of a ``claims.json`` written by :func:`write_claims`."""
    return [Entry(**entry) for entry in read_json(path)["entries"]]


def write_claims(out_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> tuple[Path, list[Entry]]:
    """Compute the scoreboard from ``out_dir``'s records and write ``claims.json`` there (atomically)."""
    out_dir = Path(out_dir)
    entries = scoreboard(load_records(out_dir), n_boot=n_boot, seed=seed)
    payload = {
        "verdict_rule": {
            REPRODUCED: "Δ > 0 and the paired 95% interval above 0",
            NOT_SIGNIFICANT: "Δ > 0, the interval reaches 0",
            NOT_REPRODUCED: "Δ ≤ 0",
            NOT_TESTED: "a run or dataset is missing (see note)",
        },
        "n_boot": n_boot,
        "claims": [{"number": c.number, "name": c.name, "statement": c.statement, "paper": c.paper,
                    "headline": asdict(headline(entries, c))} for c in CLAIMS],
        "entries": [asdict(e) for e in entries],
    }
    path = out_dir / "claims.json"
    atomic_write_json(path, payload)
    return path, entries
