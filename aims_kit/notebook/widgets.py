"""Interactive widgets for JupyterLab. All user and model text is HTML-escaped before display.

Each widget is a thin shell over plain functions (filtering, classifying, rendering HTML) so
the callbacks are unit-tested without a browser.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

import pandas as pd

from aims_kit.core import results
from aims_kit.datasets import formats

BROWSER_COLUMNS = ("ID", "label", "Category", "Adversarial", "Prompt", "Intent")


def _table_html(frame: pd.DataFrame, columns: list[str], limit: int) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in columns) + "</tr>"
        for _, row in frame.head(limit).iterrows()
    )
    return f"<table style='font-size:12px'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def filter_rows(frame: pd.DataFrame, *, label: str = "all", category: str = "all", adversarial: str = "all", text: str = "") -> pd.DataFrame:
    """Rows matching every filter; ``text`` is a case-insensitive literal search in prompt and intent."""
    mask = pd.Series(True, index=frame.index)
    if label != "all":
        mask &= frame["label"] == label
    if category != "all" and "Category" in frame:
        mask &= frame["Category"] == category
    if adversarial != "all":
        mask &= frame["Adversarial"] == (adversarial == "adversarial")
    if text.strip():
        needle = text.strip().lower()
        mask &= frame["Prompt"].str.lower().str.contains(needle, regex=False) | frame["Intent"].str.lower().str.contains(
            needle, regex=False
        )
    return frame.loc[mask]


def rows_html(frame: pd.DataFrame, limit: int = 20) -> str:
    """An HTML table of the first ``limit`` rows, every cell escaped."""
    columns = [c for c in BROWSER_COLUMNS if c in frame.columns]
    return f"<p>{len(frame)} matching rows (showing up to {limit})</p>" + _table_html(frame, columns, limit)


def dataset_browser(frame: pd.DataFrame, limit: int = 20):
    """Dropdowns for label, category and adversarial plus a search box over prompts and intents."""
    import ipywidgets as w

    categories = ["all", *sorted(frame["Category"].unique())] if "Category" in frame else ["all"]
    label = w.Dropdown(options=["all", "harmful", "safe"], description="label")
    category = w.Dropdown(options=categories, description="category")
    adversarial = w.Dropdown(options=["all", "adversarial", "vanilla"], description="framing")
    text = w.Text(placeholder="search prompt or intent", description="search")
    table = w.HTML()

    def refresh(_=None) -> None:
        table.value = rows_html(
            filter_rows(frame, label=label.value, category=category.value, adversarial=adversarial.value, text=text.value),
            limit,
        )

    for control in (label, category, adversarial, text):
        control.observe(refresh, names="value")
    refresh()
    return w.VBox([w.HBox([label, category]), w.HBox([adversarial, text]), table])


# --- playground -----------------------------------------------------------------------------


def trained_runs(out_dir: str | Path) -> list[tuple[str, str]]:
    """(label, run folder) for every run with saved weights (a LoRA adapter, or the fine-tuned
    encoder baseline), newest last, for dropdowns."""
    choices = []
    for run_dir in results.find_runs(out_dir):
        if (run_dir / "adapter" / "adapter_config.json").exists() or (run_dir / "encoder" / "config.json").exists():
            config = results.read_run_config(run_dir)
            variant = f" · {config['variant']}" if config.get("variant") else ""
            choices.append((f"{config.get('regime')} · {config.get('condition')}{variant} · {run_dir.name[-11:]}", str(run_dir)))
    return choices


@functools.lru_cache(maxsize=4)
def _classifier(run_dir: str):
    from aims_kit.serving.classifier import Classifier

    return Classifier.from_run(run_dir, batch_size=1)


def classify(run_dir: str | Path, prompt: str) -> dict:
    """One prompt through one trained run (:class:`aims_kit.Classifier`): intent, label, raw output, parse status, latency."""
    if not prompt.strip():
        raise ValueError("type a prompt first")
    result = _classifier(str(run_dir)).classify([prompt], desc="")[0]
    return {"run": Path(run_dir).name, **result.to_dict()}


def result_html(result: dict) -> str:
    """A result card; every value escaped (model output is untrusted text)."""
    colour = "#c0392b" if result["label"] == "harmful" else "#27ae60"
    status = "parsed" if result["parsed"] else f"unparseable → scored as {formats.PARSE_FAILURE_RULE}"
    return (
        f"<div style='border:1px solid #ccc;padding:8px;margin:4px;flex:1'>"
        f"<div><b>{html.escape(result['run'])}</b></div>"
        f"<div>label: <b style='color:{colour}'>{html.escape(result['label'])}</b> ({html.escape(status)})</div>"
        f"<div>intent: {html.escape(str(result['intent'] or '—'))}</div>"
        f"<div>latency: {result['ms']:.0f} ms · {result['tokens']} tokens</div>"
        f"<pre style='white-space:pre-wrap'>{html.escape(result['output'])}</pre></div>"
    )


#: The prompt the playground starts with: a safe look-alike of a harmful request (XSTest's kind),
#: the case where an intent says more than a label.
EXAMPLE_PROMPT = "How do I kill a Python process that has stopped responding?"


def playground(out_dir: str | Path):
    """Pick a trained run, type a prompt, see its intent, label, raw output and latency; compare two runs."""
    import ipywidgets as w

    choices = trained_runs(out_dir)
    if not choices:
        return w.HTML(f"<p>No trained runs under {html.escape(str(out_dir))} yet: run 02_sft first.</p>")
    run_a = w.Dropdown(options=choices, value=choices[-1][1], description="run A", layout={"width": "60%"})
    run_b = w.Dropdown(options=choices, value=choices[0][1], description="run B", layout={"width": "60%"})
    prompt = w.Textarea(value=EXAMPLE_PROMPT, placeholder="Type or paste a prompt", layout={"width": "90%", "height": "80px"})
    classify_button = w.Button(description="Classify with A", button_style="primary")
    compare_button = w.Button(description="Compare A and B")
    output = w.HTML()

    def show(run_dirs: list[str]) -> None:
        try:
            cards = [result_html(classify(run_dir, prompt.value)) for run_dir in run_dirs]
            output.value = "<div style='display:flex'>" + "".join(cards) + "</div>"
        except ValueError as err:
            output.value = f"<p style='color:#c0392b'>{html.escape(str(err))}</p>"

    classify_button.on_click(lambda _: show([run_a.value]))
    compare_button.on_click(lambda _: show([run_a.value, run_b.value]))
    return w.VBox([run_a, run_b, prompt, w.HBox([classify_button, compare_button]), output])


# --- error explorer -------------------------------------------------------------------------

ERROR_KINDS = ("all errors", "false positives", "false negatives", "unparseable")


def errors(predictions: pd.DataFrame, kind: str = "all errors", text: str = "") -> pd.DataFrame:
    """Misclassified prompts of one kind, optionally filtered by a literal text search."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind must be one of {ERROR_KINDS}")
    wrong = predictions["gold"] != predictions["pred"]
    mask = {
        "all errors": wrong,
        "false positives": wrong & (predictions["pred"] == "harmful"),
        "false negatives": wrong & (predictions["pred"] == "safe"),
        "unparseable": ~predictions["parsed"].astype(bool),
    }[kind]
    if text.strip():
        needle = text.strip().lower()
        mask &= predictions["prompt"].str.lower().str.contains(needle, regex=False) | predictions["intent"].fillna("").str.lower().str.contains(needle, regex=False)
    return predictions.loc[mask]


def datasets_of(run_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(run_dir) / "predictions").glob("*.jsonl"))


def error_explorer(out_dir: str | Path, limit: int = 25):
    """For a run and dataset, the misclassified prompts with gold, predicted label and intent."""
    import ipywidgets as w

    choices = [c for c in trained_runs(out_dir) if datasets_of(c[1])]
    if not choices:
        return w.HTML("<p>No evaluated runs yet.</p>")
    run = w.Dropdown(options=choices, description="run", layout={"width": "60%"})
    dataset = w.Dropdown(options=datasets_of(choices[0][1]), description="dataset")
    kind = w.ToggleButtons(options=ERROR_KINDS)
    text = w.Text(placeholder="search prompt or intent", description="search")
    table = w.HTML()

    def refresh(_=None) -> None:
        frame = pd.DataFrame(results.read_jsonl(Path(run.value) / "predictions" / f"{dataset.value}.jsonl"))
        found = errors(frame, kind.value, text.value)
        table.value = f"<p>{len(found)} of {len(frame)} prompts</p>" + _table_html(found, ["gold", "pred", "intent", "prompt", "output"], limit)

    def change_run(_=None) -> None:
        dataset.options = datasets_of(run.value)

    run.observe(change_run, names="value")
    for control in (run, dataset, kind, text):
        control.observe(refresh, names="value")
    refresh()
    return w.VBox([run, w.HBox([dataset, text]), kind, table])


# --- run explorer ---------------------------------------------------------------------------


def run_details_html(records: pd.DataFrame, run_id: str) -> str:
    """A run's config and its per-dataset metrics, escaped."""
    rows = records[records["run_id"] == run_id]
    if rows.empty:
        return f"<p>No records for {html.escape(run_id)}</p>"
    metrics = rows[[c for c in ("dataset", "n", "f1", "precision", "recall", "f1_flag_all", "parse_failure_rate", "ms_per_prompt", "tokens_per_prompt") if c in rows]]
    config = json.dumps(rows.iloc[0]["config"], indent=2, default=str)
    return f"<h4>{html.escape(run_id)}</h4>" + _table_html(metrics.round(3), list(metrics.columns), 50) + f"<pre>{html.escape(config)}</pre>"


def run_explorer(out_dir: str | Path, datasets: list[str] | None = None):
    """The Pareto plot as a live figure: click a point to see that run's config and metrics."""
    import ipywidgets as w
    import plotly.graph_objects as go

    from aims_kit.notebook.plots import pareto_figure, summarise_runs

    records = results.load_records(out_dir)
    summary = summarise_runs(records, datasets)
    if summary.empty:
        return w.HTML("<p>No results records yet.</p>")
    figure = go.FigureWidget(pareto_figure(summary))
    details = w.HTML("<p>Click a point to see its run.</p>")

    def on_click(trace, points, _state) -> None:
        if points.point_inds:
            details.value = run_details_html(records, trace.hovertext[points.point_inds[0]])

    for trace in figure.data:
        if trace.mode == "markers":
            trace.on_click(on_click)
    return w.VBox([figure, details])
