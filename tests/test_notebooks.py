"""Every notebook runs headlessly through papermill on the smoke profile, in order, like `aims_kit run`."""

import json
import re
import subprocess

import nbformat

from aims_kit.core import paths, results
from aims_kit.datasets import benchmarks
from aims_kit.notebook import runner


def test_every_notebook_executes(smoke_session):
    executed = sorted(p.name for p in (smoke_session / "notebooks").glob("*.ipynb"))
    assert executed == [p.name for p in runner.notebooks()]
    for path in (smoke_session / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, path.name


def test_smoke_run_writes_records_and_report(smoke_session):
    records = results.load_records(smoke_session)
    sft = records[records["regime"] == "sft"]
    assert set(sft["condition"]) == {"label_only", "intent_label"}
    assert "aims_test" in set(sft["dataset"])
    for _, row in sft.iterrows():
        assert 0 <= row["f1"] <= 1 and row["ms_per_prompt"] > 0 and row["parse_rule"]
        assert row["config"]["profile"] == "smoke"
    report = (smoke_session / "report.html").read_text()
    assert "Plotly.newPlot" in report
    assert not re.search(r"<script[^>]+src=[\"']https?://", report), "the report must open offline"
    assert json.loads((smoke_session / "parameters.json").read_text())["profile"] == "smoke"


def test_smoke_benchmarks_are_fixtures_with_intervals(smoke_session):
    records = results.load_records(smoke_session)
    bench = records[records["dataset"].str.startswith(("bench:", "fixture:"))]
    assert set(bench["dataset"]) == {f"fixture:{name}" for name in benchmarks.REGISTRY}  # smoke: fixtures only
    assert {"sft", "encoder"} <= set(bench["regime"])
    assert (bench["f1_ci_low"] <= bench["f1"]).all() and (bench["f1"] <= bench["f1_ci_high"]).all()
    assert bench["latency_p50_ms"].notna().all()


def test_smoke_sft_logs_a_validation_f1_curve_and_the_run_writes_claims(smoke_session):
    records = results.load_records(smoke_session)
    for run_dir in records.loc[records["regime"] == "sft", "run_dir"].unique():
        log = results.read_json(f"{run_dir}/train_log.json")
        curve = [entry for entry in log if "val_f1" in entry]
        assert curve and all(0 <= entry["val_f1"] <= 1 for entry in curve)
    payload = json.loads((smoke_session / "claims.json").read_text())
    assert [claim["number"] for claim in payload["claims"]] == [1, 2, 3, 4, 5]
    external = [e for e in payload["entries"] if e["dataset"] == "external mean"]
    assert external and all(e["verdict"] == "not tested" for e in external)  # fixtures are never a benchmark
    assert any("fixture" in e["note"] for e in external)
    assert "Claims scoreboard" in (smoke_session / "report.html").read_text()


def test_smoke_distillation_trains_a_student_per_available_condition(smoke_session):
    records = results.load_records(smoke_session)
    distill = records[(records["regime"] == "distill") & (records["dataset"] == "aims_test")]
    assert sorted(c["variant"] for c in distill["config"]) == ["human_intent", "no_intent"]
    assert set(distill["condition"]) == {"reasoning_label", "reasoning_intent_label"}
    for run_dir in distill["run_dir"]:
        traces = results.read_jsonl(f"{run_dir}/traces.jsonl")
        assert traces and list(traces[0]) == ["id", "condition", "teacher", "reasoning", "intent", "label", "completion", "prompt_sha256"]


def test_smoke_released_checkpoints_are_stand_ins_scored_in_their_own_folder(smoke_session):
    released = smoke_session / "released"
    records = results.load_records(released)
    roles = {c["role"]: c for c in records["config"]}
    assert sorted(roles) == ["distill", "dpo", "grpo", "sft"] and set(records["regime"]) == {"zero_shot"}
    assert {role: c["prompt_format"] for role, c in roles.items()} == {
        "sft": "raw", "dpo": "raw", "distill": "paper-student", "grpo": "chat-system"}
    assert set(records["prompt_format"]) == {"raw", "paper-student", "chat-system"}  # every record names its format
    own = json.loads((released / "claims.json").read_text())["entries"]
    dpo = next(e for e in own if e["claim"] == 2 and e["dataset"] == "aims_test")
    assert dpo["verdict"] != "not tested" and dpo["run_a"].startswith("zero_shot-dpo") and dpo["run_b"].startswith("zero_shot-sft")
    main = json.loads((smoke_session / "claims.json").read_text())["entries"]
    assert not any("zero_shot" in (e["run_a"] + e["run_b"]) for e in main)  # the trained runs' scoreboard is their own


def test_notebooks_declare_parsable_parameters():
    import papermill as pm

    for path in runner.notebooks():
        declared = pm.inspect_notebook(str(path))
        nb = nbformat.read(path, as_version=4)
        source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [line.split("=")[0].strip() for line in source.splitlines() if "=" in line and not line.startswith("#")]
        assert sorted(declared) == sorted(assigned), f"{path.name}: papermill could not parse some parameter lines"
        assert "out_dir" in declared


def test_notebooks_are_committed_clean():
    for path in runner.notebooks():
        # nbformat 4.5 cells carry an id; one without makes papermill print a validator warning into the
        # run's log (read as raw JSON: nbformat.read fills missing ids in silently)
        raw = json.loads(path.read_text())
        assert all(cell.get("id") for cell in raw["cells"]), f"{path.name}: a cell has no id"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


def test_outputs_folder_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "outputs/x.json"], cwd=paths.REPO_DIR, capture_output=True)
    assert ignored.returncode == 0


def test_notebooks_open_with_what_they_teach_and_end_with_what_to_try():
    for path in runner.notebooks():
        cells = nbformat.read(path, as_version=4).cells
        first, last = cells[0], cells[-1]
        assert first.cell_type == "markdown" and "What this teaches" in first.source and "What it needs" in first.source, path.name
        assert last.cell_type == "markdown" and "What to try next" in last.source, path.name


def test_executed_playground_stays_small(smoke_session):
    """The FigureWidget's saved state (the plotly.js bundle, ~5 MB) is dropped from executed copies."""
    assert (smoke_session / "notebooks" / "08_playground.ipynb").stat().st_size < 1_000_000


def test_slim_widget_state_drops_only_heavy_models():
    import nbformat

    from aims_kit.notebook.runner import WIDGET_STATE_LIMIT, slim_widget_state

    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "light": {"model_name": "TextModel", "state": {"value": "a prompt"}},
        "heavy": {"model_name": "FigureModel", "state": {"_esm": "x" * (WIDGET_STATE_LIMIT + 1)}},
    }}}
    assert slim_widget_state(nb) == 1
    assert list(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]) == ["light"]


def test_saved_streams_keep_each_progress_bar_once_and_no_ansi_codes():
    import nbformat

    from aims_kit.notebook.runner import MAX_STREAM_OUTPUTS, tidy_streams

    nb = nbformat.v4.new_notebook()
    refreshes = [nbformat.v4.new_output("stream", name="stderr", text=f"\rSFT: {i}/40 step") for i in range(40)]
    coloured = nbformat.v4.new_output("stream", name="stdout", text="\x1b[31mMISSING\x1b[0m keys: none\n")
    nb.cells.append(nbformat.v4.new_code_cell("train()", outputs=[*refreshes, nbformat.v4.new_output("stream", name="stderr", text="\n"), coloured]))
    tidy_streams(nb)
    outputs = nb.cells[0].outputs
    assert len(outputs) <= MAX_STREAM_OUTPUTS
    assert outputs[0].text == "SFT: 39/40 step\n"  # the bar as it ended
    assert outputs[-1].text == "MISSING keys: none\n"  # colour codes gone, the words kept
