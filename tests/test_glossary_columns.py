"""Issue 41: every column a notebook or report table shows is defined in docs/glossary.md.

The tables are built from a synthetic run folder whose records carry every field a real record
has, so a column added to any of these table functions without a glossary entry fails here.
"""

import json
import re

import pandas as pd
import pytest
from test_claims import _preds, _run

from aims_kit.core import paths, results
from aims_kit.datasets.benchmarks import Found
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.evaluation import claims, latency
from aims_kit.notebook import plots, report
from aims_kit.scoring import stats

GLOSSARY = paths.REPO_DIR / "docs" / "glossary.md"

#: Fields a real record carries beyond the test factory's (scoring/evaluate.py, evaluation/runs.py).
EXTRA_FIELDS = {
    "f1_ci_low": 0.5, "f1_ci_high": 0.7, "intent_repeat_rate": 0.1, "intent_similarity": 0.6, "latency_p50_ms": 90.0,
    "latency_p95_ms": 120.0, "checkpoint_step": 100, "label_method": "generated", "p_harmful_missing": 0,
    "n_unknown_skipped": 0, "device": "cpu", "seed": 22,
}


def _glossary_text() -> str:
    return GLOSSARY.read_text(encoding="utf-8")


def defined_columns(text: str) -> set[str]:
    """Column names the glossary defines: every name in backticks."""
    return set(re.findall(r"`([^`]+)`", text))


@pytest.fixture()
def folder(tmp_path):
    out = tmp_path / "run"
    for regime, condition, variant, correct, ms in (("sft", "intent_label", "", 100, 300.0), ("sft", "label_only", "", 80, 30.0)):
        run = _run(out, regime, condition, variant, datasets={"aims_test": _preds(correct), "bench:xstest": _preds(correct - 10)}, ms=ms)
        for file in (run / "results").glob("*.json"):
            record = json.loads(file.read_text())
            file.write_text(json.dumps({**record, **EXTRA_FIELDS}))
        for file in (run / "predictions").glob("*.jsonl"):
            rows = [json.loads(line) for line in file.read_text().splitlines()]
            file.write_text("".join(json.dumps({**row, "type": f"t{i % 2}"}) + "\n" for i, row in enumerate(rows)))
    return out


def table_columns(out) -> dict[str, list[str]]:
    """Every table function a notebook or the report shows, with the columns it returns here."""
    records = results.load_records(out)
    datasets = set(records["dataset"]) | {claims.EXTERNAL_MEAN, "xstest"}  # scoreboard columns are datasets
    entries = claims.scoreboard(records)
    runs = results.find_runs(out)
    found = [Found(name="xstest", kind="local", source="test", frame=pd.DataFrame({"x": [1]}), note="")]
    tables = {
        "report.results_table / experiments.comparison_table": report.results_table(records),
        "report.summary_frame": report.summary_frame(records),
        "benchmarks.benchmark_table": benchmark_eval.benchmark_table(records),
        "benchmarks.sft_comparison": benchmark_eval.sft_comparison(out, records, n_boot=50),
        "stats.aggregate_seeds": stats.aggregate_seeds(records),
        "plots.summarise_runs": plots.summarise_runs(records, ["aims_test"]),
        "claims.claim_table": claims.claim_table(out, 1),
        "claims.power_table": claims.power_table(entries),
        "claims.scoreboard_frame": claims.scoreboard_frame(entries),
        "benchmarks.slice_table": benchmark_eval.slice_table(runs, found, "xstest", "type").reset_index(),
        "latency.table": latency.table(None),
    }
    # an unnamed index level (``level_1``) is pandas' name for the slice table's row number, not a column
    return {name: [str(c) for c in table.columns if str(c) not in datasets and not str(c).startswith("level_")]
            for name, table in tables.items()}


def test_every_table_column_is_in_the_glossary(folder):
    defined = defined_columns(_glossary_text())
    missing = {name: [c for c in columns if c not in defined] for name, columns in table_columns(folder).items()}
    assert not {k: v for k, v in missing.items() if v}, f"columns without a glossary entry (add `name` to docs/glossary.md): {missing}"


def test_the_glossary_says_what_the_latency_and_token_columns_measure():
    text = _glossary_text()
    for column in ("ms_per_prompt", "latency_p50_ms", "latency_p95_ms", "tokens_per_prompt", "label_method"):
        assert f"`{column}`" in text
    assert "scored (no decoding)" in text  # what a label-only run shows instead of 0.000 tokens


def test_a_run_scored_in_one_forward_pass_shows_no_decoding_instead_of_zero_tokens(folder):
    records = results.load_records(folder)
    scored = records["condition"] == "label_only"
    records.loc[scored, "label_method"] = "scored"
    records.loc[scored, "tokens_per_prompt"] = 0.0
    table = report.results_table(records)
    shown = table.set_index(["condition", "dataset"])["tokens_per_prompt"]
    assert shown.loc[("label_only", "aims_test")] == report.SCORED_TOKENS
    assert shown.loc[("intent_label", "aims_test")] == 5.0
    bench = benchmark_eval.benchmark_table(records).set_index("condition")["tokens_per_prompt"]
    assert bench.loc["label_only"] == report.SCORED_TOKENS and bench.loc["intent_label"] == 5.0


def test_every_table_column_has_its_one_line_note_and_the_glossary_names_each_note(folder):
    """The line under a notebook table (:mod:`aims_kit.notebook.columns`) and the glossary define the same columns."""
    from aims_kit.notebook import columns

    shown = {c for cols in table_columns(folder).values() for c in cols}
    assert not shown - set(columns.NOTES), f"columns without a one-line note in aims_kit/notebook/columns.py: {shown - set(columns.NOTES)}"
    assert not set(columns.NOTES) - defined_columns(_glossary_text()), "notes for columns the glossary does not define"


def test_a_column_is_defined_under_the_first_table_that_shows_it_only(monkeypatch):
    from aims_kit.notebook import columns

    monkeypatch.setattr(columns, "_SHOWN", set())
    first = columns.explained(pd.DataFrame({"f1": [0.5], "xstest": ["<b>x</b>"]}))
    assert first.defined == ["f1"] and "f1: harmful-class F1" in first.line()
    assert "&lt;b&gt;x&lt;/b&gt;" in first._repr_html_() and "<b>x</b>" not in first._repr_html_()  # cells escaped
    again = columns.explained(pd.DataFrame({"f1": [0.6], "recall": [0.4]}))
    assert again.defined == ["recall"]
    assert columns.explained(None) is None
