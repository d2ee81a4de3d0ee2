"""Pareto summary with bootstrap error bars, seed grouping and paper reference lines."""

import pandas as pd
import pytest

from aims_kit.notebook import plots


def _record(run, seed, dataset, f1, ms, lr=0.1, half=0.1):
    config = {"regime": "sft", "condition": "intent_label", "model": "m", "seed": seed, "run_id": run, "lr": lr}
    return {"run_id": run, "regime": "sft", "condition": "intent_label", "model": "m", "seed": seed, "dataset": dataset,
            "f1": f1, "f1_ci_low": f1 - half, "f1_ci_high": f1 + half, "ms_per_prompt": ms, "tokens_per_prompt": 5.0,
            "parse_failure_rate": 0.0, "device": "cpu", "config": config}


def test_error_bars_combine_benchmark_intervals_and_seeds_group_on_means():
    records = pd.DataFrame([
        _record("a", 1, "bench:x", 0.6, 10), _record("a", 1, "bench:y", 0.8, 10),
        _record("b", 2, "bench:x", 0.8, 20), _record("b", 2, "bench:y", 0.6, 30),
        _record("c", 1, "bench:x", 0.9, 5, lr=0.5), _record("c", 1, "bench:y", 0.9, 5, lr=0.5),
    ])
    summary = plots.summarise_runs(records).set_index("run_id")
    assert summary.loc["a", "mean_f1"] == pytest.approx(0.7)
    assert summary.loc["a", "f1_err"] == pytest.approx((0.1**2 * 2) ** 0.5 / 2)
    grouped = plots.summarise_runs(records, group_seeds=True)
    assert len(grouped) == 2
    seeds = grouped[grouped["n_seeds"] == 2].iloc[0]
    assert seeds["mean_f1"] == pytest.approx(0.7) and seeds["ms_per_prompt"] == pytest.approx(17.5)
    assert seeds["f1_err"] == pytest.approx(0.0)  # both seeds average 0.7: no spread
    assert grouped["on_frontier"].tolist().count(True) == 1  # c is faster and better than the seed mean


def test_pareto_figure_draws_error_bars_and_labelled_reference_lines():
    records = pd.DataFrame([_record("a", 1, "bench:x", 0.6, 10), _record("b", 1, "bench:x", 0.7, 20, lr=0.2)])
    fig = plots.pareto_figure(plots.summarise_runs(records), references=plots.PAPER_MEAN_F1)
    assert any(trace.error_y and trace.error_y.array is not None for trace in fig.data)
    texts = [a.text for a in fig.layout.annotations]
    assert any("GRPO 0.826" in t and "other hardware" in t for t in texts) and len(texts) == len(plots.PAPER_MEAN_F1)
    assert fig.layout.title.text.startswith("F1 on x")  # the title names what the mean is over
    panels = plots.benchmark_figure(records)
    assert panels.data and panels.layout.title.text == "F1 per dataset"


def test_titles_name_the_datasets_and_mark_fixtures():
    records = pd.DataFrame([_record("a", 1, "bench:xstest", 0.6, 10), _record("a", 1, "fixture:aegis2", 0.7, 10)])
    title = plots.pareto_figure(plots.summarise_runs(records)).layout.title.text
    assert "mean F1 over 2 datasets" in title and "xstest" in title and "aegis2 (fixture, not a benchmark)" in title
    panels = [a.text for a in plots.benchmark_figure(records).layout.annotations]
    assert "fixture:aegis2 (fixture, not a benchmark)" in panels and "xstest" in panels


def _flagged(run, dataset, f1, ms, flag_all, lr):
    return {**_record(run, 1, dataset, f1, ms, lr=lr), "f1_flag_all": flag_all}


def test_flag_all_is_a_point_on_every_pareto_plot_and_in_the_frontier():
    """Issue 41: the encoder at 24 ms (0.587) was marked on the frontier beside flag-all's 0.592 at 0 ms."""
    records = pd.DataFrame([
        _flagged("encoder", "bench:x", 0.587, 24, 0.592, lr=0.1), _flagged("intent", "bench:x", 0.70, 120, 0.592, lr=0.2),
        _flagged("slow", "bench:x", 0.65, 300, 0.592, lr=0.3),
    ])
    summary = plots.summarise_runs(records).set_index("run_id")
    assert summary.attrs["flag_all_f1"] == pytest.approx(0.592)
    assert summary["on_frontier"].to_dict() == {"encoder": False, "intent": True, "slow": False}
    fig = plots.pareto_figure(summary.reset_index())
    cross = [t for t in fig.data if t.name and t.name.startswith("flag everything")]
    assert len(cross) == 1 and list(cross[0].x) == [0.0] and list(cross[0].y) == [pytest.approx(0.592)]
    assert cross[0].mode != "markers"  # the run explorer's click handler only binds run points
    line = next(t for t in fig.data if t.name == "Pareto frontier")
    assert list(line.x) == [0.0, 120] and list(line.y) == [pytest.approx(0.592), pytest.approx(0.70)]
    # seeds grouped: flag-all still competes
    assert not plots.summarise_runs(records, group_seeds=True).set_index("run_id").loc["encoder", "on_frontier"]


def test_records_without_flag_all_keep_the_runs_only_frontier():
    summary = plots.summarise_runs(pd.DataFrame([_record("a", 1, "bench:x", 0.6, 10)]))
    assert summary.attrs["flag_all_f1"] is None and summary["on_frontier"].tolist() == [True]
    assert not [t for t in plots.pareto_figure(summary).data if t.name and t.name.startswith("flag everything")]


def test_the_pareto_plot_takes_the_controlled_timing_where_it_covers_every_run():
    from aims_kit.evaluation import latency

    records = pd.DataFrame([_record("a", 1, "bench:x", 0.6, 10), _record("b", 1, "bench:x", 0.7, 20, lr=0.2)])
    timed = latency.table({"runs": {"a": {"bench:x": {"median": 40.0, "min": 38.0, "max": 44.0, "repeats": [38, 40, 44]}},
                                    "b": {"bench:x": {"median": 15.0, "min": 14.0, "max": 16.0, "repeats": [14, 15, 16]}}}})
    summary = plots.summarise_runs(records, timed=timed).set_index("run_id")
    assert summary.loc["a", "ms_per_prompt"] == 40.0 and summary.loc["b", "ms_per_prompt"] == 15.0
    assert summary.attrs["latency"] == plots.CONTROLLED
    assert summary["on_frontier"].tolist() == [False, True]  # b is now faster and better
    assert "every run timed at one moment" in plots.pareto_figure(summary.reset_index()).layout.xaxis.title.text
    partial = latency.table({"runs": {"a": {"bench:x": {"median": 40.0, "min": 38.0, "max": 44.0, "repeats": [40]}}}})
    kept = plots.summarise_runs(records, timed=partial).set_index("run_id")
    assert kept.loc["a", "ms_per_prompt"] == 10 and kept.attrs["latency"] != plots.CONTROLLED
