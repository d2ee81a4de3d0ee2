import json

import pytest

from aims_kit.core import results


def test_every_run_gets_a_new_folder(tmp_path):
    a = results.create_run(tmp_path, "sft", {"regime": "sft", "model": "m"})
    b = results.create_run(tmp_path, "sft", {"regime": "sft", "model": "m"})
    assert a != b and a.is_dir() and b.is_dir()
    config = results.read_run_config(a)
    assert config["run_id"] == a.name and config["git_commit"] and config["created"]


def test_records_round_trip_and_bad_records_are_skipped_with_a_warning(tmp_path):
    run = results.create_run(tmp_path, "sft", {"regime": "sft", "condition": "label_only", "model": "m", "seed": 3})
    results.write_record(run, "aims_test", {"f1": 0.5, "ms_per_prompt": 2.0}, [{"id": "1", "pred": "safe"}])
    (run / "results" / "broken.json").write_text('{"run_id": "x", "f1"')
    with pytest.warns(UserWarning, match="broken.json"):
        frame = results.load_records(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["run_id"], row["dataset"], row["f1"], row["seed"]) == (run.name, "aims_test", 0.5, 3)
    assert results.read_jsonl(run / "predictions" / "aims_test.jsonl") == [{"id": "1", "pred": "safe"}]


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "r.json"
    results.atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        results.atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_secrets_are_never_written(tmp_path):
    with pytest.raises(ValueError, match="api_key"):
        results.create_run(tmp_path, "dpo", {"judge": {"api_key": "sk-123"}})
    results.create_run(tmp_path, "dpo", {"judge": {"api_key": ""}, "max_new_tokens": 5})


def test_latest_run_matches_config_and_explains_absence(tmp_path):
    first = results.create_run(tmp_path, "sft", {"regime": "sft", "condition": "intent_label"})
    results.create_run(tmp_path, "sft", {"regime": "sft", "condition": "label_only"})
    assert results.latest_run(tmp_path, regime="sft", condition="intent_label") == first
    with pytest.raises(FileNotFoundError, match="regime='dpo'"):
        results.latest_run(tmp_path, regime="dpo")


def test_re_evaluation_keeps_the_earlier_record_in_history(tmp_path):
    run = results.create_run(tmp_path, "sft", {"regime": "sft", "condition": "label_only", "model": "m"})
    results.write_record(run, "bench:xstest", {"f1": 0.25, "ms_per_prompt": 1.0}, [{"id": "1"}])
    results.write_record(run, "bench:xstest", {"f1": 0.75, "ms_per_prompt": 1.0}, [{"id": "2"}])
    frame = results.load_records(tmp_path)
    assert list(frame["f1"]) == [0.75]
    kept = sorted(p.name for p in (run / "history").iterdir())
    assert len(kept) == 2 and kept[0].startswith("predictions-bench:xstest-") and kept[1].startswith("results-bench:xstest-")
    assert json.loads(next((run / "history").glob("results-*.json")).read_text())["f1"] == 0.25


def test_a_run_folder_written_under_umask_0022_is_readable_by_other_accounts(tmp_path):
    """Atomic writes go through 0600 temporary files; what lands must still follow the umask (a class shares folders)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        run = results.create_run(tmp_path / "shared", "sft-intent_label", {"regime": "sft", "condition": "intent_label", "model": "m"})
        results.write_record(run, "aims_test", {"f1": 0.5}, [{"id": "1", "gold": "safe", "pred": "safe"}])
        results.atomic_write_text(tmp_path / "shared" / "report.html", "<p>report</p>")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "shared").rglob("*") if p.is_file()]
    folders = [tmp_path / "shared", *(p for p in (tmp_path / "shared").rglob("*") if p.is_dir())]
    assert len(files) >= 4 and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o755}
