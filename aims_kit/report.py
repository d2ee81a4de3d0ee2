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

from . import plots
from .results import atomic_write_text, load_records, read_json

TABLE_COLUMNS = [
    "regime", "condition", "variant", "dataset", "n", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall",
    "accuracy", "f1_flag_all", "f1_flag_none", "parse_failure_rate", "intent_repeat_rate", "intent_similarity", "ms_per_prompt", "latency_p50_ms",
    "latency_p95_ms", "tokens_per_prompt", "seed",
]


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
    return records[columns].sort_values(["dataset", "regime", "condition"]).reset_index(drop=True).round(3)


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
    """The table ``python -m aims_kit run`` prints at the end, with a pointer to the other results."""
    records = load_records(out_dir)
    frame = summary_frame(records, dataset)
    if frame.empty:
        return f"No results on {dataset} in {out_dir}."
    lines = [f"Results on {dataset} (F1 with 95% CI; flag-all: F1 of flagging every prompt harmful)",
             frame.to_string(index=False, justify="left", formatters={"run": f"{{:<{frame['run'].str.len().max()}}}".format})]
    others = sorted(set(records["dataset"]) - {dataset})
    if others:
        lines.append(f"{len(records) - len(frame)} more results on {len(others)} other datasets in the report.")
    return "\n".join(lines)


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
    from .models import TINY_RANDOM
    from .offline_models import WHEEL_MODELS

    if model == TINY_RANDOM:
        return ("These runs train the tiny random test model, which learns the output format but never the "
                "decision: the numbers test the pipeline only.")
    if model in WHEEL_MODELS:
        return (f"These runs train {model} (a small pretrained model) for minutes on a CPU, on the kit's teaching "
                "sample: the numbers show the pipeline and the direction of effects at toy scale, not the paper's results.")
    return (f"Model: {model or 'see each run'}. Compare with the paper's numbers only on the AIMS data and the "
            "published benchmarks, never on fixtures.")


def write_report(out_dir: Path, parameters: dict | None = None) -> Path:
    """Write ``out_dir/report.html`` from the records under ``out_dir``; returns its path."""
    out_dir = Path(out_dir)
    records = load_records(out_dir)
    table = results_table(records)
    # Fixtures are format checks, not benchmarks: they never enter the plotted mean.
    real = sorted(d for d in records["dataset"].unique() if not d.startswith("fixture:")) if len(records) else []
    summary = plots.summarise_runs(records, real or None)
    parts = [
        "<h1>AIMS Kit report</h1>",
        f"<p>Run folder: <code>{html.escape(str(out_dir))}</code></p>",
        f"<p><strong>Read this first.</strong> {html.escape(model_note((parameters or {}).get('model', '')))} "
        "Each F1 sits beside the F1 of flagging everything and of flagging nothing.</p>",
        "<h2>Pareto: F1 against latency</h2>",
    ]
    if len(summary):
        parts.append(plots.pareto_figure(summary).to_html(full_html=False, include_plotlyjs=False, div_id="pareto"))
    else:
        parts.append("<p>No results records found.</p>")
    parts += [
        "<h2>Results</h2>",
        table.to_html(index=False, escape=True, classes="results"),
        *regime_sections(records),
        "<h2>Parameters</h2>",
        f"<pre>{html.escape(json.dumps(parameters or {}, indent=2, default=str))}</pre>",
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
