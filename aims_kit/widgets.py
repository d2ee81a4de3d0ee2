"""Interactive widgets for JupyterLab. All user and model text is HTML-escaped before display."""

from __future__ import annotations

import html

import pandas as pd

BROWSER_COLUMNS = ("ID", "label", "Category", "Adversarial", "Prompt", "Intent")


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
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in columns) + "</tr>"
        for _, row in frame.head(limit).iterrows()
    )
    return (
        f"<p>{len(frame)} matching rows (showing up to {limit})</p>"
        f"<table style='font-size:12px'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


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
