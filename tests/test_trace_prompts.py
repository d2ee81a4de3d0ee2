"""Distillation traces are keyed by row ID *and* prompt (issue #37, 5): the teaching sample's
reasoning is never attached to another dataset's prompt that happens to share its ID."""

import json
from collections import namedtuple

import pandas as pd
import pytest

from aims_kit.core.params import DistillParams
from aims_kit.datasets import aims as data
from aims_kit.datasets.aims import AimsDataError, prompt_sha256
from aims_kit.training import teachers
from aims_kit.training.distill import collect_traces
from aims_kit.training.teachers import (
    SelfIntentTeacher,
    Trace,
    TraceConditionUnavailable,
    TracesFileTeacher,
    make_teacher,
    save_traces,
)


@pytest.fixture(scope="module")
def splits():
    return data.split_aims(data.load_aims(None), seed=22)


def other_prompts(frame: pd.DataFrame) -> pd.DataFrame:
    """The same IDs with other prompts, as hub rows whose IDs coincide with the sample's."""
    return frame.assign(Prompt="A different dataset's prompt: " + frame["Prompt"].str[::-1])


def test_the_hash_normalises_line_endings_and_surrounding_space_only():
    base = prompt_sha256("Line one\nline two")
    assert len(base) == 64 and base == prompt_sha256("  Line one\r\nline two \n") == prompt_sha256("Line one\rline two")
    assert base != prompt_sha256("line one\nline two") and base != prompt_sha256("Line one\n line two")


def test_shipped_traces_match_the_shipped_sample_on_every_row():
    sample = data.load_aims(None)
    hashes = dict(zip(sample["ID"], sample["Prompt"].map(prompt_sha256)))
    lines = [json.loads(line) for line in data.TRACES_PATH.read_text(encoding="utf-8").splitlines()]
    assert lines and all(list(t)[-1] == "prompt_sha256" for t in lines)
    assert all(t["prompt_sha256"] == hashes[str(t["id"])] for t in lines)
    teacher = make_teacher("file")
    for condition in teacher.trace_conditions():
        assert len(teacher.traces(sample, condition)) == len(sample)


def test_other_prompts_with_the_same_ids_make_the_condition_unavailable(splits):
    teacher = make_teacher("file")
    frame = other_prompts(splits.train.head(25))
    with pytest.raises(TraceConditionUnavailable) as err:
        teacher.traces(frame, "no_intent")
    reason = str(err.value)
    assert reason.startswith("reference_traces.jsonl was written for the kit's teaching sample, not these prompts")
    assert "0 of 25 rows match by id and prompt" in reason and "25 share an id" in reason
    assert "teacher=chat:MODEL@URL or hub:MODEL" in reason


def test_ids_the_file_does_not_have_are_unavailable_too(splits):
    frame = splits.train.head(5).assign(ID=lambda f: "hub-" + f["ID"])
    with pytest.raises(TraceConditionUnavailable, match="0 of 5 rows match by id and prompt\\)"):
        make_teacher("file").traces(frame, "human_intent")
    assert make_teacher("file").traces(frame.head(0), "human_intent") == []


def test_collect_traces_reports_every_condition_skipped_with_the_reason(splits):
    teacher = make_teacher("file")
    train, val = other_prompts(splits.train.head(30)), other_prompts(splits.val.head(8))
    sets, skipped = collect_traces(teacher, train, val, ["no_intent", "human_intent"])
    assert sets == {} and set(skipped) == {"no_intent", "human_intent"}
    assert all("written for the kit's teaching sample, not these prompts" in r for r in skipped.values())


def test_the_notebook_path_reports_the_conditions_skipped_on_other_data(splits):
    """04_distill's trace cell (experiments.distill_traces) on hub-like rows with teacher=file: nothing to train, each reason given."""
    from aims_kit.notebook import experiments

    hub_like = data.Splits(other_prompts(splits.train), other_prompts(splits.val), other_prompts(splits.test), from_source=True)
    trace_sets, skipped, name = experiments.distill_traces(DistillParams(distill_max_rows=40), hub_like)
    assert trace_sets == {} and name == "file:reference_traces.jsonl"
    assert set(skipped) == {"no_intent", "synthetic_intent", "human_intent"}
    assert "not these prompts" in skipped["no_intent"] and "not these prompts" in skipped["human_intent"]


def test_one_tampered_row_is_an_error_naming_file_id_and_field(splits):
    frame = splits.train.head(12).copy()
    frame.loc[4, "Prompt"] = frame.loc[4, "Prompt"] + " Also, one more thing."
    with pytest.raises(AimsDataError) as err:
        make_teacher("file").traces(frame, "human_intent")
    text = str(err.value)
    assert str(data.TRACES_PATH) in text and "field 'prompt_sha256'" in text
    assert f"row id {frame.loc[4, 'ID']!r}" in text and "1 of 12 rows" in text
    assert err.value.field == "prompt_sha256" and err.value.row is not None


def test_a_traces_file_without_the_hash_is_an_error_naming_file_line_and_field(tmp_path):
    lines = data.TRACES_PATH.read_text(encoding="utf-8").splitlines()[:3]
    old = [json.loads(line) for line in lines]
    del old[1]["prompt_sha256"]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in old), encoding="utf-8")
    with pytest.raises(AimsDataError, match=r"old\.jsonl, row 2, field 'prompt_sha256': missing trace field"):
        TracesFileTeacher(path)
    old[1]["prompt_sha256"] = "not-a-hash"
    path.write_text("".join(json.dumps(t) + "\n" for t in old), encoding="utf-8")
    with pytest.raises(AimsDataError, match=r"row 2, field 'prompt_sha256': not a lowercase sha256"):
        TracesFileTeacher(path)


def test_every_teacher_writes_the_hash_and_save_traces_keeps_it(tmp_path):
    Row = namedtuple("Row", "ID Prompt Intent label")
    row = Row("7", "  How do vaccines get tested?\n", "The user wants to know how vaccines are tested.", "safe")
    trace = teachers.trace_from_answer(row, "Reasoning: A question about trials.\nPrompt harm: safe", "no_intent", "chat:m")
    assert trace.prompt_sha256 == prompt_sha256("How do vaccines get tested?")
    frame = pd.DataFrame([row._asdict()])
    path = save_traces(tmp_path / "live.jsonl", [trace])
    assert json.loads(path.read_text())["prompt_sha256"] == trace.prompt_sha256
    assert TracesFileTeacher(path).traces(frame, "no_intent") == [trace]
    with pytest.raises(ValueError, match="row id '7' has no prompt_sha256"):
        save_traces(tmp_path / "bad.jsonl", [Trace("7", "no_intent", "t", "r", None, "safe", "Reasoning: r\nPrompt harm: safe")])


def test_self_intent_teacher_keeps_the_hash_of_its_donor_trace(splits):
    base = make_teacher("file")
    frame = splits.train.head(6)
    teacher = SelfIntentTeacher(base, lambda prompts: ["The user wants something." for _ in prompts], source="test")
    got = teacher.traces(frame, "synthetic_intent")
    hashes = dict(zip(frame["ID"], frame["Prompt"].map(prompt_sha256)))
    assert len(got) == 6 and all(t.prompt_sha256 == hashes[t.id] for t in got)
    assert [t.prompt_sha256 for t in got] == [t.prompt_sha256 for t in base.traces(frame, "human_intent")]
    with pytest.raises(TraceConditionUnavailable, match="not these prompts"):
        teacher.traces(other_prompts(frame), "synthetic_intent")
