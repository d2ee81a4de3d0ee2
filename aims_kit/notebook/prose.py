"""Sentences that state a figure, rendered from the run's own data.

Why: a count, time, F1 or verdict typed into a markdown cell drifts from what the cells beside it
compute the first time a profile or a seed changes (03 once said "32 harmful, 10 safe" above a
table of 32 and 9). The fixed markdown of a notebook keeps the *why*; every figure a reader is
told comes from here, next to the output it describes, so the two cannot disagree.
"""

from __future__ import annotations

import re
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


def trace_conditions(requested: list[str] | tuple[str, ...], skipped: dict[str, str]) -> Markdown:
    """Which distillation conditions train a student here, and why any requested one does not."""
    if not requested:
        return markdown("No distillation condition was requested (`distill_conditions` is empty, as the `study` profile "
                        "sets it to fit its time): no student trains here, and claim 3 is *not tested* in this folder.")
    if not skipped:
        return markdown(f"Every requested condition is available: {', '.join(f'`{c}`' for c in requested)}.")
    return markdown("\n".join(f"- skipped `{name}`: {reason}" for name, reason in skipped.items()))


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
                 if most > 1 else "Every kind of run has one seed here, so no seed table follows: its spread is 0 by construction, not a measurement.")
    return Markdown(f"Single-request p50/p95: {latency_sample} AIMS-test prompts per run (`latency_sample`), {benchmarks}. {seed_text}")


def mean_over(datasets: list[str]) -> Markdown:
    """Which benchmarks a mean F1 averages, named (06, 07)."""
    from aims_kit.notebook.plots import dataset_name

    if not datasets:
        return Markdown("No external benchmark was evaluated: there is no mean to plot.")
    names = ", ".join(dataset_name(d) for d in datasets)
    return Markdown(f"The mean below is over {len(datasets)} benchmark{'s' if len(datasets) > 1 else ''}: {names}.")


#: Characters of model or prompt text quoted in a reading: enough to recognise the prompt.
QUOTE_CHARS = 160


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """Untrusted text (a prompt, a model's intent) made safe to put in a Markdown output.

    Markdown passes raw HTML through, and adversarial prompts contain markup by design, so the
    text is HTML-escaped; Markdown's own markers are escaped so a prompt cannot restyle the
    sentence around it; long text is cut at ``limit`` characters.
    """
    import html

    flat = " ".join(str(text).split())
    cut = flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", html.escape(cut, quote=False))


def missed_harmful(run_dir: Path, test: pd.DataFrame, dataset: str = "aims_test", *, judge=None, examples: int = 2) -> Markdown:
    """Harmful prompts the intent model labelled safe, and whether its own intent had softened first (02).

    Why: the intent → label format makes a miss readable. When the written intent restates a
    harmful request as a milder goal ("a pro-drinking argument" for a drink-driving prompt), the
    label that follows is right *for that intent*: the error is in the intent. When the intent
    matches the human one and the label is still safe, the label did not follow the intent.

    The rule: an intent "reads as another goal" when the offline intent judge (the one DPO's judge
    variant and GRPO's reward use; ``judge``, default ``make_judge("embedding")``) does not grade it
    a *good* match to the human intent of that prompt (``test``'s ``Intent``, joined on ``ID``).
    """
    from aims_kit.core.results import read_jsonl

    rows = pd.DataFrame(read_jsonl(Path(run_dir) / "predictions" / f"{dataset}.jsonl"))
    harmful = rows[rows["gold"] == "harmful"]
    missed = harmful[harmful["pred"] == "safe"]
    if harmful.empty:
        return Markdown(f"**Reading.** {dataset} holds no harmful prompt: nothing to miss.")
    if missed.empty:
        return Markdown(f"**Reading.** The intent model labelled all {len(harmful)} harmful {dataset} prompts harmful.")
    human = dict(zip(test["ID"].astype(str), test["Intent"]))
    written = missed[missed["intent"].fillna("").str.strip().astype(bool) & missed["id"].astype(str).isin(human)]
    opening = (f"**Reading.** Of the {len(harmful)} harmful {dataset} prompts, the intent model labelled "
               f"{len(missed)} safe ({len(missed) / len(harmful):.0%}).")
    if written.empty:
        return Markdown(opening + " None of those answers wrote a readable intent: the misses are format failures, not softened intents.")
    if judge is None:
        from aims_kit.scoring.judges import make_judge

        judge = make_judge("embedding")
    grades = judge.grade([(human[str(i)], intent) for i, intent in zip(written["id"], written["intent"])])
    softened = written[[g != "good" for g in grades]]
    counts = {g: grades.count(g) for g in ("decent", "bad")}
    wrote = f"All {len(written)} wrote an intent." if len(written) == len(missed) else f"{len(written)} of them wrote an intent."
    matched = len(written) - len(softened)
    rest = (f" For the other {matched} the intent matched and the label still came out safe: there the label did not follow "
            "the intent." if matched else "")
    text = (f"{opening} {wrote} For **{len(softened)}** the written intent is not a *good* match to the human one (the "
            f"offline judge grades {counts['decent']} *decent*, {counts['bad']} *bad*): the miss began in the intent — the "
            f"model described another or vaguer goal than the annotator read, then labelled it safe.{rest}")
    shown = [f"- prompt \"{quote(r.prompt)}\" — human intent: \"{quote(human[str(r.id)])}\"; the model's: \"{quote(r.intent)}\""
             for r in softened.head(examples).itertuples()]
    return Markdown(text + ("\n\nFor example:\n\n" + "\n".join(shown) if shown else ""))


def students_against_flag_all(records: pd.DataFrame, dataset: str = "aims_test", regime: str = "distill") -> Markdown:
    """Each distillation student's F1 beside flagging everything, in one sentence (04).

    Why: the students are compared with each other for claim 3, but a student below flag-all has
    learned nothing F1 can see, whichever student wins; with its interval too, a reader can tell
    "below" from "indistinguishable".
    """
    rows = records[(records["regime"] == regime) & (records["dataset"] == dataset)] if not records.empty else records
    if rows.empty:
        return Markdown(f"No {regime} run was evaluated on {dataset}.")
    flag = float(rows["f1_flag_all"].mean())

    def one(row) -> str:
        interval = (f" [{row['f1_ci_low']:.3f}, {row['f1_ci_high']:.3f}]"
                    if pd.notna(row.get("f1_ci_low")) and pd.notna(row.get("f1_ci_high")) else "")
        return f"{row.get('variant') or row['condition']} {row['f1']:.3f}{interval}"

    below = rows[rows["f1"] <= flag]
    surely = rows[rows["f1_ci_high"] < flag] if "f1_ci_high" in rows else rows.iloc[0:0]
    listed = "; ".join(one(row) for _, row in rows.sort_values("f1", ascending=False).iterrows())
    n = len(rows)
    if below.empty:
        verdict = f"every one of the {n} scores above it"
    elif len(below) == n:
        verdict = f"all {n} score at or below it"
    else:
        verdict = f"{len(below)} of the {n} score at or below it"
    whole = (f", {len(surely)} of them with the whole 95% interval below" if len(surely) else
             ", none with its whole 95% interval below (each interval reaches flag-all's F1)" if len(below) else "")
    cost = rows["ms_per_prompt"].mean()
    return Markdown(f"**Reading.** Flagging every {dataset} prompt harmful scores F1 {flag:.3f} at 0 ms; of the "
                    f"students ({listed}) {verdict}{whole}. A student at or below that line has not learned to separate "
                    f"the classes better than no model, whatever the claim-3 comparison between students says; its "
                    f"reasoning costs {cost:.0f} ms/prompt on average here.")


def reward_reading(runs: dict[str, Path]) -> Markdown:
    """Per GRPO run: how its mean reward moved, at which step it fell most, and what moved with it (05).

    Why: a falling reward curve reads as "training made the policy worse", but each step scores
    the rollouts of *new* prompts (``prompts_per_step`` of them), so with a handful per step the
    mean mostly follows which prompts were drawn; the component that fell and the step's harmful
    share (``harmful_share`` in ``reward_log.jsonl``) say which. The validation F1 of the
    snapshots, always on the same prompts, is what measures the policy.
    """
    from aims_kit.core.results import read_json, read_jsonl

    lines = []
    for name, run_dir in runs.items():
        run_dir = Path(run_dir)
        log = read_jsonl(run_dir / "reward_log.jsonl")
        if len(log) < 2:
            lines.append(f"- **{name}**: {len(log)} logged step: no curve to read.")
            continue
        grpo = read_json(run_dir / "config.json").get("grpo", {})
        per_step = grpo.get("prompts_per_step")
        rollouts = f"{per_step} new prompts × {grpo.get('num_generations')} rollouts" if per_step else "new prompts"
        first, last = log[0], log[-1]
        falls = [(log[i]["reward"] - log[i + 1]["reward"], i) for i in range(len(log) - 1)]
        drop, at = max(falls)
        before, after = log[at], log[at + 1]
        components = [k for k in before if k not in ("step", "reward", "frac_format", "harmful_share")
                      and not k.startswith("completion_") and k in after]
        moved = f"{first['reward']:.3f} at step {first['step']} → {last['reward']:.3f} at step {last['step']}"
        if drop <= 0:
            lines.append(f"- **{name}**: mean reward {moved}; it never fell from one step to the next.")
            continue
        worst = max(components, key=lambda k: before[k] - after[k]) if components else None
        what = (f", where `{worst}` fell most ({before[worst]:.2f} → {after[worst]:.2f})" if worst else "")
        mix = ""
        if "harmful_share" in before and "harmful_share" in after:
            mix = (f" and the step's prompts went from {before['harmful_share']:.0%} to {after['harmful_share']:.0%} harmful"
                   if before["harmful_share"] != after["harmful_share"] else
                   f" while the step's prompts stayed {before['harmful_share']:.0%} harmful")
        selection = read_json(run_dir / "val_selection.json") if (run_dir / "val_selection.json").exists() else {}
        history = selection.get("history") or []
        val = (f" The validation F1 of its snapshots, on the same prompts each time: "
               + ", ".join(f"{p['val_f1']:.3f} at step {p['step']}" for p in history) + "." if history else "")
        lines.append(f"- **{name}**: mean reward {moved}. It fell most from step {before['step']} to {after['step']} "
                     f"({-drop:+.3f}){what}{mix}. Each step scores {rollouts}, so its mean is over other prompts than the "
                     f"step before: with this few, a fall says as much about the prompts drawn as about the policy.{val}")
    return Markdown("**Reading the reward curves.**\n\n" + "\n".join(lines))


def slices_left_out(table: pd.DataFrame | str) -> Markdown:
    """One line under a slice table: the slices too small for a row, counted (06).

    Why: a slice of a few prompts has an F1 interval spanning most of 0–1; a table of them reads as
    findings. They are counted instead, with the setting that would give them enough prompts.
    """
    if isinstance(table, str):
        return Markdown(table)
    left = table.attrs.get("left_out") or {}
    if not left.get("slices"):
        return Markdown(f"Every {left.get('column', 'slice')} slice here holds at least {left.get('min_prompts', 0)} prompts.")
    shown = (f"{left['kept']} slice{'s' if left['kept'] != 1 else ''} with at least {left['min_prompts']} prompts "
             "per run are shown" if left["kept"] else "no slice has enough prompts for a row of its own")
    return Markdown(f"{left['slices']} {left['benchmark']} `{left['column']}` slices with fewer than {left['min_prompts']} "
                    f"prompts ({left['prompts']} prompts in all) are left out, their F1 too uncertain to read; {shown}. "
                    "Score more of the benchmark (`benchmark_limit`) to give each slice enough prompts.")


def show_slices(table: pd.DataFrame | str) -> None:
    """The slice table as 06 shows it: the line counting the slices left out, then the rows kept, if any."""
    from IPython.display import display

    display(slices_left_out(table))
    if isinstance(table, pd.DataFrame) and len(table):
        display(table)
