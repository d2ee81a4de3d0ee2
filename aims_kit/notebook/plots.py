"""Plots: the latency–F1 Pareto view, built from results records alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aims_kit.evaluation import claims
from aims_kit.scoring.stats import pareto_mask

#: ``summary.attrs["latency"]`` where the x axis is 07's controlled timing.
CONTROLLED = "one controlled measurement"

#: Paper-reported mean F1 over the five benchmarks (docs/design.md §Evaluation): reference lines only, never
#: targets. Their latency was measured on other hardware, so they are drawn as horizontal lines.
PAPER_MEAN_F1 = {
    "WildGuard-7B": 0.804,
    "GuardReasoner-8B": 0.804,
    "LlamaGuard-4": 0.691,
    "paper SFT Llama-8B": 0.792,
    "paper DPO": 0.812,
    "paper distillation": 0.817,
    "paper GRPO": 0.826,
}

#: Renderers that show in JupyterLab *and* leave HTML in the saved notebook (docs/design.md §Stack).
NOTEBOOK_RENDERER = "plotly_mimetype+notebook_connected"


#: Rows a notebook table shows whole; a longer one is cut to its head and tail by pandas.
TABLE_ROWS = 500


def use_notebook_renderer() -> None:
    """Plotly figures that survive papermill, and pandas tables that show what a reader needs.

    pandas' defaults cut every cell at 50 characters (an intent, the line the paper is about,
    was cut mid-sentence), hide the middle columns of a 20-column table (``accuracy``) and
    elide tables past 60 rows; here every column and whole cells show, up to :data:`TABLE_ROWS` rows.
    """
    import plotly.io as pio

    pio.renderers.default = NOTEBOOK_RENDERER
    for option, value in (("display.max_columns", None), ("display.max_colwidth", None), ("display.width", None),
                          ("display.max_rows", TABLE_ROWS), ("display.min_rows", TABLE_ROWS)):
        pd.set_option(option, value)


def dataset_name(dataset: str) -> str:
    """A dataset as a title shows it: ``bench:`` dropped, a fixture marked as what it is."""
    if dataset.startswith("fixture:"):
        return f"{dataset} (fixture, not a benchmark)"
    return dataset.removeprefix("bench:")


def mean_title(datasets: list[str]) -> str:
    """What a plotted F1 is: the one dataset it was measured on, or the datasets its mean averages."""
    names = [dataset_name(d) for d in datasets]
    if not names:
        return "F1"
    if len(names) == 1:
        return f"F1 on {names[0]}"
    return f"mean F1 over {len(names)} datasets: {', '.join(names)}"


def summarise_runs(records: pd.DataFrame, datasets: list[str] | None = None, *, group_seeds: bool = False,
                   timed: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run: mean F1 and mean ms/prompt over ``datasets`` (default: every dataset seen).

    Only runs evaluated on *all* chosen datasets are kept, so a mean never hides a missing
    benchmark. Where records carry bootstrap intervals, ``f1_err`` is the half-width of the
    mean's interval (:func:`aims_kit.scoring.stats.mean_f1_interval`). With ``group_seeds`` runs that
    differ only in seed become one point at their mean, ``f1_err`` then being the seed spread
    (std) when there are several seeds; the frontier is always computed on these means.

    Flagging every prompt harmful competes too, at 0 ms (:func:`flag_all_point`): a run whose mean
    F1 is at most flag-all's is not ``on_frontier``, however fast it is among the runs. Its F1 is
    kept in ``summary.attrs["flag_all_f1"]`` for the plot (``None`` where records carry no
    ``f1_flag_all``).

    ``timed`` (07's controlled timing, :func:`aims_kit.evaluation.latency.table`): where it covers
    every run on every chosen dataset, ``ms_per_prompt`` is its median instead of each run's own
    evaluation, the numbers claim 5 compares; ``summary.attrs["latency"]`` says which.
    """
    if records.empty:
        return pd.DataFrame(columns=["run_id", "regime", "condition", "mean_f1", "ms_per_prompt"])
    chosen = list(datasets or sorted(records["dataset"].unique()))
    subset = records[records["dataset"].isin(chosen)]
    grouped = subset.groupby("run_id")
    columns = {
        "regime": ("regime", "first"),
        "condition": ("condition", "first"),
        "model": ("model", "first"),
        "seed": ("seed", "first"),
        "n_datasets": ("dataset", "nunique"),
        "mean_f1": ("f1", "mean"),
        "ms_per_prompt": ("ms_per_prompt", "mean"),
        "tokens_per_prompt": ("tokens_per_prompt", "mean"),
        "parse_failure_rate": ("parse_failure_rate", "mean"),
        "device": ("device", "first"),
    }
    if "f1_flag_all" in subset:
        columns["f1_flag_all"] = ("f1_flag_all", "mean")
    if "variant" in subset:
        columns["variant"] = ("variant", "first")
    summary = grouped.agg(**columns).reset_index()
    if "f1_ci_low" in subset:
        from aims_kit.scoring.stats import mean_f1_interval

        half = (subset["f1_ci_high"] - subset["f1_ci_low"]) / 2
        summary["f1_err"] = half.groupby(subset["run_id"]).apply(mean_f1_interval).reindex(summary["run_id"]).to_numpy()
    summary = summary[summary["n_datasets"] == len(chosen)].reset_index(drop=True)
    cover = claims.controlled_cover(timed, chosen, summary["run_id"].tolist())
    if cover is not None:
        summary["ms_per_prompt"] = summary["run_id"].map(cover.groupby("run_id")["ms_median"].mean())
    if group_seeds and len(summary):
        summary = _group_seeds(summary, records)
    variant = summary["variant"].fillna("") if "variant" in summary else pd.Series("", index=summary.index)
    # What distinguishes runs of one regime: the output format, and the variant where there is one
    # (DPO hard/judge, distillation condition, GRPO reward set).
    summary["setting"] = summary["condition"] + variant.map(lambda v: f" · {v}" if v else "")
    summary["label"] = summary["regime"] + " · " + summary["setting"]
    flag_all = flag_all_point(summary)
    summary["on_frontier"] = pareto_mask(summary["ms_per_prompt"].tolist(), summary["mean_f1"].tolist(),
                                         baseline=None if flag_all is None else (0.0, flag_all))
    summary.attrs["datasets"] = chosen  # what the mean is over: every title built from it names them
    summary.attrs["flag_all_f1"] = flag_all
    summary.attrs["latency"] = CONTROLLED if cover is not None else "each run's own evaluation"
    return summary


def flag_all_point(summary: pd.DataFrame) -> float | None:
    """Flag-all's mean F1 over the summary's datasets: the Pareto point at 0 ms every run must beat.

    Each run's ``f1_flag_all`` is already the mean over the same datasets; runs scored on the same
    prompts share it, and runs of other seeds (another test split) differ slightly, so the point is
    their mean. ``None`` when no record carries it.
    """
    if "f1_flag_all" not in summary or summary["f1_flag_all"].isna().all():
        return None
    return float(summary["f1_flag_all"].mean())


def _group_seeds(summary: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    from aims_kit.scoring.stats import experiment_key

    keys = records.drop_duplicates("run_id").set_index("run_id")["config"].map(experiment_key)
    summary = summary.assign(experiment=summary["run_id"].map(keys))
    first = summary.groupby("experiment", sort=False).first()
    averaged = [c for c in ("mean_f1", "ms_per_prompt", "tokens_per_prompt", "parse_failure_rate", "f1_flag_all") if c in summary]
    means = summary.groupby("experiment", sort=False)[averaged].mean()
    spread = summary.groupby("experiment", sort=False)["mean_f1"].std()
    n_seeds = summary.groupby("experiment", sort=False)["seed"].nunique()
    out = first.drop(columns=means.columns).join(means)
    out["n_seeds"] = n_seeds
    if "f1_err" in out:
        out["f1_err"] = spread.where(n_seeds > 1, out["f1_err"])
    else:
        out["f1_err"] = spread
    return out.reset_index(drop=True)


def pareto_figure(summary: pd.DataFrame, title: str | None = None, references: dict[str, float] | None = None):
    """Scatter of mean F1 against ms/prompt, one colour per regime, frontier drawn as a line.

    Flagging everything is drawn at 0 ms (a black cross, ``summary.attrs["flag_all_f1"]``) and the
    frontier line starts there: the point every run must rise above to be worth its latency.

    The default title names the datasets the mean is over (:func:`mean_title`), fixtures marked
    as such, so a plotted mean never hides what it averages.

    Error bars come from ``f1_err`` when the summary has it; ``references`` (e.g.
    :data:`PAPER_MEAN_F1`) adds labelled horizontal lines for scores measured elsewhere.
    """
    import plotly.express as px
    import plotly.graph_objects as go

    fig = px.scatter(
        summary,
        x="ms_per_prompt",
        y="mean_f1",
        color="regime",
        symbol="setting",
        hover_name="run_id",
        hover_data={"model": True, "seed": True, "tokens_per_prompt": ":.1f", "parse_failure_rate": ":.2f", "device": True},
        labels={"ms_per_prompt": "ms / prompt (batched throughput" + (", every run timed at one moment)"
                                                                     if summary.attrs.get("latency") == CONTROLLED else ")"),
                "mean_f1": "mean harmful-class F1"},
        title=title or f"{mean_title(summary.attrs.get('datasets', []))} · against latency",
        error_y="f1_err" if "f1_err" in summary and summary["f1_err"].notna().any() else None,
    )
    for name, value in (references or {}).items():
        fig.add_hline(y=value, line={"dash": "dot", "color": "lightgrey"},
                      annotation_text=f"{name} {value:.3f} (paper, other hardware)", annotation_position="top left",
                      annotation_font_size=9)
    frontier = summary[summary["on_frontier"]].sort_values("ms_per_prompt")[["ms_per_prompt", "mean_f1"]]
    flag_all = summary.attrs.get("flag_all_f1")
    if flag_all is not None:
        # "markers+text", not "markers": the run explorer makes only run points clickable.
        fig.add_trace(go.Scatter(
            x=[0.0], y=[flag_all], mode="markers+text", text=["flag all"], textposition="top right",
            marker={"symbol": "x", "size": 12, "color": "black"}, name=f"flag everything (F1 {flag_all:.3f}, 0 ms)",
            hovertemplate="flag everything: F1 %{y:.3f} at 0 ms<extra></extra>",
        ))
        frontier = pd.concat([pd.DataFrame({"ms_per_prompt": [0.0], "mean_f1": [flag_all]}), frontier], ignore_index=True)
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


def benchmark_figure(records: pd.DataFrame, datasets: list[str] | None = None):
    """Per-benchmark view: F1 (with its bootstrap interval) against ms/prompt, one panel each."""
    import plotly.express as px

    frame = records if datasets is None else records[records["dataset"].isin(datasets)]
    frame = frame.assign(
        err_plus=frame["f1_ci_high"] - frame["f1"], err_minus=frame["f1"] - frame["f1_ci_low"]
    ) if "f1_ci_low" in frame else frame.assign(err_plus=None, err_minus=None)
    fig = px.scatter(
        frame, x="ms_per_prompt", y="f1", color="regime", symbol="condition", facet_col="dataset", facet_col_wrap=3,
        error_y="err_plus", error_y_minus="err_minus", hover_name="run_id",
        hover_data={k: v for k, v in {"seed": True, "f1_flag_all": ":.3f", "latency_p50_ms": ":.1f", "device": True}.items()
                    if k in frame},
        labels={"ms_per_prompt": "ms / prompt", "f1": "F1 (95% CI)"}, title="F1 per dataset",
    )
    fig.update_layout(template="plotly_white", legend={"title": None})
    fig.for_each_annotation(lambda a: a.update(text=dataset_name(a.text.split("=", 1)[-1])))
    return fig


def data_overview(frame: pd.DataFrame):
    """Label balance per category (or overall) and intent length by label, side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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


def _curve_traces(log_history: list[dict]) -> list:
    """Training loss, validation loss and (where logged) validation F1 per step, as plotly traces."""
    import plotly.graph_objects as go

    traces = []
    for key, name in (("loss", "train loss"), ("eval_loss", "validation loss"), ("val_f1", "validation F1")):
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            steps, values = zip(*points)
            traces.append(go.Scatter(x=steps, y=values, mode="lines+markers", name=name,
                                     line={"dash": "dot"} if key == "val_f1" else None))
    return traces


def loss_figure(log_history: list[dict], title: str = "training and validation loss"):
    """Training and validation loss per step from a trainer's ``log_history``; validation F1 on a right axis where logged."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for trace in _curve_traces(log_history):
        fig.add_trace(trace, secondary_y=trace.name == "validation F1")
    fig.update_layout(title=title, template="plotly_white")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="validation F1", range=[0, 1], secondary_y=True)
    return fig


def learning_curves(runs: dict[str, Path | str], title: str = "training and validation loss, validation F1"):
    """One panel per run (``{name: run folder}``) from its ``train_log.json``: losses, and validation F1 on the right axis."""
    from plotly.subplots import make_subplots

    from aims_kit.core.results import read_json

    columns = max(1, len(runs))
    fig = make_subplots(rows=1, cols=columns, subplot_titles=list(runs), specs=[[{"secondary_y": True}] * columns])
    for column, run_dir in enumerate(runs.values(), start=1):
        for trace in _curve_traces(read_json(Path(run_dir) / "train_log.json")):
            trace.showlegend = column == 1
            fig.add_trace(trace, row=1, col=column, secondary_y=trace.name == "validation F1")
    fig.update_yaxes(range=[0, 1], secondary_y=True)
    fig.update_layout(title=title, template="plotly_white", height=380)
    return fig


def reward_figures(runs: dict[str, Path | str]) -> None:
    """Show the GRPO reward figure of every run (``{reward set: run folder}``)."""
    from aims_kit.core.results import read_json, read_jsonl

    for name, run_dir in runs.items():
        run_dir = Path(run_dir)
        log = read_jsonl(run_dir / "reward_log.jsonl")
        history = read_json(run_dir / "val_selection.json")["history"]
        reward_figure(log, history, title=f"GRPO · {name}").show()


def reward_figure(reward_log: list[dict], val_history: list[dict] | None = None, title: str = "GRPO rewards per step"):
    """Watch the policy change: mean of each reward component, the fraction in format and the
    validation F1 of the snapshots (top), mean completion length (bottom)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08)
    length_key = "completion_tokens" if any("completion_tokens" in row for row in reward_log) else "completion_chars"
    skip = {"step", "completion_tokens", "completion_chars", "harmful_share"}  # not rewards: read by prose.reward_reading
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


def pr_figure(records: pd.DataFrame, dataset: str):
    """Precision–recall curves of every run with P(harmful) on ``dataset``, flagging everything marked.

    Flagging everything sits at recall 1 with precision = the harmful share: a curve must rise
    above that point to rank prompts better than no model. Runs without P(harmful) (an encoder,
    a served or vLLM run) are drawn as their one operating point.
    """
    import plotly.graph_objects as go

    from aims_kit.core.results import read_jsonl
    from aims_kit.scoring.metrics import average_precision, precision_recall_curve

    fig = go.Figure()
    rows = records[records["dataset"] == dataset]
    share = None
    for row in rows.itertuples():
        file = Path(row.run_dir) / "predictions" / f"{dataset}.jsonl"
        if not file.exists():
            continue
        predictions = pd.DataFrame(read_jsonl(file))
        if predictions.empty:
            continue
        gold = predictions["gold"].tolist()
        share = sum(g == "harmful" for g in gold) / len(gold)
        name = f"{row.regime} · {row.variant or row.condition}"
        if "p_harmful" in predictions and predictions["p_harmful"].notna().any():
            # Rows without P(harmful) (unparsed answers) are left out, as the record's AUPRC leaves them.
            scored = predictions[predictions["p_harmful"].notna()]
            gold, scores = scored["gold"].tolist(), scored["p_harmful"].astype(float).tolist()
            curve = precision_recall_curve(gold, scores)
            fig.add_trace(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines", line_shape="hv",
                                     name=f"{name} (AUPRC {average_precision(gold, scores):.3f})"))
        else:
            fig.add_trace(go.Scatter(x=[row.recall], y=[row.precision], mode="markers", name=f"{name} (no P(harmful))"))
    if share is not None:
        fig.add_trace(go.Scatter(x=[1.0], y=[share], mode="markers", marker=dict(symbol="x", size=12, color="black"),
                                 name=f"flag everything (precision {share:.3f})"))
    fig.update_layout(title=f"Precision–recall · {dataset_name(dataset)}", xaxis_title="recall (harmful)",
                      yaxis_title="precision (harmful)", xaxis_range=[0, 1.02], yaxis_range=[0, 1.02], height=420)
    return fig
