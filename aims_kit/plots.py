"""Plots: the latency–F1 Pareto view, built from results records alone."""

from __future__ import annotations

import pandas as pd

#: Renderers that show in JupyterLab *and* leave HTML in the saved notebook (DESIGN.md §7).
NOTEBOOK_RENDERER = "plotly_mimetype+notebook_connected"


def use_notebook_renderer() -> None:
    import plotly.io as pio

    pio.renderers.default = NOTEBOOK_RENDERER


def summarise_runs(records: pd.DataFrame, datasets: list[str] | None = None) -> pd.DataFrame:
    """One row per run: mean F1 and mean ms/prompt over ``datasets`` (default: every dataset seen).

    Only runs evaluated on *all* chosen datasets are kept, so a mean never hides a missing
    benchmark.
    """
    if records.empty:
        return pd.DataFrame(columns=["run_id", "regime", "condition", "mean_f1", "ms_per_prompt"])
    chosen = datasets or sorted(records["dataset"].unique())
    subset = records[records["dataset"].isin(chosen)]
    grouped = subset.groupby("run_id")
    summary = grouped.agg(
        regime=("regime", "first"),
        condition=("condition", "first"),
        model=("model", "first"),
        seed=("seed", "first"),
        n_datasets=("dataset", "nunique"),
        mean_f1=("f1", "mean"),
        ms_per_prompt=("ms_per_prompt", "mean"),
        tokens_per_prompt=("tokens_per_prompt", "mean"),
        parse_failure_rate=("parse_failure_rate", "mean"),
        device=("device", "first"),
    ).reset_index()
    summary = summary[summary["n_datasets"] == len(chosen)].reset_index(drop=True)
    summary["label"] = summary["regime"] + " · " + summary["condition"]
    summary["on_frontier"] = pareto_mask(summary["ms_per_prompt"].tolist(), summary["mean_f1"].tolist())
    return summary


def pareto_mask(latency: list[float], score: list[float]) -> list[bool]:
    """True for points no other point beats on both axes (lower latency *and* higher score)."""
    mask = []
    for i, (x_i, y_i) in enumerate(zip(latency, score)):
        dominated = any(
            x_j <= x_i and y_j >= y_i and (x_j < x_i or y_j > y_i)
            for j, (x_j, y_j) in enumerate(zip(latency, score))
            if j != i
        )
        mask.append(not dominated)
    return mask


def pareto_figure(summary: pd.DataFrame, title: str = "F1 against latency"):
    """Scatter of mean F1 against ms/prompt, one colour per regime, frontier drawn as a line."""
    import plotly.express as px
    import plotly.graph_objects as go

    fig = px.scatter(
        summary,
        x="ms_per_prompt",
        y="mean_f1",
        color="regime",
        symbol="condition",
        hover_name="run_id",
        hover_data={"model": True, "seed": True, "tokens_per_prompt": ":.1f", "parse_failure_rate": ":.2f", "device": True},
        labels={"ms_per_prompt": "ms / prompt (batched throughput)", "mean_f1": "mean harmful-class F1"},
        title=title,
    )
    frontier = summary[summary["on_frontier"]].sort_values("ms_per_prompt")
    if len(frontier):
        fig.add_trace(
            go.Scatter(
                x=frontier["ms_per_prompt"], y=frontier["mean_f1"], mode="lines",
                line={"dash": "dash", "color": "grey"}, name="Pareto frontier", hoverinfo="skip",
            )
        )
    fig.update_traces(marker={"size": 12}, selector={"mode": "markers"})
    fig.update_layout(legend={"title": None}, template="plotly_white")
    return fig


def data_overview(frame: pd.DataFrame):
    """Label balance per category (or overall) and intent length by label, side by side."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=2, subplot_titles=("rows per category and label", "intent length (words)"))
    by = "Category" if "Category" in frame else "label"
    counts = frame.groupby([by, "label"]).size().unstack(fill_value=0)
    for label in counts.columns:
        fig.add_trace(go.Bar(x=counts.index, y=counts[label], name=label), row=1, col=1)
    lengths = frame["Intent"].str.split().str.len()
    for label, group in lengths.groupby(frame["label"]):
        fig.add_trace(go.Histogram(x=group, name=f"intent · {label}", opacity=0.6), row=1, col=2)
    fig.update_layout(barmode="stack", template="plotly_white", height=450)
    fig.update_xaxes(tickangle=45, row=1, col=1)
    return fig


def loss_figure(log_history: list[dict], title: str = "training and validation loss"):
    """Training loss and validation loss per step from a trainer's ``log_history``."""
    import plotly.graph_objects as go

    fig = go.Figure(layout={"title": title, "template": "plotly_white", "xaxis_title": "step", "yaxis_title": "loss"})
    for key, name in (("loss", "train"), ("eval_loss", "validation")):
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            steps, values = zip(*points)
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=name))
    return fig


def reward_figure(reward_log: list[dict], val_history: list[dict] | None = None, title: str = "GRPO rewards per step"):
    """Watch the policy change: mean of each reward component, the fraction in format and the
    validation F1 of the snapshots (top), mean completion length (bottom)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08)
    length_key = "completion_tokens" if any("completion_tokens" in row for row in reward_log) else "completion_chars"
    skip = {"step", "completion_tokens", "completion_chars"}
    keys = [k for k in (reward_log[0] if reward_log else {}) if k not in skip]
    steps = [row["step"] for row in reward_log]
    for key in keys:
        width = 3 if key == "reward" else 1.5
        fig.add_trace(go.Scatter(x=steps, y=[row.get(key) for row in reward_log], mode="lines+markers",
                                 name=key, line={"width": width}), row=1, col=1)
    if val_history:
        fig.add_trace(go.Scatter(x=[p["step"] for p in val_history], y=[p["val_f1"] for p in val_history],
                                 mode="markers", marker={"symbol": "star", "size": 12}, name="val F1 (snapshot)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=[row.get(length_key) for row in reward_log], mode="lines+markers",
                             name=f"mean {length_key.replace('completion_', '')} / completion"), row=2, col=1)
    fig.update_yaxes(title_text="mean reward", range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(title_text=length_key.replace("completion_", ""), row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(title=title, template="plotly_white", height=550)
    return fig
