"""The self-contained HTML report of one run folder: results, baselines, Pareto plot, parameters.

Plotly's JavaScript is inlined so the file opens offline; every cell of user or model text is
HTML-escaped (prompts are adversarial by design).
"""

from __future__ import annotations

import html
import json
import platform
from pathlib import Path

import pandas as pd

from aims_kit.core.progress import format_duration
from aims_kit.core.results import atomic_write_text, git_commit, load_records, read_json
from aims_kit.evaluation import claims, latency
from aims_kit.notebook import plots
from aims_kit.notebook.doctor import machine

TABLE_COLUMNS = [
    "regime", "condition", "variant", "dataset", "n", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall",
    "accuracy", "flag_rate", "f1_flag_all", "f1_flag_none", "parse_failure_rate", "intent_repeat_rate", "intent_similarity", "ms_per_prompt", "latency_p50_ms",
    "latency_p95_ms", "tokens_per_prompt", "label_method", "checkpoint_step", "seed",
]

#: What ``tokens_per_prompt`` shows for a run that decodes nothing, instead of a bare 0.000.
SCORED_TOKENS = "scored (no decoding)"
#: The same for the encoder baseline: its classification head writes no tokens at all.
HEAD_TOKENS = "classifier head (no decoding)"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "papermill", "plotly"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def results_table(records: pd.DataFrame) -> pd.DataFrame:
    """The F1 table with the trivial baselines beside every row (honest numbers)."""
    if records.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    columns = [c for c in TABLE_COLUMNS if c in records.columns]
    table = records[columns].sort_values(["dataset", "regime", "condition"]).reset_index(drop=True).round(3)
    if "tokens_per_prompt" in table:
        table["tokens_per_prompt"] = [tokens_shown(row) for _, row in table.iterrows()]
    return table.assign(dataset=table["dataset"].map(plots.dataset_name))


def tokens_shown(record: pd.Series):
    """A record's ``tokens_per_prompt`` as a table shows it: what was measured, never a misleading 0.000.

    Why: a label-only run scored in one forward pass (``label_method`` ``scored``) and the encoder
    baseline write no token at all; their 0 is not "very short answers" but "no decoding", which
    is also why their ms/prompt is so low.
    """
    if record.get("label_method") == "scored":
        return SCORED_TOKENS
    if record.get("regime") == "encoder":
        return HEAD_TOKENS
    return record.get("tokens_per_prompt")


def run_label(record: pd.Series) -> str:
    """A run as people name it: regime, output condition and variant ("dpo intent_label hard")."""
    variant = record.get("variant")
    return " ".join(str(part) for part in (record["regime"], record["condition"], variant) if isinstance(part, str) and part)


def summary_frame(records: pd.DataFrame, dataset: str = "aims_test") -> pd.DataFrame:
    """One row per run on ``dataset``: F1 with its 95% CI beside flag-everything, parse failures, ms/prompt.

    Runs that write intents add how those read: the share repeating a four-word sequence and
    the judge's mean similarity to the human intent ("–" for runs without intents).
    """
    if records.empty or dataset not in set(records["dataset"]):
        return pd.DataFrame(columns=["run", "F1 [95% CI]", "flag-all F1", "parse fail", "ms/prompt"])
    rows = records[records["dataset"] == dataset].sort_values(["regime", "condition"])

    def f1(row) -> str:
        low, high = row.get("f1_ci_low"), row.get("f1_ci_high")
        interval = f" [{low:.2f}, {high:.2f}]" if pd.notna(low) and pd.notna(high) else ""
        return f"{row['f1']:.2f}{interval}"

    def optional(column: str, spec: str) -> list[str]:
        values = rows[column] if column in rows else [None] * len(rows)
        return [format(value, spec) if pd.notna(value) else "–" for value in values]

    frame = pd.DataFrame({
        "run": [run_label(row) for _, row in rows.iterrows()],
        "F1 [95% CI]": [f1(row) for _, row in rows.iterrows()],
        "flag-all F1": [f"{value:.2f}" for value in rows["f1_flag_all"]],
        "parse fail": [f"{value:.0%}" for value in rows["parse_failure_rate"]],
        "intent repeats": optional("intent_repeat_rate", ".0%"),
        "intent sim.": optional("intent_similarity", ".2f"),
        "ms/prompt": [f"{value:.1f}" for value in rows["ms_per_prompt"]],
    })
    has_intents = frame[["intent repeats", "intent sim."]].ne("–").any()
    return frame.drop(columns=[c for c, present in has_intents.items() if not present])


def run_summary(out_dir: Path, dataset: str = "aims_test") -> str:
    """What ``python -m aims_kit run`` prints at the end: the results table, then the claims scoreboard."""
    records = load_records(out_dir)
    frame = summary_frame(records, dataset)
    if frame.empty:
        return f"No results on {dataset} in {out_dir}."
    lines = [f"Results on {dataset} (F1 with 95% CI; flag-all: F1 of flagging every prompt harmful)",
             frame.to_string(index=False, justify="left", formatters={"run": f"{{:<{frame['run'].str.len().max()}}}".format})]
    for other in claims.real_benchmarks(records):
        table = summary_frame(records, other)
        lines += ["", f"Results on {plots.dataset_name(other)}", table.to_string(index=False, justify="left")]
    fixtures = sorted(d for d in set(records["dataset"]) if d.startswith("fixture:"))
    if fixtures:
        lines.append(f"{len(fixtures)} fixture datasets (the kit's own sentences, not benchmarks) are in the report.")
    claims_file = Path(out_dir) / "claims.json"
    if claims_file.exists():
        lines += ["", claims.summary_text(claims.read_claims(claims_file))]
    return "\n".join(lines)


def scoreboard_section(entries: list) -> list[str]:
    """The claims scoreboard as HTML: one row per claim, one column per dataset, the rule beside it."""
    frame = claims.scoreboard_frame(entries)
    notes = [f"<li>Claim {e.claim} · {html.escape(plots.dataset_name(e.dataset))}: {html.escape(e.note)}</li>"
             for e in entries if e.note]
    return [
        "<h2>Claims scoreboard</h2>",
        f"<p>Each claim compares two runs named in advance, {html.escape(claims.RULE_TEXT)}. "
        "<em>Reproduced</em>: a significant ΔF1 above 0 and the winner above flagging everything; "
        "<em>reproduced, below the trivial baseline</em>: significant above 0 but not above flag-all; "
        "<em>reversed</em>: significant below 0; otherwise <em>not trained apart</em>: the two runs' labels differ on "
        f"under {1 - claims.SAME_LABEL_SHARE:.0%} of prompts; <em>smaller than the paper's gap</em>: the interval lies "
        "below the claim's gap; <em>uninformative</em>: it reaches the gap (it spans both 0 and the gap); "
        "<em>not tested</em>: a run or dataset is missing. Cells marked exploratory are outside the five headline tests "
        "(the terms: <code>docs/glossary.md</code> in the kit). "
        "Computed from the records and predictions in this folder (<code>claims.json</code>).</p>",
        frame.to_html(index=False, escape=True, classes="results"),
        f"<details><summary>Notes per claim and dataset</summary><ul>{''.join(notes)}</ul></details>",
        "<h3>Power: what each headline could detect</h3>",
        "<p>Per claim's headline: the share of prompts on which the two runs' labels differ (only those carry "
        "evidence), the smallest difference these prompts could detect, and the prompts its gap from the paper "
        "would need (× about 1.5 under Holm).</p>",
        claims.power_table(entries).to_html(index=False, escape=True, classes="results", na_rep="–", float_format="{:.3f}".format),
    ]


def regime_sections(records: pd.DataFrame) -> list[str]:
    """One section per regime: its runs on the AIMS test split and each run's learning curve."""
    if records.empty:
        return []
    parts = ["<h2>By regime</h2>"]
    for regime, group in records.groupby("regime", sort=True):
        parts.append(f"<h3>{html.escape(str(regime))}</h3>")
        parts.append(results_table(group[group["dataset"] == "aims_test"]).to_html(index=False, escape=True, classes="results"))
        for run_dir in sorted(group["run_dir"].unique()):
            log = Path(run_dir) / "train_log.json"
            if log.exists():
                figure = plots.loss_figure(read_json(log), title=f"{regime} · {Path(run_dir).name}")
                figure.update_layout(height=300)
                parts.append(figure.to_html(full_html=False, include_plotlyjs=False))
    return parts


def model_note(model: str) -> str:
    """What the report's numbers can and cannot say, for the model the run trained."""
    from aims_kit.models.loading import TINY_RANDOM
    from aims_kit.models.offline import WHEEL_MODELS

    if model == TINY_RANDOM:
        return ("These runs train the tiny random test model, which learns the output format but never the "
                "decision: the numbers test the pipeline only.")
    if model in WHEEL_MODELS:
        return (f"These runs train {model} (a small pretrained model) for minutes on a CPU, on the kit's teaching "
                "sample: the numbers show the pipeline and the direction of effects at toy scale, not the paper's results.")
    return (f"Model: {model or 'see each run'}. Compare with the paper's numbers only on the AIMS data and the "
            "published benchmarks, never on fixtures.")


def pareto_sections(records: pd.DataFrame, timed: pd.DataFrame | None = None) -> list[str]:
    """One Pareto plot per view: the mean over the real external benchmarks (named), then AIMS test.

    Fixtures are format checks, not benchmarks: they get a plot of their own only when nothing
    real was evaluated (the smoke profile), titled as fixtures. ``timed``: 07's controlled timing,
    the latency claim 5 reads (:func:`aims_kit.notebook.plots.summarise_runs`).
    """
    if records.empty:
        return ["<p>No results records found.</p>"]
    real = claims.real_benchmarks(records)
    fixtures = sorted(d for d in records["dataset"].unique() if d.startswith("fixture:"))
    views = [v for v in (real, ["aims_test"] if "aims_test" in set(records["dataset"]) else [], [] if real else fixtures) if v]
    parts = []
    for number, datasets in enumerate(views):
        summary = plots.summarise_runs(records, datasets, timed=timed)
        if len(summary):
            parts.append(plots.pareto_figure(summary).to_html(full_html=False, include_plotlyjs=False, div_id="pareto" if number == 0 else f"pareto-{number}"))
    return parts or ["<p>No run was evaluated on every dataset of a view.</p>"]


def pr_sections(records: pd.DataFrame) -> list[str]:
    """Precision–recall curves on AIMS test and each real benchmark: evidence that needs no threshold."""
    if records.empty:
        return []
    datasets = [d for d in ["aims_test", *claims.real_benchmarks(records)] if d in set(records["dataset"])]
    parts = ["<h2>Precision–recall: ranking without a threshold</h2>",
             "<p>P(harmful) is read at the step that wrote each label. A curve above the cross (flagging "
             "everything) ranks prompts better than no model at some threshold.</p>"]
    for number, dataset in enumerate(datasets):
        parts.append(plots.pr_figure(records, dataset).to_html(full_html=False, include_plotlyjs=False, div_id=f"pr-{number}"))
    return parts


def write_report(out_dir: Path, parameters: dict | None = None) -> Path:
    """Write ``out_dir/report.html`` from the records under ``out_dir``; returns its path."""
    out_dir = Path(out_dir)
    parameters = parameters or {}
    records = load_records(out_dir)
    table = results_table(records)
    _, entries = claims.write_claims(out_dir)
    parts = [
        "<h1>AIMS Kit report</h1>",
        f"<p>Run folder: <code>{html.escape(str(out_dir))}</code></p>",
        f"<p><strong>Read this first.</strong> {html.escape(model_note(parameters.get('model', '')))} "
        "Each F1 sits beside the F1 of flagging everything and of flagging nothing.</p>",
        *scoreboard_section(entries),
        "<h2>Pareto: F1 against latency</h2>",
        *pareto_sections(records, latency.table(latency.read(out_dir))),
        *pr_sections(records),
    ]
    parts += [
        "<h2>Results</h2>",
        table.to_html(index=False, escape=True, classes="results"),
        *regime_sections(records),
        "<h2>Parameters</h2>",
        f"<pre>{html.escape(json.dumps(parameters, indent=2, default=str))}</pre>",
        "<h2>Versions</h2>",
        f"<pre>{html.escape(json.dumps(versions(), indent=2))}</pre>",
    ]
    from plotly.offline import get_plotlyjs

    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>AIMS Kit report</title>"
        f"<script>{get_plotlyjs()}</script>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table.results{border-collapse:collapse;font-size:13px}"
        "table.results td,table.results th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (cells escaped for ``|``)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def claim_reading(entry) -> str:
    """One sentence on a claim's headline test, written from its verdict and numbers."""
    claim = next(c for c in claims.CLAIMS if c.number == entry.claim)
    where = plots.dataset_name(entry.dataset)
    if entry.verdict == claims.NOT_TESTED:
        return f"**Claim {claim.number}** ({claim.statement}) was not tested on {where}: {entry.note}."
    e = entry.evidence
    sentence = (f"**Claim {claim.number}** ({claim.statement}), {entry.run_a} vs {entry.run_b} on {where} (n={entry.n}): "
                f"**{entry.verdict}**. F1 {e['f1_a']:.3f} vs {e['f1_b']:.3f}, ΔF1 {e['f1_diff']:+.3f} "
                f"[{e['diff_ci_low']:+.3f}, {e['diff_ci_high']:+.3f}] ({100 * e.get('ci_level', 0.95):.4g}% interval), "
                f"{e.get('p_method', 'bootstrap')} p {e['p_value']:.2g}"
                + (f", Holm p {entry.holm_p:.2g}" if entry.holm_p is not None else "")
                + f"; flagging everything scores {e['f1_flag_all']:.3f}; flag rates {e['flag_rate_a']:.0%} vs {e['flag_rate_b']:.0%}")
    if "auprc_diff" in e:
        sentence += f"; AUPRC {e['auprc_a']:.3f} vs {e['auprc_b']:.3f}"
    if entry.verdict in (claims.NOT_TRAINED_APART, claims.SMALLER, claims.UNINFORMATIVE):
        gap = "no gap stated by the paper" if entry.paper_gap is None else f"the paper's gap of about {entry.paper_gap:.2f}"
        sentence += (f". At this n the smallest detectable difference is {e['detectable_diff']:.2f}, against {gap}, "
                     f"and the labels differ on {e['labels_differ']} prompts")
    return sentence + "."


def _short_commit(commit: str) -> str:
    """A commit's first 12 characters, keeping the ``+dirty`` mark of a tree with uncommitted changes."""
    dirty = commit.endswith("+dirty")
    return commit.removesuffix("+dirty")[:12] + ("+dirty" if dirty else "")


def _departures(parameters: dict, status: dict) -> list[str]:
    """What a page must say where the folder is not a plain run of its profile: parameters set otherwise
    (a ``-p`` override, or edited before ``--resume``), and notebooks of the kit that never completed in it."""
    from aims_kit.core.paths import NOTEBOOKS_DIR
    from aims_kit.core.profiles import PROFILES
    from aims_kit.notebook.runner import notebooks

    lines = []
    profile = PROFILES.get(parameters.get("profile", ""), {})
    changed = {key: value for key, value in parameters.items() if key in profile and profile[key] != value}
    if changed:
        lines.append("parameters that differ from the profile as the kit defines it now: "
                     + ", ".join(f"`{key}` {value!r} (profile: {profile[key]!r})" for key, value in sorted(changed.items())))
    if status:
        done = {Path(name).stem.split("-seed")[0] for name in status.get("completed", [])}
        missing = [path.stem for path in notebooks(NOTEBOOKS_DIR) if path.stem not in done]
        if missing:
            lines.append(f"notebooks not run in this folder: {', '.join(missing)} (their claims read *not tested*)")
    return lines


def time_table(seconds: dict[str, float], speeds: dict[str, float]) -> pd.DataFrame:
    """Each notebook's time, and the machine's matmul GFLOP/s measured just before it where the run took it."""
    frame = pd.DataFrame({"notebook": list(seconds), "time": [format_duration(s) for s in seconds.values()]})
    if speeds:
        frame["matmul GFLOP/s before it"] = [f"{speeds[name]:,.0f}" if name in speeds else "" for name in seconds]
    return frame


def _speed_note(speeds: dict[str, float]) -> str:
    """One sentence on how far the machine's speed moved during the run (empty where it was not measured)."""
    if not speeds:
        return ""
    low, high = min(speeds.values()), max(speeds.values())
    return (f" The machine's matmul speed, taken before each notebook in the dtype the kit computed in, read "
            f"{low:,.0f}-{high:,.0f} GFLOP/s: on a shared machine a time compares with another run's only at a like speed.")


def markdown_report(out_dir: Path) -> str:
    """The results page of one run folder (``docs/results.md``): every number from that folder alone.

    Named by its folder, commit, profile, date and machine, so a published number always points at
    the one run it came from; the scoreboard's reading is written from the verdicts, not by hand.
    """
    out_dir = Path(out_dir)
    records = load_records(out_dir)
    if records.empty:
        raise ValueError(f"{out_dir}: no results records (is it a run folder written by `python -m aims_kit run`?)")
    parameters = read_json(out_dir / "parameters.json") if (out_dir / "parameters.json").exists() else {}
    status = read_json(out_dir / "status.json") if (out_dir / "status.json").exists() else {}
    entries = claims.read_claims(out_dir / "claims.json") if (out_dir / "claims.json").exists() else claims.scoreboard(records)
    commits = sorted({str(c) for c in records["config"].map(lambda c: (c or {}).get("git_commit")) if c})
    created = sorted(str(c) for c in records["config"].map(lambda c: (c or {}).get("created")) if c)
    devices = sorted({str(d) for d in records.get("device", pd.Series(dtype=str)).dropna()})
    seconds = status.get("seconds", {})
    lines = [
        "# Results of one run",
        "",
        f"Generated by `python -m aims_kit report {out_dir.name} --markdown FILE` from the run folder "
        f"`{out_dir.name}` alone; do not edit by hand (rerun the command instead).",
        "",
        f"- profile: `{parameters.get('profile', '?')}`, model `{parameters.get('model', '?')}`, seed {parameters.get('seed', '?')}",
        f"- commit the runs were trained and scored at: {', '.join(f'`{_short_commit(c)}`' for c in commits) or 'unknown'}; "
        f"scoreboard and this page written at `{_short_commit(git_commit())}`",
        f"- date: {created[0][:10] if created else 'unknown'}",
        f"- machine: {'; '.join(status.get('machines', [])) or f'not recorded by the run (the report runs on: {machine()})'}; "
        f"scored on {', '.join(devices) or 'unknown'}",
        f"- {model_note(parameters.get('model', ''))}",
    ]
    lines += [f"- {line}" for line in _departures(parameters, status)]
    if seconds:
        speeds = status.get("matmul_gflops", {})
        lines += ["", "## Time per notebook", "", markdown_table(time_table(seconds, speeds)),
                  "", f"Total: {format_duration(sum(seconds.values()))}.{_speed_note(speeds)}"]
    lines += ["", "## Claims scoreboard", "", f"Rule: {claims.RULE_TEXT}. Verdicts are defined in the report and in "
              "`aims_kit/evaluation/claims.py`.", "", "### Reading", ""]
    lines += [f"- {claim_reading(claims.headline(entries, c))}" for c in claims.CLAIMS]
    lines += ["", "### Every cell", "", markdown_table(claims.scoreboard_frame(entries))]
    lines += ["", "### Power", "", "Per claim's headline: the share of prompts whose labels differ between the two runs, the "
              "smallest difference these prompts could detect, and the prompts the paper's gap would need (× about 1.5 "
              "under Holm).", "", markdown_table(claims.power_table(entries).round(3))]
    measured = latency.read(out_dir)
    timed = latency.table(measured)
    if len(timed):
        lines += ["", "## Claim 5's latencies: one controlled measurement", "",
                  f"Method: {measured.get('method', '')}. {measured.get('repeats')} passes over "
                  f"{', '.join(f'{n} {plots.dataset_name(d)}' for d, n in measured.get('prompts', {}).items())} prompts, "
                  f"batch size {measured.get('batch_size')}; ms/prompt:", "", markdown_table(timed.round(1))]
    for dataset in ["aims_test", *claims.real_benchmarks(records)]:
        frame = summary_frame(records, dataset)
        if len(frame):
            n = int(records.loc[records["dataset"] == dataset, "n"].iloc[0])
            lines += ["", f"## Results on {plots.dataset_name(dataset)} (n={n})", "", markdown_table(frame)]
    return "\n".join(lines) + "\n"
