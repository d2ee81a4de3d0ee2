"""The claims scoreboard: does this run folder reproduce the paper's five claims, dataset by dataset?

Everything here is computed from the results records and prediction files a run folder holds
(:func:`aims_kit.core.results.load_records`), never written by hand, and from that folder's runs
only. Each claim names in advance the two runs it compares; they are compared **paired, on the
same prompts** (:func:`aims_kit.scoring.stats.paired_draws`, one random seed and :data:`N_BOOT`
resamples everywhere): ΔF1 = F1(paper's winner) − F1(the other) with its interval and p,
ΔAUPRC where both runs carry P(harmful), precision, recall and flag rate of both runs, and
F1(winner) − F1(flag everything) on the same resamples. Runs that differ only in seed form one
arm, compared by a two-level bootstrap (seeds, then prompts); with one seed an interval covers
prompts only, and the entry says which.

**Multiplicity.** Five headline tests are named before any number is seen, one per claim (its
runs and one dataset, :attr:`Claim.headline`, no fallback to another dataset). Their p comes from
a paired permutation test (:data:`N_PERM` draws; :func:`aims_kit.scoring.stats.permutation_p`),
or the two-level bootstrap when an arm has several seeds, and the five are Holm-adjusted
together. A headline's verdict follows its Holm p, and its interval is shown at the matching
level (:func:`holm_level`). Every other cell is exploratory: the plain 95% interval decides it,
and its p is the bootstrap p of the same resamples. The verdicts (:func:`verdict`):

- *reproduced*: significant with ΔF1 > 0 **and** the winner beats flagging everything;
- *reproduced, below the trivial baseline*: significant with ΔF1 > 0, but the winner does not
  beat flag-all (F1 ignores true negatives: flagging more can buy F1);
- *reversed*: significant with ΔF1 < 0;
- *not trained apart*: not significant, and the two runs' labels differ on fewer than 5% of
  prompts: the comparison says nothing about the method at this budget;
- *smaller than the paper's gap*: not significant, and the interval lies below the claim's gap
  (:attr:`Claim.gap`): a difference the size the paper reports is ruled out;
- *uninformative*: not significant, and the interval reaches the gap (it spans 0 and the gap):
  this many prompts cannot tell;
- *not tested*: a run or a dataset is missing (the reason is given).

"Significant" is Holm p < :data:`ALPHA` for a headline (direction: the sign of ΔF1), and the
95% interval excluding 0 for an exploratory cell. Claim 5 is a frontier test (:func:`_frontier_cell`).

**Which runs.** Runs trained here, found by regime, condition and variant. A folder of the
paper's released checkpoints evaluated zero-shot (``09_released_checkpoints``; each run declares
its ``role``) is scored the same way, its runs paired by role (:func:`scored_records`): DPO
against SFT for claim 2, GRPO against SFT for claim 4 (no label-only-reward GRPO was released; the
entry says so), all of them on claim 5's frontier; claims 1 and 3 have no released pair.

Datasets are the AIMS test split, every **real** external benchmark both runs were scored on
(exploratory), and ``external mean``: the paper's headline, the unweighted mean F1 over its five
benchmarks (:data:`aims_kit.datasets.registry.PAPER_FIVE`), over whichever of the five are
present, named in the entry's note. SimpleSafetyTests, HarmBench, JailbreakBench and any other
benchmark get their own cells but never enter the mean. Fixture rows (``fixture:<name>``, a dozen
of the kit's own sentences in a benchmark's file format) are never a benchmark.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Callable

import pandas as pd

from aims_kit.core.results import atomic_write_json, load_records, read_json
from aims_kit.datasets.registry import PAPER_FIVE
from aims_kit.evaluation import latency
from aims_kit.scoring import stats
from aims_kit.scoring.metrics import POSITIVE

REPRODUCED = "reproduced"
BELOW_BASELINE = "reproduced, below the trivial baseline"
REVERSED = "reversed"
NOT_TRAINED_APART = "not trained apart"
SMALLER = "smaller than the paper's gap"
UNINFORMATIVE = "uninformative"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, BELOW_BASELINE, REVERSED, NOT_TRAINED_APART, SMALLER, UNINFORMATIVE, NOT_TESTED)

#: Family-wise error rate of the five headline tests (Holm), and the level of an exploratory cell.
ALPHA = 0.05
#: Bootstrap resamples and seed of every scoreboard: the notebooks, the report and the terminal
#: print the same intervals.
N_BOOT = 2000
SEED = 0
#: Permutation draws behind a headline p (at least; drawn in mirrored pairs).
N_PERM = 10_000
#: The dataset name of the mean over the paper's five benchmarks.
EXTERNAL_MEAN = "external mean"
#: Two runs whose labels agree on at least this share of prompts did not train apart: a
#: comparison between them that finds nothing is *not trained apart*, whatever its interval.
SAME_LABEL_SHARE = 0.95
#: Output conditions whose answer states the user's intent.
INTENT_CONDITIONS = ("intent_label", "reasoning_intent_label")
#: The trivial rival of the frontier: every prompt flagged harmful, at 0 ms.
FLAG_ALL = "flag everything"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: what it says, which two runs test it, its headline test and gap."""

    number: int
    name: str
    #: The paper's direction, in words: "A beats B".
    statement: str
    #: What the paper measured (8B models, the real AIMS data, GPU hours).
    paper: str
    #: The one dataset of the claim's headline test, named in advance (Holm-adjusted with the others).
    headline: str
    #: The F1 difference the paper reports for this claim: a comparison whose interval lies below
    #: it rules out the paper's effect size; ``None`` where the claim states no difference (claim 5).
    gap: float | None


CLAIMS: tuple[Claim, ...] = (
    # The paper reports SFT intent-vs-label differences without one figure on the five-benchmark
    # mean (docs/design.md gives SFT .792 only): a few F1 points, taken as 0.02.
    Claim(1, "intent SFT", "intent → label SFT beats label-only SFT",
          "SFT with the intent-then-label target is the base every other regime builds on", "aims_test", gap=0.02),
    # DPO .812 vs SFT .792 on the five-benchmark mean.
    Claim(2, "DPO on intent errors", "DPO on the SFT model's own intent errors beats its SFT start",
          "DPO mean F1 .812 vs SFT .792 (Llama-8B, five benchmarks)", "aims_test", gap=0.02),
    # Distillation .817 is given; the reasoning-only student's mean is not (docs/): taken as 0.02.
    Claim(3, "intent-conditioned distillation", "a student of intent-conditioned traces beats one of reasoning-only traces",
          "human-intent traces beat reasoning-only traces for most teacher/student pairs (distillation .817)", "aims_test", gap=0.02),
    # GRPO label + intent .826 is given, but no figure for the label-only reward exists in the
    # kit's record of the paper (docs/design.md, PAPER_MEAN_F1): 0.01 is an assumed gap.
    Claim(4, "GRPO intent reward", "GRPO rewarding intent faithfulness beats GRPO rewarding the label only, on mean F1 over external benchmarks",
          "label + intent reward: best mean F1 on five benchmarks (.826)", EXTERNAL_MEAN, gap=0.01),
    Claim(5, "Pareto frontier", "intent-aware models form the latency–F1 Pareto frontier",
          "the intent-aware models form the latency–F1 frontier (SFT 4.66 ms/prompt … GRPO 25.3, one GPU)", EXTERNAL_MEAN, gap=None),
)

#: How many more prompts a headline test needs under Holm than alone: at its strictest step Holm
#: tests at α/5, and z(1 − α/10) + z(0.8) against :data:`aims_kit.scoring.stats.DETECTABLE_SE`, squared (≈ 1.49).
HOLM_SAMPLE_FACTOR = ((NormalDist().inv_cdf(1 - ALPHA / (2 * len(CLAIMS))) + NormalDist().inv_cdf(0.8)) / stats.DETECTABLE_SE) ** 2


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
    #: Holm-adjusted p across the five headline tests (headline entries only): it decides the verdict.
    holm_p: float | None = None
    #: The claim's gap (:attr:`Claim.gap`) the interval and the power check are read against.
    paper_gap: float | None = None
    #: :meth:`aims_kit.scoring.stats.Paired.evidence`: ΔF1 and ΔAUPRC with intervals at ``ci_level``,
    #: the p of ΔF1 (``p_method``), precision, recall and flag rate of both runs, flag-all's F1, labels that differ.
    evidence: dict = field(default_factory=dict)
    #: Why a claim was not tested, or what else a reader needs (seeds, frontier members, still-rising curves).
    note: str = ""
    details: dict = field(default_factory=dict)

    def get(self, key: str):
        return self.evidence.get(key)


def _undecided(evidence: dict, gap: float | None) -> str:
    """The verdict of a comparison that found no significant difference: why not, in one phrase."""
    if 1 - evidence["labels_differ"] / evidence["n"] >= SAME_LABEL_SHARE:
        return NOT_TRAINED_APART
    return SMALLER if gap is not None and evidence["diff_ci_high"] < gap else UNINFORMATIVE


def verdict(evidence: dict, gap: float | None, holm_p: float | None = None) -> str:
    """The verdict for one paired comparison (paper's winner = A), from its evidence alone.

    A headline test (``holm_p`` given) is significant when its Holm p is below :data:`ALPHA`,
    in the direction of ΔF1's sign; an exploratory one when its interval excludes 0. The flag-all
    check and the gap are read off the intervals in ``evidence``, at the level they were drawn at.
    """
    if holm_p is None:
        up, down = evidence["diff_ci_low"] > 0, evidence["diff_ci_high"] < 0
    else:
        up, down = holm_p < ALPHA and evidence["f1_diff"] > 0, holm_p < ALPHA and evidence["f1_diff"] < 0
    if up:
        return REPRODUCED if evidence["a_vs_flag_all_ci_low"] > 0 else BELOW_BASELINE
    return REVERSED if down else _undecided(evidence, gap)


def holm_level(p: float, holm_p: float) -> float:
    """The level of a headline test's interval: 1 − α · p / Holm p.

    Holm multiplied this test's p by ``holm_p / p`` (its step's factor, raised where an earlier
    step's adjusted p was larger). An interval at 1 − α divided by that same factor excludes 0
    exactly when p < α · p / Holm p, i.e. when Holm p < α: the interval beside a headline verdict
    agrees with its Holm p (up to the difference between the permutation and the bootstrap).
    With Holm p = 5p (the strictest step) that is the Bonferroni interval at 1 − α/5.
    """
    return 1 - ALPHA * p / holm_p


# ---------------------------------------------------------------- choosing the runs


#: Regimes a run trains here; a folder holding any of them is scored on them (:func:`scored_records`).
TRAINED_REGIMES = ("sft", "dpo", "distill", "grpo", "encoder")


def _role(config) -> str:
    """The role a run declares (``""``: none; a record without a config declares none)."""
    return (config.get("role") or "") if isinstance(config, dict) else ""


def scored_records(records: pd.DataFrame) -> pd.DataFrame:
    """The records a scoreboard compares: a folder's trained runs, or a folder of released checkpoints.

    A run that declares a ``role`` is one of the paper's released checkpoints evaluated zero-shot
    (``eval --model ID --as ROLE``; :mod:`aims_kit.evaluation.released`). Where the folder also
    holds runs trained here, those are what its claims are about and the released ones are left
    out (``09_released_checkpoints`` keeps them in their own folder, scored there); a folder with
    no trained run is scored on everything it holds, the released checkpoints paired by role.
    """
    if records.empty or "config" not in records:
        return records
    declared = records["config"].map(_role) != ""
    if not declared.any() or not records["regime"].isin(TRAINED_REGIMES).any():
        return records
    return records[~declared]


def _runs(records: pd.DataFrame) -> pd.DataFrame:
    """One row per run: id, folder, regime, condition, variant, role, seed, experiment, parent and creation time."""
    first = records.drop_duplicates("run_id")
    return pd.DataFrame({
        "run_id": first["run_id"],
        "run_dir": first["run_dir"],
        "regime": first["regime"],
        "condition": first["condition"],
        "variant": first["variant"].fillna("") if "variant" in first else "",
        "role": first["config"].map(_role),
        "model": first["config"].map(lambda c: (c.get("model") or "") if isinstance(c, dict) else ""),
        "seed": first["seed"] if "seed" in first else None,
        "key": first["config"].map(lambda c: stats.experiment_key(c or {})),
        "parent": first["config"].map(lambda c: (c or {}).get("parent_run") or ""),
        "created": first["config"].map(lambda c: (c or {}).get("created") or ""),
    }).sort_values("created")


def _latest(runs: pd.DataFrame, **match) -> pd.Series | None:
    chosen = runs
    for key, value in match.items():
        chosen = chosen[chosen[key] == value]
    return chosen.iloc[-1] if len(chosen) else None


def _arm(runs: pd.DataFrame, run: pd.Series) -> pd.DataFrame:
    """``run`` and its seed siblings: the newest run of each other seed of the same experiment.

    Why: runs that differ only in seed (:func:`aims_kit.scoring.stats.experiment_key`) are one
    arm of a comparison; as with the newest run of a kind, a rerun of one seed replaces the older.
    """
    siblings = runs[(runs["key"] == run["key"]) & runs["seed"].notna() & (runs["seed"] != run["seed"])]
    return pd.concat([run.to_frame().T, siblings.drop_duplicates("seed", keep="last")])


Pair = tuple["pd.Series | None", "pd.Series | None", str]


def _released(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` are released checkpoints paired by their declared role (:func:`scored_records`)."""
    return bool((runs["role"] != "").any())


#: Where a released-checkpoints folder's missing run comes from.
RELEASED_WHERE = "09_released_checkpoints, or eval --model ID --as ROLE into the same folder"
#: Why a claim's comparison among the paper's released checkpoints differs from, or lacks, its own.
RELEASED_NOTES: dict[int, str] = {
    1: "the paper released no label-only SFT model to compare its SFT checkpoint with",
    3: "the paper released only its synthetic-intent student, no reasoning-only one",
    4: "the paper released no GRPO model trained with the label-only reward: its GRPO checkpoint (label + intent "
       "reward) is compared with its SFT checkpoint instead, the comparison its table allows (mean F1 .826 vs .792); "
       "the claim's own comparison needs both reward sets (05_grpo)",
}


def _sft_pair(runs: pd.DataFrame) -> Pair:
    if _released(runs):
        return None, None, f"02_sft ({RELEASED_NOTES[1]})"
    return _latest(runs, regime="sft", condition="intent_label"), _latest(runs, regime="sft", condition="label_only"), "02_sft"


def _dpo_pair(runs: pd.DataFrame) -> Pair:
    if _released(runs):  # the released DPO model started from the released SFT one
        return _latest(runs, role="dpo"), _latest(runs, role="sft"), RELEASED_WHERE
    dpo = _latest(runs, regime="dpo")  # the newest, whichever variant the profile chose
    parent = None if dpo is None else _latest(runs, run_id=dpo["parent"])
    return dpo, parent, "03_dpo (its SFT parent must be in the same folder)"


def _distill_pair(runs: pd.DataFrame) -> Pair:
    if _released(runs):
        return None, None, f"04_distill ({RELEASED_NOTES[3]})"
    return _latest(runs, regime="distill", variant="human_intent"), _latest(runs, regime="distill", variant="no_intent"), "04_distill"


def _grpo_pair(runs: pd.DataFrame) -> Pair:
    if _released(runs):
        return _latest(runs, role="grpo"), _latest(runs, role="sft"), RELEASED_WHERE
    return _latest(runs, regime="grpo", variant="label_intent"), _latest(runs, regime="grpo", variant="label_only"), "05_grpo"


def _released_note(claim: Claim, a: pd.Series, b: pd.Series) -> str:
    """What a comparison of released checkpoints compares, and where it departs from the claim's own."""
    if not a["role"]:
        return ""
    text = f"released checkpoints evaluated zero-shot: {a['model']} (as {a['role']}) vs {b['model']} (as {b['role']})"
    return f"{text}; {RELEASED_NOTES[claim.number]}" if claim.number in RELEASED_NOTES else text


PAIRS: dict[int, Callable[[pd.DataFrame], Pair]] = {1: _sft_pair, 2: _dpo_pair, 3: _distill_pair, 4: _grpo_pair}


# ---------------------------------------------------------------- comparing them

#: One scoreboard cell as a function of its interval level and Holm p (``None``: exploratory).
#: Why: a headline's level is known only once all five p values are; the cell's resamples are
#: drawn once and read again at that level.
Grade = Callable[[float, "float | None"], "Entry"]


def real_benchmarks(records: pd.DataFrame) -> list[str]:
    """The real external benchmark datasets among the records (never fixtures)."""
    return sorted(d for d in records["dataset"].unique() if str(d).startswith("bench:"))


def paper_five(datasets: list[str]) -> list[str]:
    """The paper's five benchmarks among ``datasets``: the only ones the external mean averages."""
    return [d for d in datasets if _short(d) in PAPER_FIVE]


def _datasets_of(records: pd.DataFrame, run_id: str) -> set[str]:
    return set(records.loc[records["run_id"] == run_id, "dataset"])


def _scores(merged: pd.DataFrame) -> list[float] | None:
    """P(harmful) per row (``NaN`` where the run wrote no readable label), or ``None`` where the run has none."""
    column = merged.get("p_harmful_b")
    return [float("nan") if p is None else float(p) for p in column] if column is not None and column.notna().any() else None


def _every_or_none(values: list) -> list | None:
    return values if values and all(v is not None for v in values) else None


def _sets(arm_a: pd.DataFrame, arm_b: pd.DataFrame | None, datasets: list[str], scores: bool) -> list[tuple]:
    """Per dataset: gold and both arms' saved predictions (one row per seed), aligned on prompt ids.

    ``arm_b`` ``None`` is flagging everything; ``scores`` False leaves P(harmful) out (no ΔAUPRC).
    """
    dirs = [Path(d) for d in (*arm_a["run_dir"], *([] if arm_b is None else arm_b["run_dir"]))]
    sets = []
    for dataset in datasets:
        merged = [stats.aligned_predictions(dirs[0], run_dir, dataset) for run_dir in dirs]
        gold = merged[0]["gold_a"].tolist()
        preds = [m["pred_b"].tolist() for m in merged] + ([[POSITIVE] * len(gold)] if arm_b is None else [])
        probs = [_scores(m) if scores else None for m in merged]
        split = len(arm_a)
        sets.append((gold, preds[:split], preds[split:], _every_or_none(probs[:split]), _every_or_none(probs[split:])))
    return sets


def _paired(arm_a: pd.DataFrame, arm_b: pd.DataFrame | None, datasets: list[str], *, headline: bool,
            scores: bool = True) -> stats.Paired:
    """:func:`aims_kit.scoring.stats.paired_draws` of two arms' saved predictions; a headline test's p by permutation."""
    return stats.paired_draws(_sets(arm_a, arm_b, datasets, scores), n_boot=N_BOOT, seed=SEED,
                              n_perm=N_PERM if headline else 0)


def _seed_note(*arms: pd.DataFrame) -> str:
    """What an interval covers: seeds and prompts (two-level bootstrap) when an arm has several seeds, else prompts."""
    several = [f"{arm.iloc[0]['run_id']} with {len(arm)} seeds ({', '.join(str(s) for s in arm['seed'])})"
               for arm in arms if len(arm) > 1]
    if not several:
        return "one seed per run: the interval covers prompts only, not seed-to-seed spread"
    return f"two-level bootstrap (seeds resampled, then prompts; p from the same resamples): {'; '.join(several)}"


def _pair_cell(claim: Claim, dataset: str, arm_a: pd.DataFrame, arm_b: pd.DataFrame, datasets: list[str], note: str) -> Grade:
    run_a, run_b = arm_a.iloc[0]["run_id"], arm_b.iloc[0]["run_id"]
    try:
        paired = _paired(arm_a, arm_b, datasets, headline=dataset == claim.headline)
    except ValueError as err:  # evaluated on different prompts (another eval_limit): no paired test
        return _fixed(_not_tested(claim, dataset, f"{run_a} vs {run_b}: {err}"))

    def grade(level: float, holm_p: float | None) -> Entry:
        evidence = paired.evidence(level)
        return Entry(claim=claim.number, name=claim.name, dataset=dataset, verdict=verdict(evidence, claim.gap, holm_p),
                     run_a=run_a, run_b=run_b, n=evidence["n"], headline=dataset == claim.headline, holm_p=holm_p,
                     paper_gap=claim.gap, evidence=evidence, note=note)
    return grade


def _not_tested(claim: Claim, dataset: str, why: str) -> Entry:
    return Entry(claim=claim.number, name=claim.name, dataset=dataset, verdict=NOT_TESTED, headline=dataset == claim.headline,
                 paper_gap=claim.gap, note=why)


def _fixed(entry: Entry) -> Grade:
    """A cell that no level changes (one not tested)."""
    return lambda level, holm_p: entry


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
    """Which of the paper's five benchmarks a mean covers, and which it lacks."""
    names = [_short(d) for d in datasets]
    missing = [name for name in PAPER_FIVE if name not in names]
    return (f"mean over {len(names)} of the paper's five benchmarks: {', '.join(names)}"
            + (f" (missing: {', '.join(missing)})" if missing else ""))


def _no_mean_reason(records: pd.DataFrame, external: list[str]) -> str:
    if paper_five(external):
        return "no benchmark of the paper's five was evaluated by every run compared"
    if external:
        return (f"none of the paper's five benchmarks ({', '.join(PAPER_FIVE)}) was evaluated; "
                f"{', '.join(_short(d) for d in external)} never enter the mean")
    if any(str(d).startswith("fixture:") for d in records["dataset"].unique()):
        return "only fixture rows (the kit's own sentences, not benchmarks): no real external benchmark was evaluated"
    return "no real external benchmark was evaluated (06_benchmarks)"


def _pair_cells(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, external: list[str]) -> list[Grade]:
    a, b, where = PAIRS[claim.number](runs)
    if a is None or b is None:
        missing = "both runs" if a is None and b is None else ("the first run" if a is None else "the second run")
        return [_fixed(_not_tested(claim, dataset, f"{missing} missing in this folder: run {where}"))
                for dataset in ["aims_test", *external, EXTERNAL_MEAN]]
    arm_a, arm_b = _arm(runs, a), _arm(runs, b)
    shared = set.intersection(*(_datasets_of(records, run_id) for run_id in (*arm_a["run_id"], *arm_b["run_id"])))
    extra = "; ".join(filter(None, (_released_note(claim, a, b), _seed_note(arm_a, arm_b), still_rising(a["run_dir"]),
                                    still_rising(b["run_dir"]), _older_runs(runs, arm_a, arm_b))))
    cells = [_pair_cell(claim, dataset, arm_a, arm_b, [dataset], extra) if dataset in shared
             else _fixed(_not_tested(claim, dataset, f"not evaluated on {dataset} by both runs"))
             for dataset in ["aims_test", *external]]
    five = [d for d in paper_five(external) if d in shared]
    cells.append(_pair_cell(claim, EXTERNAL_MEAN, arm_a, arm_b, five, f"{_mean_note(five)}; {extra}") if five
                 else _fixed(_not_tested(claim, EXTERNAL_MEAN, _no_mean_reason(records, external))))
    return cells


def _older_runs(runs: pd.DataFrame, *arms: pd.DataFrame) -> str:
    """A sentence naming the runs of the same kind that a comparison passed over for newer ones.

    Why: a rerun into the same folder (a student's change, another setting) silently replacing
    the run a scoreboard compared would change a shared result without a word. Seed siblings are
    compared, not passed over.
    """
    compared = {run_id for arm in arms for run_id in arm["run_id"]}
    passed = []
    for arm in arms:
        run = arm.iloc[0]
        same = runs[(runs["regime"] == run["regime"]) & (runs["condition"] == run["condition"])
                    & (runs["variant"] == run["variant"]) & ~runs["run_id"].isin(compared)]
        passed += [f"{other} (older than {run['run_id']})" for other in same["run_id"]]
    return f"the newest run of each kind is compared; passed over: {', '.join(passed)}" if passed else ""


def _frontier_cell(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, datasets: list[str], label: str,
                   note: str = "", timed: pd.DataFrame | None = None) -> Grade:
    """Claim 5 on one dataset (or the external mean): do intent-aware runs sit on the latency–F1 frontier?

    An intent-aware run (its answer states the intent, :data:`INTENT_CONDITIONS`) is on the
    frontier when nothing at least as fast beats its F1: no run without intent with lower or
    equal ms/prompt (a tie in latency counts as at least as fast), and not flagging everything
    (:data:`FLAG_ALL`, F1 computed from the gold labels, at 0 ms). Each is a paired comparison on
    the same prompts, and a run is on the frontier only when it wins every one of them: an
    intersection–union test, whose p is the largest of its one-sided p values, with no penalty
    for the number of rivals.

    - *reproduced*: some intent-aware run wins every comparison (every lower bound above 0). Its p
      is that run's largest one-sided p; taking the best of K intent-aware runs multiplies it by
      K (Bonferroni), since choosing a run by its result must cost what it gains.
    - *reversed*: one rival at least as fast as every intent-aware run beats each of them (each
      upper bound below 0); p likewise, times the number of such rivals.
    - The entry's p is twice the smaller of the two (either verdict could have been reached, as
      in a two-sided test); Holm adjusts that p, and a headline verdict follows the Holm p.

    A rival whose F1 is below flagging everything (its paired 95% interval against flag-all lies
    below 0, decided once, at 95%) is off the frontier: flag-all, faster and better, stands in for
    it, so it enters neither test; it is listed all the same. ``details`` holds every
    comparison with its Δ, interval and one-sided p. The entry shows the binding one: for the
    chosen run, the rival with the largest p (then the smallest Δ, then the name: a tie is never
    settled by position). Comparisons here are on F1 alone (no ΔAUPRC): there are K × rivals of them.
    """
    subset = records[records["dataset"].isin(datasets)]
    coverage = subset.groupby("run_id")["dataset"].nunique()
    complete = runs[runs["run_id"].isin(coverage.index[coverage == len(datasets)])]
    arms = {run["run_id"]: _arm(complete, run) for _, run in complete.drop_duplicates("key", keep="last").iterrows()}
    ms, timing = _speeds(subset, timed, datasets, [r for arm in arms.values() for r in arm["run_id"]])
    speed = {FLAG_ALL: 0.0, **{name: float(ms[arm["run_id"]].mean()) for name, arm in arms.items()}}
    intent = sorted(name for name, arm in arms.items() if arm.iloc[0]["condition"] in INTENT_CONDITIONS)
    if not intent:
        return _fixed(_not_tested(claim, label, f"no intent-aware run was evaluated on {label}"))
    others = sorted(name for name in arms if name not in intent)
    rivals = {k: [r for r in others if speed[r] <= speed[k]] + [FLAG_ALL] for k in intent}
    try:
        pairs = {(k, r): _paired(arms[k], arms.get(r), datasets, headline=label == claim.headline, scores=False)
                 for k in intent for r in rivals[k]}
        against_flag = {r: _paired(arms[r], None, datasets, headline=False, scores=False).evidence()
                        for r in sorted({r for rs in rivals.values() for r in rs} - {FLAG_ALL})}
    except ValueError as err:  # runs evaluated on other prompts: no paired test
        return _fixed(_not_tested(claim, label, f"the runs were not evaluated on the same prompts: {err}"))
    off = {r for r, e in against_flag.items() if e["diff_ci_high"] < 0}
    contest = {k: [r for r in rivals[k] if r not in off] for k in intent}

    def closeness(k: str, r: str, side: str) -> tuple:
        """Order of comparisons by how little they show: largest p, then the smallest margin, then the name."""
        margin = pairs[k, r].point["f1_diff"] * (1 if side == "p_a_better" else -1)
        return pairs[k, r].point[side], -margin, r if side == "p_a_better" else k

    binding = {k: max(contest[k], key=lambda r: closeness(k, r, "p_a_better")) for k in intent}
    p_run = {k: pairs[k, binding[k]].point["p_a_better"] for k in intent}
    shared = [r for r in contest[intent[0]] if all(r in contest[k] for k in intent)]  # as fast as every one, on the frontier
    strongest = {r: max(intent, key=lambda k: closeness(k, r, "p_b_better")) for r in shared}
    p_rival = {r: pairs[strongest[r], r].point["p_b_better"] for r in shared}
    p_for = min(1.0, len(intent) * min(p_run.values()))
    p_against = min(1.0, len(shared) * min(p_rival.values()))
    p = min(1.0, 2 * min(p_for, p_against))

    def grade(level: float, holm_p: float | None) -> Entry:
        evidence = {key: paired.evidence(level) for key, paired in pairs.items()}
        won = [k for k in intent if all(evidence[k, r]["diff_ci_low"] > 0 for r in contest[k])]
        lost = [r for r in shared if all(evidence[k, r]["diff_ci_high"] < 0 for k in intent)]
        if holm_p is None:
            direction = 1 if won else -1 if lost else 0
        else:
            direction = 0 if holm_p >= ALPHA else 1 if p_for <= p_against else -1
        best = min(won or intent, key=lambda run: (p_run[run], run))
        threat = min(lost or shared, key=lambda rival: (p_rival[rival], rival))
        against = not (direction > 0 or (direction == 0 and p_for <= p_against))
        shown = (strongest[threat], threat) if against else (best, binding[best])
        chosen = {**evidence[shown], "p_value": p, "p_reproduced": p_for, "p_reversed": p_against}
        named = REPRODUCED if direction > 0 else REVERSED if direction < 0 else _undecided(chosen, None)
        details = {
            "intent_runs": {k: {"ms_per_prompt": speed[k], "seeds": len(arms[k]), "p_on_frontier": p_run[k], "rivals": [
                {"run": r, "ms_per_prompt": speed[r], "f1": evidence[k, r]["f1_b"], "f1_diff": evidence[k, r]["f1_diff"],
                 "diff_ci_low": evidence[k, r]["diff_ci_low"], "diff_ci_high": evidence[k, r]["diff_ci_high"],
                 "p_a_better": evidence[k, r]["p_a_better"], "off_frontier": r in off} for r in rivals[k]]} for k in intent},
            "against_flag_all": {r: {"f1_diff": e["f1_diff"], "diff_ci_low": e["diff_ci_low"], "diff_ci_high": e["diff_ci_high"],
                                     "off_frontier": r in off} for r, e in against_flag.items()},
            "p_reproduced": p_for, "p_reversed": p_against, "latency_source": timing,
        }
        text = "; ".join(filter(None, (
            note,
            f"{', '.join(f'{k} ({speed[k]:.0f} ms/prompt)' for k in intent)} against every run without intent as fast "
            f"or faster and flagging everything (F1 {chosen['f1_flag_all']:.3f} at 0 ms)",
            _rivals_text(shown[0], rivals[shown[0]], evidence, speed, off),
            _binding_text(shown, reversed_=against),
            f"off the frontier (below flagging everything): {', '.join(sorted(off))}" if off else "",
            _seed_note(*(arms[name] for name in shown if name in arms)),
            f"latencies: {timing}",
        )))
        return Entry(claim=claim.number, name=claim.name, dataset=label, verdict=named, run_a=shown[0], run_b=shown[1],
                     n=chosen["n"], headline=label == claim.headline, holm_p=holm_p, paper_gap=claim.gap,
                     evidence=chosen, note=text, details=details)
    return grade


def controlled_cover(timed: pd.DataFrame | None, datasets: list[str], run_ids: list[str]) -> pd.DataFrame | None:
    """The controlled timing's rows for ``run_ids`` on ``datasets`` when it covers every pair, else ``None``
    (a mean over a partial measurement would compare runs timed on different prompts)."""
    if timed is None or timed.empty or not run_ids:
        return None
    cover = timed[timed["dataset"].isin(datasets) & timed["run_id"].isin(run_ids)]
    return cover if len(cover) == len(set(datasets)) * len(set(run_ids)) else None


def _speeds(subset: pd.DataFrame, timed: pd.DataFrame | None, datasets: list[str], run_ids: list[str]) -> tuple[pd.Series, str]:
    """ms/prompt per run on ``datasets``: the controlled measurement where it covers every run and
    dataset (:mod:`aims_kit.evaluation.latency`), else each run's own evaluation, said in words."""
    cover = controlled_cover(timed, datasets, run_ids)
    if cover is not None:
        spread = max(((r.ms_max - r.ms_min) / r.ms_median for r in cover.itertuples() if r.ms_median), default=0.0)
        return (cover.groupby("run_id")["ms_median"].mean(),
                f"one controlled measurement (every run timed in one process on the same prompts, median of "
                f"{int(cover['repeats'].min())} passes; widest spread {spread:.0%} of its median)")
    return (subset.groupby("run_id")["ms_per_prompt"].mean(),
            "each run's own evaluation, taken at different moments (no controlled measurement in this folder: "
            "07 takes one with latency_repeats > 0)")


def _rivals_text(run: str, rivals: list[str], evidence: dict, speed: dict, off: set[str]) -> str:
    """Every rival of one intent-aware run, named with its speed and the paired ΔF1 against it."""
    def one(rival: str) -> str:
        e = evidence[run, rival]
        where = " (off the frontier: below flagging everything)" if rival in off else ""
        return (f"{rival} ({speed[rival]:.0f} ms, F1 {e['f1_b']:.3f}, ΔF1 {e['f1_diff']:+.3f} "
                f"[{e['diff_ci_low']:+.3f}, {e['diff_ci_high']:+.3f}]){where}")
    return f"rivals of {run}: " + ", ".join(one(r) for r in rivals)


def _binding_text(shown: tuple[str, str], *, reversed_: bool) -> str:
    """Why the comparison shown is the one that decides: a chain is as strong as its weakest link.

    For a run to be on the frontier it must beat *every* rival, so the rival it beats least surely
    (the largest one-sided p; then the smallest ΔF1) bounds the verdict; that is not necessarily
    the rival with the closest F1 or the lowest interval bound. Against the claim, the rival that
    beats every intent-aware run is shown against the one it beats least surely.
    """
    run, rival = shown
    if reversed_:
        return (f"shown: {run} vs {rival}, because {rival} is as fast as every intent-aware run and {run} is the one it "
                "beats least surely (largest one-sided p): the comparison that decides a reversal")
    return (f"shown: {run} vs {rival}, because {rival} is the rival {run} beats least surely (largest one-sided p, then "
            f"the smallest ΔF1): {run} is on the frontier only if it beats every rival, so this comparison binds")


def _frontier_cells(claim: Claim, records: pd.DataFrame, runs: pd.DataFrame, external: list[str],
                    timed: pd.DataFrame | None = None) -> list[Grade]:
    cells = [_frontier_cell(claim, records, runs, [dataset], dataset, timed=timed) for dataset in ["aims_test", *external]]
    five = paper_five(external)
    cells.append(_frontier_cell(claim, records, runs, five, EXTERNAL_MEAN, _mean_note(five), timed) if five
                 else _fixed(_not_tested(claim, EXTERNAL_MEAN, _no_mean_reason(records, external))))
    return cells


def scoreboard(records: pd.DataFrame, only: int | None = None, timed: pd.DataFrame | None = None,
               headline_dataset: str = "") -> list[Entry]:
    """Every claim on the AIMS test split, each real external benchmark and the paper's mean; headlines by Holm.

    Each cell is drawn once at 95%; then the tested headline p values are Holm-adjusted and each
    headline is read again at its :func:`holm_level`, its verdict from its Holm p. ``only``
    computes one claim (a notebook's own table); Holm needs all five, so it is left out there.
    ``timed``: claim 5's controlled latencies (:func:`aims_kit.evaluation.latency.table`);
    ``headline_dataset``: :func:`with_headline`.
    """
    chosen = [claim for claim in with_headline(headline_dataset) if only in (None, claim.number)]
    records = scored_records(records)
    if records.empty:
        return [_not_tested(claim, claim.headline, "no results records in this folder") for claim in chosen]
    runs = _runs(records)
    external = real_benchmarks(records)
    cells: list[Grade] = []
    for claim in chosen:
        cells += (_pair_cells(claim, records, runs, external) if claim.number in PAIRS
                  else _frontier_cells(claim, records, runs, external, timed))
    entries = [grade(1 - ALPHA, None) for grade in cells]
    tested = [i for i, e in enumerate(entries) if e.headline and e.verdict != NOT_TESTED] if only is None else []
    for i, adjusted in zip(tested, stats.holm([entries[i].get("p_value") for i in tested])):
        entries[i] = cells[i](holm_level(entries[i].get("p_value"), adjusted), adjusted)
    return entries


def headline(entries: list[Entry], claim: Claim) -> Entry:
    """The claim's headline test: its entry marked headline, on the dataset named in advance (no fallback).

    The entries carry the choice (a folder scored with ``headline_dataset`` moves every claim's
    headline to the external mean), so it is read from them, not from :data:`CLAIMS`.
    """
    own = [e for e in entries if e.claim == claim.number and e.headline]
    return own[0] if own else _not_tested(claim, claim.headline, "not evaluated on the headline dataset")


#: What ``headline_dataset`` may name: "" (each claim's own), AIMS test, or the external mean.
HEADLINE_CHOICES = ("", "aims_test", EXTERNAL_MEAN)


def with_headline(dataset: str) -> tuple[Claim, ...]:
    """:data:`CLAIMS` with every headline test on ``dataset`` (empty: each claim's own).

    The paper's own headline for every regime is the mean F1 over its external benchmarks; the
    kit's default tests claims 1–3 on AIMS test, where a CPU run has most of its prompts. A
    ``study`` folder names :data:`EXTERNAL_MEAN` in advance, before any verdict is seen.
    """
    if dataset not in HEADLINE_CHOICES:
        raise ValueError(f"headline_dataset {dataset!r}: use '' (each claim's own), 'aims_test' or {EXTERNAL_MEAN!r}")
    return tuple(replace(c, headline=dataset) if dataset else c for c in CLAIMS)


def _cell(entry: Entry) -> str:
    if entry.verdict == NOT_TESTED:
        return NOT_TESTED
    e = entry.evidence
    level = e.get("ci_level", 1 - ALPHA)
    text = f"{entry.verdict}: ΔF1 {e['f1_diff']:+.3f} [{e['diff_ci_low']:+.3f}, {e['diff_ci_high']:+.3f}]"
    if level != 1 - ALPHA:
        text += f" ({100 * level:.4g}% Holm interval)"
    text += f", p {e['p_value']:.2g}" + (" (permutation)" if e.get("p_method") == "permutation" else "")
    if entry.holm_p is not None:
        text += f", Holm p {entry.holm_p:.2g}"
    if "auprc_diff" in e:
        text += f"; ΔAUPRC {e['auprc_diff']:+.3f} [{e['auprc_diff_ci_low']:+.3f}, {e['auprc_diff_ci_high']:+.3f}]"
        if e.get("auprc_rows", entry.n) < entry.n:
            text += f" on the {e['auprc_rows']} of {entry.n} prompts both answered"
    if entry.verdict in (NOT_TRAINED_APART, SMALLER, UNINFORMATIVE):
        gap = "no gap stated" if entry.paper_gap is None else f"paper's gap {entry.paper_gap:.2f}"
        text += f"; detectable Δ {e['detectable_diff']:.2f} vs {gap}"
    return text + ("" if entry.headline else " (exploratory)")


def scoreboard_frame(entries: list[Entry]) -> pd.DataFrame:
    """One row per claim, one column per dataset: verdict, ΔF1 with its interval and p, ΔAUPRC."""
    datasets = list(dict.fromkeys(e.dataset for e in entries))
    rows = []
    for claim in CLAIMS:
        own = {e.dataset: e for e in entries if e.claim == claim.number}
        rows.append({"claim": f"{claim.number}. {claim.statement} [headline: {_short(headline(entries, claim).dataset)}]",
                     **{_short(d): _cell(own[d]) if d in own else "" for d in datasets}})
    return pd.DataFrame(rows)


def power_table(entries: list[Entry]) -> pd.DataFrame:
    """Per claim's headline test: how far this folder is from being able to see the paper's gap.

    - ``discordance``: the share of prompts on which the two runs' correctness differs (for a
      binary label: where their labels differ). Only those prompts carry evidence either way.
    - ``detectable_diff``: the smallest difference detectable at this n, 5% two-sided with 80%
      power (:data:`aims_kit.scoring.stats.DETECTABLE_SE` × the bootstrap standard error of ΔF1).
    - ``prompts_needed``: the standard error shrinks as 1/√n, so detecting the claim's gap takes
      n × (detectable / gap)² prompts (the same mix of datasets); ``prompts_needed_holm``: × about
      1.5 (:data:`HOLM_SAMPLE_FACTOR`) for Holm's strictest step, α/5. With several seeds the seed
      part of the error does not shrink with prompts, so both are lower bounds.

    Empty cells: a claim not tested, or one without a gap (claim 5).
    """
    rows = []
    for claim in CLAIMS:
        entry = headline(entries, claim)
        row = {"claim": claim.number, "dataset": _short(entry.dataset), "verdict": entry.verdict, "n": entry.n or None,
               "discordance": None, "detectable_diff": None, "paper_gap": claim.gap, "prompts_needed": None,
               "prompts_needed_holm": None}
        if entry.verdict != NOT_TESTED:
            detectable = entry.get("detectable_diff")
            row.update(discordance=entry.get("labels_differ") / entry.n, detectable_diff=detectable)
            if claim.gap:
                needed = entry.n * (detectable / claim.gap) ** 2
                row.update(prompts_needed=math.ceil(needed), prompts_needed_holm=math.ceil(needed * HOLM_SAMPLE_FACTOR))
        rows.append(row)
    return pd.DataFrame(rows).astype({"n": "Int64", "prompts_needed": "Int64", "prompts_needed_holm": "Int64"})


def _short(dataset: str) -> str:
    return dataset.removeprefix("bench:")


RULE_TEXT = (f"paired on the same prompts, {N_BOOT} bootstrap resamples; ΔF1 = F1 of the paper's winner minus the other. "
             f"Headline tests (one per claim, named in advance): p from a paired permutation test ({N_PERM:,} draws), "
             f"Holm-adjusted across the five; the verdict follows Holm p < {ALPHA}, beside an interval at the matching "
             "Holm level. Other cells are exploratory: the 95% interval decides, with the bootstrap p of the same difference")


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
TABLE_EVIDENCE = ("f1_a", "f1_b", "f1_diff", "diff_ci_low", "diff_ci_high", "p_value", "p_method", "detectable_diff", "f1_flag_all",
                  "precision_a", "recall_a", "flag_rate_a", "precision_b", "recall_b", "flag_rate_b",
                  "auprc_a", "auprc_b", "auprc_diff", "auprc_diff_ci_low", "auprc_diff_ci_high", "labels_differ")


def claim_table(out_dir: str | Path, number: int) -> pd.DataFrame:
    """One claim's entries for a notebook: per dataset the runs compared, the paired evidence, the verdict.

    Computed from the records under ``out_dir`` so far: a claim whose runs or datasets come in a
    later notebook says *not tested* and why. Holm's adjustment across the five headline tests is
    in 07's scoreboard and the report; here every cell is read at 95%.
    """
    entries = scoreboard(load_records(out_dir), only=number)
    rows = [{"dataset": _short(e.dataset), "verdict": e.verdict, "headline": e.headline, "run_a": e.run_a, "run_b": e.run_b,
             "n": e.n, **{key: e.get(key) for key in TABLE_EVIDENCE}, "holm_p": e.holm_p, "note": e.note} for e in entries]
    return pd.DataFrame(rows).round(3)


def read_claims(path: str | Path) -> list[Entry]:
    """The entries of a ``claims.json`` written by :func:`write_claims`."""
    return [Entry(**entry) for entry in read_json(path)["entries"]]


def write_claims(out_dir: str | Path, headline_dataset: str | None = None) -> tuple[Path, list[Entry]]:
    """Compute the scoreboard from ``out_dir``'s records (and claim 5's controlled latencies, where
    taken) and write ``claims.json`` there (atomically). ``headline_dataset``: :func:`with_headline`;
    ``None`` keeps the choice an earlier ``claims.json`` of the folder recorded (a report rewritten
    later never moves a headline named in advance)."""
    out_dir = Path(out_dir)
    path = out_dir / "claims.json"
    if headline_dataset is None:
        earlier = read_json(path).get("headline_dataset", "") if path.exists() else ""
        headline_dataset = earlier if earlier in HEADLINE_CHOICES else ""
    entries = scoreboard(load_records(out_dir), timed=latency.table(latency.read(out_dir)), headline_dataset=headline_dataset)
    power = power_table(entries)
    payload = {
        "verdict_rule": {
            "significant": f"headline: Holm p < {ALPHA} (direction: the sign of ΔF1), interval at 1 − {ALPHA} × p / Holm p; "
                           "exploratory: the paired 95% interval of ΔF1 excludes 0",
            REPRODUCED: "significant with ΔF1 > 0, and the winner's F1 above flagging everything (paired, same interval level)",
            BELOW_BASELINE: "significant with ΔF1 > 0, but the winner does not beat flagging everything",
            REVERSED: "significant with ΔF1 < 0",
            NOT_TRAINED_APART: f"not significant, and the two runs' labels agree on ≥ {SAME_LABEL_SHARE:.0%} of prompts",
            SMALLER: "not significant, and the interval lies below the claim's gap (paper_gap)",
            UNINFORMATIVE: "not significant, and the interval reaches the claim's gap (or the claim states none)",
            NOT_TESTED: "a run or dataset is missing (see note)",
            "frontier": "claim 5: every intent-aware run against every run without intent at least as fast and flagging "
                        "everything; reproduced when one wins every comparison, reversed when one rival beats them all",
        },
        "alpha": ALPHA,
        "n_boot": N_BOOT,
        "n_perm": N_PERM,
        "seed": SEED,
        "multiplicity": "Holm across the five headline tests (claim, runs and dataset named in advance); every other cell is exploratory",
        "external_mean": f"unweighted mean F1 over the paper's five benchmarks present ({', '.join(PAPER_FIVE)})",
        "headline_dataset": headline_dataset or "each claim's own",
        "claims": [{"number": c.number, "name": c.name, "statement": c.statement, "paper": c.paper, "gap": c.gap,
                    "headline": asdict(headline(entries, c))} for c in CLAIMS],
        "power": power.astype(object).where(power.notna(), None).to_dict("records"),
        "entries": [asdict(e) for e in entries],
    }
    atomic_write_json(path, payload)
    return path, entries
