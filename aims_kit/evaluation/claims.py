"""The claims scoreboard: does this run folder reproduce the paper's five claims, dataset by dataset?

Everything here is computed from the results records and prediction files a run folder holds
(:func:`aims_kit.core.results.load_records`), never written by hand, and from that folder's runs
only. Each claim names in advance the two runs it compares; they are compared **paired, on the
same prompts** (:func:`aims_kit.scoring.stats.paired_evidence`, one seed and :data:`N_BOOT`
resamples everywhere): ΔF1 = F1(paper's winner) − F1(the other) with its 95% interval and the
bootstrap p of that same difference, ΔAUPRC where both runs carry P(harmful), precision, recall and
flag rate of both runs, and F1(winner) − F1(flag everything) on the same resamples. The verdict:

- *reproduced*: the ΔF1 interval lies above 0 **and** the winner beats flagging everything;
- *reproduced, below the trivial baseline*: above 0, but the winner does not beat flag-all
  (F1 ignores true negatives: flagging more can buy F1);
- *reversed*: the interval lies below 0;
- *underpowered*: the interval spans 0 and the smallest difference detectable at this n
  (2.8 × the bootstrap standard error) exceeds the paper's gap, or the two runs' labels differ on
  fewer than 5% of prompts (they did not train apart);
- *inconclusive*: the interval spans 0 with power to spare;
- *not tested*: a run or a dataset is missing (the reason is given).

**Multiplicity.** Five headline tests are named before any number is seen, one per claim (its
runs and one dataset, :attr:`Claim.headline`, no fallback to another dataset), and their p
values are Holm-adjusted together. Every other cell is exploratory and says so.

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
from aims_kit.scoring.metrics import scores_or_rule

REPRODUCED = "reproduced"
BELOW_BASELINE = "reproduced, below the trivial baseline"
INCONCLUSIVE = "inconclusive"
REVERSED = "reversed"
UNDERPOWERED = "underpowered"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, BELOW_BASELINE, INCONCLUSIVE, REVERSED, UNDERPOWERED, NOT_TESTED)

#: Bootstrap resamples and seed of every scoreboard: the notebooks, the report and the terminal
#: print the same intervals.
N_BOOT = 2000
SEED = 0
#: The paper's reported gaps are a few F1 points (DPO .812 vs SFT .792 on the five-benchmark mean:
#: 0.020); a comparison that cannot detect a difference this size cannot show the claim either way.
PAPER_GAP = 0.02
#: The dataset name of the mean over real external benchmarks.
EXTERNAL_MEAN = "external mean"
#: Two runs whose labels agree on at least this share of prompts did not train apart: a
#: comparison between them is *underpowered* at this budget, whatever its interval.
SAME_LABEL_SHARE = 0.95
#: Output conditions whose answer states the user's intent.
INTENT_CONDITIONS = ("intent_label", "reasoning_intent_label")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: what it says, which two runs test it, and its headline test."""

    number: int
    name: str
    #: The paper's direction, in words: "A beats B".
    statement: str
    #: What the paper measured (8B models, the real AIMS data, GPU hours).
    paper: str
    #: The one dataset of the claim's headline test, named in advance (Holm-adjusted with the others).
    headline: str


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "intent SFT", "intent → label SFT beats label-only SFT",
          "SFT with the intent-then-label target is the base every other regime builds on", "aims_test"),
    Claim(2, "DPO on intent errors", "DPO on the SFT model's own intent errors beats its SFT start",
          "DPO mean F1 .812 vs SFT .792 (Llama-8B, five benchmarks)", "aims_test"),
    Claim(3, "intent-conditioned distillation", "a student of intent-conditioned traces beats one of reasoning-only traces",
          "human-intent traces beat reasoning-only traces for most teacher/student pairs (distillation .817)", "aims_test"),
    Claim(4, "GRPO intent reward", "GRPO rewarding intent faithfulness beats GRPO rewarding the label only, on mean F1 over external benchmarks",
          "label + intent reward: best mean F1 on five benchmarks (.826)", EXTERNAL_MEAN),
    Claim(5, "Pareto frontier", "intent-aware models form the latency–F1 Pareto frontier",
          "the intent-aware models form the latency–F1 frontier (SFT 4.66 ms/prompt … GRPO 25.3, one GPU)", EXTERNAL_MEAN),
)


@dataclass
class Entry:
    """One claim on one dataset: the two runs compared, the paired evidence and the verdict."""

    claim: int
    name: str
    dataset: str
    verdict: str
    run_a: str = ""
    run_b: str = ""
    n: int = 0
    #: One of the five tests named in advance; every other entry is exploratory.
    headline: bool = False
    #: Holm-adjusted p across the five headline tests (headline entries only).
    holm_p: float | None = None
    #: The paper's gap the power check compares the detectable difference with.
    paper_gap: float = PAPER_GAP
    #: :func:`aims_kit.scoring.stats.paired_evidence`: ΔF1 and ΔAUPRC with intervals, the bootstrap
    #: p of ΔF1, precision, recall and flag rate of both runs, flag-all's F1, labels that differ.
    evidence: dict = field(default_factory=dict)
    #: Why a claim was not tested, or what else a reader needs (frontier members, still-rising curves).
    note: str = ""
    details: dict = field(default_factory=dict)

    def get(self, key: str):
        return self.evidence.get(key)


def verdict(evidence: dict, paper_gap: float = PAPER_GAP) -> str:
    """The verdict for one paired comparison (paper's winner = A), from its evidence alone."""
    if evidence["diff_ci_low"] > 0:
        return REPRODUCED if evidence["a_vs_flag_all_ci_low"] > 0 else BELOW_BASELINE
    if evidence["diff_ci_high"] < 0:
        return REVERSED
    same = 1 - evidence["labels_differ"] / evidence["n"] >= SAME_LABEL_SHARE
    return UNDERPOWERED if same or evidence["detectable_diff"] > paper_gap else INCONCLUSIVE


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
    dpo = _latest(runs, regime="dpo")  # the newest, whichever variant the profile chose
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


def _paired(a: pd.Series, b: pd.Series, datasets: list[str]) -> dict:
    """:func:`aims_kit.scoring.stats.paired_evidence` of two runs' saved predictions on ``datasets``."""
    sets = []
    for dataset in datasets:
        merged = stats.aligned_predictions(Path(a["run_dir"]), Path(b["run_dir"]), dataset)
        columns = [f"p_harmful_{side}" for side in "ab"]
        scores = [scores_or_rule(merged[c]) if c in merged and merged[c].notna().any() else None for c in columns]
        sets.append((merged["gold_a"].tolist(), merged["pred_a"].tolist(), merged["pred_b"].tolist(), *scores))
    return stats.paired_evidence(sets, n_boot=N_BOOT, seed=SEED)


def _entry(claim: Claim, dataset: str, a, b, datasets: list[str], *, note: str = "", details=None) -> Entry:
    try:
        evidence = _paired(a, b, datasets)
    except ValueError as err:  # evaluated on different prompts (another eval_limit): no paired test
        return _not_tested(claim, dataset, f"{a['run_id']} vs {b['run_id']}: {err}")
    return Entry(
        claim=claim.number, name=claim.name, dataset=dataset, verdict=verdict(evidence),
        run_a=a["run_id"], run_b=b["run_id"], n=evidence["n"], headline=dataset == claim.headline,
        evidence=evidence, note=note, details=details or {},
    )


def _not_tested(claim: Claim, dataset: str, why: str) -> Entry:
    return Entry(claim=claim.number, name=claim.name, dataset=dataset, verdict=NOT_TESTED, headline=dataset == claim.headline, note=why)


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


def _mean_note(datasets: list[str]) -> str:
    return f"mean over {', '.join(_short(d) for d in datasets)}"


def _pair_entries(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, external: list[str]) -> list[Entry]:
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
            entries.append(_entry(claim, dataset, a, b, [dataset]))
    both = [d for d in external if d in shared]
    if both:
        entries.append(_entry(claim, EXTERNAL_MEAN, a, b, both, note=_mean_note(both)))
    else:
        entries.append(_not_tested(claim, EXTERNAL_MEAN, _no_external_reason(records)))
    extra = "; ".join(filter(None, (still_rising(a["run_dir"]), still_rising(b["run_dir"]), _older_runs(runs, a, b))))
    for entry in entries:
        if extra and entry.verdict != NOT_TESTED:
            entry.note = "; ".join(filter(None, (entry.note, extra)))
    return entries


def _older_runs(runs: pd.DataFrame, *chosen: pd.Series) -> str:
    """A sentence naming the runs of the same kind that a comparison passed over for newer ones.

    Why: a rerun into the same folder (a second seed, a student's change) silently replacing the
    run a scoreboard compared would change a shared result without a word.
    """
    passed = []
    for run in chosen:
        same = runs[(runs["regime"] == run["regime"]) & (runs["condition"] == run["condition"])
                    & (runs["variant"] == run["variant"]) & (runs["run_id"] != run["run_id"])]
        passed += [f"{other} (older than {run['run_id']})" for other in same["run_id"]
                   if other not in {r["run_id"] for r in chosen}]
    return f"the newest run of each kind is compared; passed over: {', '.join(passed)}" if passed else ""


def _no_external_reason(records: pd.DataFrame) -> str:
    if any(str(d).startswith("fixture:") for d in records["dataset"].unique()):
        return "only fixture rows (the kit's own sentences, not benchmarks): no real external benchmark was evaluated"
    return "no real external benchmark was evaluated (06_benchmarks)"


def _frontier_entry(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, datasets: list[str], label: str) -> Entry:
    """Claim 5 on one dataset (or the external mean): is the SFT intent → label run on the latency–F1 frontier?

    The intent-aware run is named in advance (the latest SFT intent → label run), never picked by
    test F1. It is on the frontier when nothing at least as fast beats its F1: every run without
    intent that is as fast or faster, and flagging everything (F1 ``f1_flag_all`` at 0 ms). Each
    of those is a paired comparison; membership holds when every one of them is won (an
    intersection–union test, which needs no multiplicity penalty). The entry shows the closest of
    them, the one whose lower bound decides, with its own Δ, interval and p.
    """
    intent = _latest(runs, regime="sft", condition="intent_label")
    if intent is None:
        return _not_tested(claim, label, "no SFT intent → label run in this folder: run 02_sft")
    subset = records[records["dataset"].isin(datasets)]
    per_run = subset.groupby("run_id").agg(run_dir=("run_dir", "first"), condition=("condition", "first"),
                                           n=("dataset", "nunique"), f1=("f1", "mean"), ms=("ms_per_prompt", "mean"))
    per_run = per_run[per_run["n"] == len(datasets)]
    if intent["run_id"] not in per_run.index:
        return _not_tested(claim, label, f"{intent['run_id']} was not evaluated on {label}")
    ms = float(per_run.loc[intent["run_id"], "ms"])
    rivals = per_run[~per_run["condition"].isin(INTENT_CONDITIONS) & (per_run["ms"] <= ms)].reset_index()
    try:
        comparisons = [(r["run_id"], _paired(intent, r, datasets)) for _, r in rivals.iterrows()]
        own = None if comparisons else _paired(intent, intent, datasets)
    except ValueError as err:  # a rival evaluated on other prompts: no paired test
        return _not_tested(claim, label, f"{intent['run_id']} vs a faster run: {err}")
    if own is not None:  # flagging everything is the one rival: its column of the run's own pairing
        comparisons = [("flag everything", {**own, "f1_b": own["f1_flag_all"], "f1_diff": own["f1_a"] - own["f1_flag_all"],
                                            "diff_ci_low": own["a_vs_flag_all_ci_low"], "diff_ci_high": own["a_vs_flag_all_ci_high"],
                                            "p_value": own["a_vs_flag_all_p"], "labels_differ": own["n"]})]
    # the binding rival: the one the intent run beats by the least (its lower bound decides membership);
    # its Δ, interval and p are shown together, so the p always belongs to the Δ beside it
    name, evidence = min(comparisons, key=lambda item: min(item[1]["diff_ci_low"], item[1]["a_vs_flag_all_ci_low"]))
    details = {"intent_run": intent["run_id"], "ms_per_prompt": ms, "faster_rivals": [
        {"run": run, "f1": e["f1_b"], "f1_diff": e["f1_diff"], "diff_ci_low": e["diff_ci_low"], "diff_ci_high": e["diff_ci_high"]}
        for run, e in comparisons]}
    entry = Entry(claim=claim.number, name=claim.name, dataset=label, verdict=verdict(evidence), run_a=intent["run_id"],
                  run_b=name, n=evidence["n"], headline=label == claim.headline, evidence=evidence, details=details)
    entry.note = (f"{intent['run_id']} ({ms:.0f} ms/prompt) against every run without intent as fast or faster "
                  f"({', '.join(run for run, _ in comparisons)}) and flagging everything (F1 {evidence['f1_flag_all']:.3f} at 0 ms); "
                  f"shown: the closest, {name}")
    return entry


def _frontier_entries(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, external: list[str]) -> list[Entry]:
    entries = [_frontier_entry(claim, records, runs, [dataset], dataset) for dataset in ["aims_test", *external]]
    if external:
        entries.append(_frontier_entry(claim, records, runs, external, EXTERNAL_MEAN))
        entries[-1].note = f"{_mean_note(external)}; " + entries[-1].note
    else:
        entries.append(_not_tested(claim, EXTERNAL_MEAN, _no_external_reason(records)))
    return entries


def scoreboard(records: pd.DataFrame, only: int | None = None) -> list[Entry]:
    """Every claim on the AIMS test split, each real external benchmark and their mean; headline p Holm-adjusted.

    ``only`` computes one claim (a notebook's own table); Holm needs all five, so it is left out there.
    """
    chosen = [claim for claim in CLAIMS if only in (None, claim.number)]
    if records.empty:
        return [_not_tested(claim, claim.headline, "no results records in this folder") for claim in chosen]
    runs = _runs(records)
    external = real_benchmarks(records)
    entries: list[Entry] = []
    for claim in chosen:
        if claim.number in PAIRS:
            entries += _pair_entries(claim, records, runs, external)
        else:
            entries += _frontier_entries(claim, records, runs, external)
    tested = [e for e in entries if e.headline and e.verdict != NOT_TESTED] if only is None else []
    for entry, adjusted in zip(tested, stats.holm([e.get("p_value") for e in tested])):
        entry.holm_p = adjusted
    return entries


def headline(entries: list[Entry], claim: Claim) -> Entry:
    """The claim's headline test: its entry on the dataset named in advance (no fallback)."""
    own = {e.dataset: e for e in entries if e.claim == claim.number}
    return own.get(claim.headline) or _not_tested(claim, claim.headline, "not evaluated on the headline dataset")


def _cell(entry: Entry) -> str:
    if entry.verdict == NOT_TESTED:
        return NOT_TESTED
    e = entry.evidence
    text = f"{entry.verdict}: ΔF1 {e['f1_diff']:+.3f} [{e['diff_ci_low']:+.3f}, {e['diff_ci_high']:+.3f}], p {e['p_value']:.2g}"
    if entry.holm_p is not None:
        text += f", Holm p {entry.holm_p:.2g}"
    if "auprc_diff" in e:
        text += f"; ΔAUPRC {e['auprc_diff']:+.3f} [{e['auprc_diff_ci_low']:+.3f}, {e['auprc_diff_ci_high']:+.3f}]"
    if entry.verdict in (UNDERPOWERED, INCONCLUSIVE):
        text += f"; detectable Δ {e['detectable_diff']:.2f} vs paper's {entry.paper_gap:.2f}"
    return text + ("" if entry.headline else " (exploratory)")


def scoreboard_frame(entries: list[Entry]) -> pd.DataFrame:
    """One row per claim, one column per dataset: verdict, ΔF1 with its 95% interval and bootstrap p, ΔAUPRC."""
    datasets = list(dict.fromkeys(e.dataset for e in entries))
    rows = []
    for claim in CLAIMS:
        own = {e.dataset: e for e in entries if e.claim == claim.number}
        rows.append({"claim": f"{claim.number}. {claim.statement} [headline: {_short(claim.headline)}]",
                     **{_short(d): _cell(own[d]) if d in own else "" for d in datasets}})
    return pd.DataFrame(rows)


def _short(dataset: str) -> str:
    return dataset.removeprefix("bench:")


RULE_TEXT = (f"paired on the same prompts, {N_BOOT} bootstrap resamples; ΔF1 = F1 of the paper's winner minus the other, "
             "95% interval and the bootstrap p of that difference; Holm p across the five headline tests")


def summary_text(entries: list[Entry]) -> str:
    """The scoreboard as the terminal prints it at the end of ``python -m aims_kit run``."""
    lines = [f"Claims scoreboard ({RULE_TEXT})"]
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


#: The evidence a claim's notebook table shows, in order.
TABLE_EVIDENCE = ("f1_a", "f1_b", "f1_diff", "diff_ci_low", "diff_ci_high", "p_value", "detectable_diff", "f1_flag_all",
                  "precision_a", "recall_a", "flag_rate_a", "precision_b", "recall_b", "flag_rate_b",
                  "auprc_a", "auprc_b", "auprc_diff", "auprc_diff_ci_low", "auprc_diff_ci_high", "labels_differ")


def claim_table(out_dir: str | Path, number: int) -> pd.DataFrame:
    """One claim's entries for a notebook: per dataset the runs compared, the paired evidence, the verdict.

    Computed from the records under ``out_dir`` so far: a claim whose runs or datasets come in a
    later notebook says *not tested* and why. Holm's adjustment across the five headline tests is
    in 07's scoreboard and the report.
    """
    entries = scoreboard(load_records(out_dir), only=number)
    rows = [{"dataset": _short(e.dataset), "verdict": e.verdict, "headline": e.headline, "run_a": e.run_a, "run_b": e.run_b,
             "n": e.n, **{key: e.get(key) for key in TABLE_EVIDENCE}, "holm_p": e.holm_p, "note": e.note} for e in entries]
    return pd.DataFrame(rows).round(3)


def read_claims(path: str | Path) -> list[Entry]:
    """The entries of a ``claims.json`` written by :func:`write_claims`."""
    return [Entry(**entry) for entry in read_json(path)["entries"]]


def write_claims(out_dir: str | Path) -> tuple[Path, list[Entry]]:
    """Compute the scoreboard from ``out_dir``'s records and write ``claims.json`` there (atomically)."""
    out_dir = Path(out_dir)
    entries = scoreboard(load_records(out_dir))
    payload = {
        "verdict_rule": {
            REPRODUCED: "the paired 95% interval of ΔF1 above 0 and the winner's F1 above flagging everything (paired)",
            BELOW_BASELINE: "the interval above 0, but the winner does not beat flagging everything",
            REVERSED: "the interval below 0",
            UNDERPOWERED: f"the interval spans 0 and the detectable Δ (2.8 × SE) exceeds the paper's gap ({PAPER_GAP}), "
                          f"or the labels agree on ≥ {SAME_LABEL_SHARE:.0%} of prompts",
            INCONCLUSIVE: "the interval spans 0 with power to detect the paper's gap",
            NOT_TESTED: "a run or dataset is missing (see note)",
        },
        "n_boot": N_BOOT,
        "seed": SEED,
        "multiplicity": "Holm across the five headline tests (claim, runs and dataset named in advance); every other cell is exploratory",
        "claims": [{"number": c.number, "name": c.name, "statement": c.statement, "paper": c.paper,
                    "headline": asdict(headline(entries, c))} for c in CLAIMS],
        "entries": [asdict(e) for e in entries],
    }
    path = out_dir / "claims.json"
    atomic_write_json(path, payload)
    return path, entries
