"""Claim 5 reads one controlled measurement where a folder has it, and a folder can move every headline to the external mean."""

import json

import pandas as pd
import pytest

from aims_kit.core import results
from aims_kit.core.params import RunParams
from aims_kit.evaluation import claims, latency
from test_claims import _entry, _id, _preds, _run


def _timed(rows: dict[str, float], dataset="bench:xstest", spread=0.1) -> pd.DataFrame:
    return latency.table({"runs": {run: {dataset: {"median": ms, "min": ms * (1 - spread), "max": ms * (1 + spread),
                                                   "repeats": [ms] * 3}} for run, ms in rows.items()}})


def _frontier_folder(tmp_path):
    out = tmp_path / "pareto"
    intent = _run(out, "sft", "intent_label", datasets={"bench:xstest": _preds(100)}, ms=300, created="2026-01-01T00:00:01")
    # by its own record this label-only run is slower than the intent run (a busy moment), so it is no rival
    label = _run(out, "sft", "label_only", datasets={"bench:xstest": _preds(110)}, ms=900, created="2026-01-01T00:00:02")
    return out, _id(intent), _id(label)


def test_records_alone_decide_who_is_as_fast_and_the_note_says_so(tmp_path):
    out, intent, label = _frontier_folder(tmp_path)
    entry = _entry(claims.scoreboard(results.load_records(out)), 5, "bench:xstest")
    rivals = [r["run"] for r in entry.details["intent_runs"][intent]["rivals"]]
    assert rivals == [claims.FLAG_ALL] and "each run's own evaluation" in entry.note
    assert entry.details["latency_source"].startswith("each run's own")


def test_the_controlled_measurement_makes_the_faster_label_run_a_rival_that_beats_the_intent_run(tmp_path):
    out, intent, label = _frontier_folder(tmp_path)
    timed = _timed({intent: 120.0, label: 30.0})
    entry = _entry(claims.scoreboard(results.load_records(out), timed=timed), 5, "bench:xstest")
    own = entry.details["intent_runs"][intent]
    assert own["ms_per_prompt"] == 120.0
    assert [r["run"] for r in own["rivals"]] == [label, claims.FLAG_ALL]
    assert entry.verdict == claims.REVERSED and entry.run_b == label
    assert "one controlled measurement" in entry.note and "widest spread 20%" in entry.note


def test_a_measurement_missing_a_run_falls_back_to_the_records(tmp_path):
    out, intent, label = _frontier_folder(tmp_path)
    entry = _entry(claims.scoreboard(results.load_records(out), timed=_timed({intent: 120.0})), 5, "bench:xstest")
    assert "each run's own evaluation" in entry.note


def test_write_claims_reads_the_folders_latency_file(tmp_path):
    out, intent, label = _frontier_folder(tmp_path)
    payload = {"runs": {intent: {"bench:xstest": {"median": 120.0, "min": 110.0, "max": 130.0, "repeats": [110.0, 120.0, 130.0]}},
                        label: {"bench:xstest": {"median": 30.0, "min": 29.0, "max": 31.0, "repeats": [29.0, 30.0, 31.0]}}}}
    results.atomic_write_json(out / latency.LATENCY_FILE, payload)
    _, entries = claims.write_claims(out)
    assert _entry(entries, 5, "bench:xstest").verdict == claims.REVERSED


def test_latency_needs_a_positive_number_of_passes_and_prompts(tmp_path):
    with pytest.raises(ValueError, match="repeats"):
        latency.measure(tmp_path, ["aims_test"], None, prompts=4, repeats=0)


def test_the_study_headline_is_the_external_mean_for_every_claim_and_survives_a_rewrite(tmp_path):
    out = tmp_path / "study"
    data = {"aims_test": _preds(60), "bench:xstest": _preds(100)}
    _run(out, "sft", "intent_label", datasets=data, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"aims_test": _preds(100), "bench:xstest": _preds(60)}, created="2026-01-01T00:00:02")
    path, entries = claims.write_claims(out, claims.EXTERNAL_MEAN)
    heads = [claims.headline(entries, c) for c in claims.CLAIMS]
    assert {h.dataset for h in heads} == {claims.EXTERNAL_MEAN}
    assert not _entry(entries, 1, "aims_test").headline and _entry(entries, 1, "aims_test").holm_p is None
    assert claims.headline(entries, claims.CLAIMS[0]).holm_p is not None
    assert json.loads(path.read_text())["headline_dataset"] == claims.EXTERNAL_MEAN
    # the report rewrites claims.json later without naming the headline: the choice made in advance stays
    _, again = claims.write_claims(out)
    assert claims.headline(again, claims.CLAIMS[0]).dataset == claims.EXTERNAL_MEAN
    assert "[headline: external mean]" in claims.scoreboard_frame(again).iloc[0]["claim"]
    with pytest.raises(ValueError, match="headline_dataset"):
        claims.write_claims(out, "bench:xstest")


def test_each_pass_reports_the_records_own_throughput_figure(monkeypatch):
    """A pass's ms/prompt is the classifier's clock around generation (as in every record), after an untimed warm-up."""
    from aims_kit.evaluation import benchmarks

    calls = []
    figures = iter([999.0, 40.0, 42.0, 41.0])  # the first is the warm-up on four prompts
    monkeypatch.setattr(benchmarks, "score_loaded",
                        lambda run, frame, *a, **kw: calls.append(len(frame)) or ({"ms_per_prompt": next(figures)}, []))
    frame = pd.DataFrame({"ID": [str(i) for i in range(10)], "Prompt": ["p"] * 10, "label": ["safe"] * 10})
    latency.warm_up(object(), frame, None)
    assert latency.time_run(object(), frame, None, 3) == [40.0, 42.0, 41.0]
    assert calls == [4, 10, 10, 10]


def test_each_run_is_warmed_up_once_whatever_the_datasets(monkeypatch, tmp_path):
    """The warm-up pays for a loaded model's first call; each dataset after it is timed without another."""
    from types import SimpleNamespace

    from aims_kit.evaluation import benchmarks, runs

    passes = []
    monkeypatch.setattr(benchmarks, "evaluated_runs", lambda out: [tmp_path / "a", tmp_path / "b"])
    monkeypatch.setattr(latency.results, "read_run_config", lambda run_dir: {"regime": "sft"})
    monkeypatch.setattr(runs, "load_run", lambda run_dir: SimpleNamespace(name=run_dir.name, model=None))
    frame = pd.DataFrame({"ID": [str(i) for i in range(6)], "Prompt": ["p"] * 6, "label": ["safe"] * 6})
    monkeypatch.setattr(latency, "common_prompts", lambda run_dirs, dataset, n, seed: frame.assign(dataset=dataset))
    monkeypatch.setattr(benchmarks, "score_loaded", lambda run, f, *a, **kw: passes.append(
        (run.name, f["dataset"].iloc[0], len(f))) or ({"ms_per_prompt": 10.0}, []))
    latency.measure(tmp_path, ["aims_test", "bench:xstest"], RunParams(seed=1), prompts=6, repeats=2, log=lambda _: None)
    for name in ("a", "b"):
        mine = [(dataset, n) for run, dataset, n in passes if run == name]
        assert mine == [("aims_test", 4), ("aims_test", 6), ("aims_test", 6), ("bench:xstest", 6), ("bench:xstest", 6)]
