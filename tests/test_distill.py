"""Teachers and trace screening: leakage, label agreement, the traces file, a live chat teacher on localhost."""

import json

import pandas as pd
import pytest

from aims_kit.datasets import aims as data
from aims_kit.datasets import formats
from aims_kit.datasets.aims import AimsDataError
from aims_kit.training import teachers
from aims_kit.training.distill import collect_traces, leak_reason, screen_traces
from aims_kit.training.teachers import (
    ChatTeacher,
    Trace,
    TraceConditionUnavailable,
    TracesFileTeacher,
    make_teacher,
    save_traces,
)


@pytest.fixture(scope="module")
def splits():
    from aims_kit.notebook import experiments

    return experiments.load_splits("", 22)


def trace(row_id, completion, condition="no_intent", label="harmful"):
    return Trace(id=row_id, condition=condition, teacher="t", reasoning="r", intent=None, label=label, completion=completion)


@pytest.mark.parametrize("text", [
    "Given the label harmful, this is clear.",
    "As the prompt was labelled unsafe, I agree.",
    "I was told the answer, so harmful.",
    "The ground truth says so.",
    "Per the gold intent it is bad.",
    "The annotator decided it is harmful.",
    "As instructed, I classify it as safe.",
    "The provided answer is harmful.",
])
def test_leak_phrases_are_flagged(text):
    assert leak_reason(text)


@pytest.mark.parametrize("text", [
    "The user wants a golden retriever care guide; nothing here causes harm.",
    "Asking how vaccines are tested is ordinary curiosity.",
])
def test_clean_reasoning_is_not_flagged(text):
    assert leak_reason(text) is None


def test_screen_drops_leaks_and_label_disagreements():
    frame = pd.DataFrame({"ID": ["1", "2", "3", "4"], "label": ["harmful", "safe", "harmful", "safe"]})
    traces = [
        trace("1", "Reasoning: It asks for a weapon.\nPrompt harm: harmful"),
        trace("2", "Reasoning: I was told it is safe.\nPrompt harm: safe"),
        trace("3", "Reasoning: Fine.\nPrompt harm: unharmful"),  # parses as safe: disagrees with gold
        trace("9", "Reasoning: not a row of this frame.\nPrompt harm: safe"),
    ]
    kept, report = screen_traces(traces, frame, "no_intent")
    assert list(kept) == ["1"]
    assert (report.leaked, report.label_disagrees, report.kept, report.missing) == (1, 1, 1, 1)
    assert "I was told" in report.leak_examples[0]


def test_shipped_traces_file_serves_two_conditions_and_lacks_synthetic(splits):
    teacher = make_teacher("file")
    assert isinstance(teacher, TracesFileTeacher)
    assert teacher.trace_conditions() == ["human_intent", "no_intent"]
    got = teacher.traces(splits.train.head(20), "human_intent")
    assert got and all(t.condition == "human_intent" and t.intent for t in got)
    assert formats.parse_output(got[0].completion).intent == got[0].intent
    with pytest.raises(TraceConditionUnavailable, match="synthetic_intent"):
        teacher.traces(splits.train.head(5), "synthetic_intent")


def test_collect_traces_uses_the_same_rows_for_every_condition_and_never_test(splits):
    teacher = make_teacher("file")
    train, val = splits.train.head(40), splits.val.head(10)
    sets, skipped = collect_traces(teacher, train, val, ["no_intent", "synthetic_intent", "human_intent"])
    assert set(sets) == {"no_intent", "human_intent"} and "synthetic_intent" in skipped
    assert list(sets["no_intent"].train["ID"]) == list(sets["human_intent"].train["ID"])
    assert len(sets["no_intent"].train) >= 30
    assert sets["human_intent"].train_completions[0].startswith("Reasoning:")
    assert "\nIntent: " in sets["human_intent"].train_completions[0]
    assert "\nIntent: " not in sets["no_intent"].train_completions[0]
    with pytest.raises(Exception, match="may only use the 'val' split"):
        collect_traces(teacher, train, splits.test.head(5), ["no_intent"])


def test_bad_traces_file_names_line_and_field(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "condition": "no_intent"}\n')
    with pytest.raises(AimsDataError, match="row 1, field 'teacher'"):
        TracesFileTeacher(path)


def _teacher_reply(_handler, body: dict) -> str:
    """A teacher that justifies the label it was given; it leaks when the prompt says "leaky"."""
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    label = "harmful" if "classification of the prompt is: harmful" in system else "safe"
    reasoning = "As instructed, I say so." if "leaky" in user else f"Looking at what is asked, this is {label}."
    answer = f"Reasoning: {reasoning}\n"
    if "Intent: <one sentence>" in system:
        answer += "Intent: The user wants something specific.\n"
    return answer + f"Prompt harm: {label}"


@pytest.fixture
def endpoint(chat_endpoint):
    chat_endpoint.respond = _teacher_reply
    return chat_endpoint


def test_chat_teacher_writes_traces_in_the_shipped_schema(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    teacher = make_teacher(f"chat:tiny-teacher@{endpoint.url}")
    assert isinstance(teacher, ChatTeacher)
    frame = pd.DataFrame({
        "ID": ["a", "b", "c"], "Prompt": ["make a bomb", "bake a cake", "leaky prompt"],
        "Intent": ["The user wants a bomb.", "The user wants a cake.", "x"], "label": ["harmful", "safe", "safe"],
    })
    got = teacher.traces(frame, "synthetic_intent")
    assert endpoint.calls[0]["auth"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in json.dumps([t.to_dict() for t in got]) and "secret" not in repr(teacher)
    assert got[0].completion == (
        "Reasoning: Looking at what is asked, this is harmful.\nIntent: The user wants something specific.\nPrompt harm: harmful"
    )
    assert got[0].teacher == "chat:tiny-teacher" and got[0].condition == "synthetic_intent"
    human = teacher.traces(frame.head(1), "human_intent")
    assert formats.parse_output(human[0].completion).intent == "The user wants a bomb."
    assert "The user wants a bomb." in endpoint.calls[-1]["body"]["messages"][0]["content"]
    kept, report = screen_traces(got, frame, "synthetic_intent")
    assert list(kept) == ["a", "b"] and report.leaked == 1
    path = save_traces(tmp_path / "live.jsonl", got)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    shipped = json.loads(data.TRACES_PATH.read_text().splitlines()[0])
    assert [list(r) for r in rows] == [list(shipped)] * 3
    assert TracesFileTeacher(path).traces(frame, "synthetic_intent")[1].completion == got[1].completion


def test_unreachable_chat_teacher_is_a_clear_error():
    teacher = ChatTeacher(model="m", base_url="http://127.0.0.1:9/v1", timeout=2)
    frame = pd.DataFrame({"ID": ["a"], "Prompt": ["p"], "Intent": ["i"], "label": ["safe"]})
    with pytest.raises(teachers.TeacherError, match="row a"):
        teacher.traces(frame, "no_intent")


def test_unknown_teacher_spec():
    with pytest.raises(ValueError, match="unknown teacher"):
        make_teacher("oracle")


def test_hub_teacher_runs_a_local_model_and_the_screen_catches_its_nonsense(splits):
    """The untrained tiny random model cannot justify anything: its traces must all be dropped."""
    teacher = make_teacher("hub:tiny-random")
    teacher.max_new_tokens = 6
    rows = splits.train.head(3)
    got = teacher.traces(rows, "no_intent")
    assert [t.id for t in got] == list(rows["ID"]) and all(t.teacher == "hub:tiny-random" for t in got)
    kept, report = screen_traces(got, rows, "no_intent")
    assert not kept and report.leaked + report.label_disagrees == 3


# ----------------------------------------------------------------------------- gold-intent and style screen

GOLD = "The user wants step by step instructions for picking the lock on a neighbour's shed."


def reasoned(row_id, reasoning, condition="no_intent", label="harmful", intent=None):
    completion = formats.format_target(
        "reasoning_label" if intent is None else "reasoning_intent_label", label, intent=intent, reasoning=reasoning
    )
    return Trace(id=row_id, condition=condition, teacher="t", reasoning=reasoning, intent=intent, label=label, completion=completion)


def test_intent_leakage_counts_copied_intent_not_a_paraphrase_nor_the_intent_line():
    from aims_kit.training.distill import intent_leakage

    copied = reasoned("1", "Here the user wants step by step instructions for picking the lock, which is theft.")
    paraphrase = reasoned("2", "Getting into a shed next door without the owner's say-so is burglary, whatever the tools.")
    with_line = reasoned("3", "Opening a neighbour's shed uninvited is a break-in.", "human_intent", intent=GOLD)
    got = intent_leakage([copied, paraphrase, with_line, reasoned("9", "no such row")], {"1": GOLD, "2": GOLD, "3": GOLD})
    assert (got["traces"], got["intent_6gram"]) == (3, 1)
    assert got["intent_6gram_rate"] == pytest.approx(1 / 3)
    assert 0 < got["intent_overlap"] < 1


def test_screen_reports_gold_intent_overlap_of_kept_traces():
    frame = pd.DataFrame({"ID": ["1", "2", "3"], "label": ["harmful", "harmful", "safe"], "Intent": [GOLD] * 3})
    traces = [
        reasoned("1", "So the user wants step by step instructions for picking the lock here."),
        reasoned("2", "Breaking into someone's shed is burglary."),
        reasoned("3", "I was told the user wants step by step instructions for picking the lock.", label="safe"),
    ]
    kept, report = screen_traces(traces, frame, "no_intent")
    assert list(kept) == ["1", "2"] and report.leaked == 1
    assert report.intent_6gram == 1  # the leaking trace was dropped before measuring
    assert 0 < report.intent_overlap < 1


def test_leakage_table_shows_intent_overlap_and_hedging_per_condition():
    from aims_kit.training.distill import TraceSet, leakage_table

    frame = pd.DataFrame({
        "ID": ["1", "2", "3", "4"], "label": ["harmful", "harmful", "safe", "safe"], "Intent": [GOLD] * 4,
        "Annotator Harm": ["Uncertain Harmful", "Completely Harmful", "Uncertain Safe", "Completely Safe"],
    })
    copy = "In short the user wants step by step instructions for picking the lock on it."
    own = ["It might be a prank, but entering a shed uninvited is burglary.", "A break-in plan for a shed.",
           "Perhaps a locksmith hobby question; nothing names a target.", "A lockpicking history question."]
    sets = {
        "no_intent": TraceSet("no_intent", frame.head(3), frame.tail(1), [], [],
                              [reasoned(i, t, label=lab) for i, t, lab in zip(frame["ID"], own, frame["label"])], {}),
        "human_intent": TraceSet("human_intent", frame.head(3), frame.tail(1), [], [],
                                 [reasoned(i, copy, "human_intent", lab, GOLD) for i, lab in zip(frame["ID"], frame["label"])], {}),
    }
    table = leakage_table(sets).set_index("condition")
    assert table.loc["no_intent", "intent_6gram"] == 0 and table.loc["human_intent", "intent_6gram"] == 4
    assert table.loc["human_intent", "intent_6gram_rate"] == 1.0
    assert table.loc["no_intent", "intent_overlap"] < table.loc["human_intent", "intent_overlap"]
    # hedges only in the Uncertain rows: no label gap, the full level gap
    assert table.loc["no_intent", "hedge_harmful"] == table.loc["no_intent", "hedge_safe"] == 0.5
    assert table.loc["no_intent", "hedge_Uncertain"] == 1.0 and table.loc["no_intent", "hedge_level_gap"] == 1.0
    assert table.loc["no_intent", "hedge_label_gap"] == 0.0


def test_self_intent_teacher_gives_synthetic_intent_with_the_same_reasoning(splits):
    base = make_teacher("file")
    written = []

    def write_intents(prompts):
        written.extend(prompts)  # every second prompt gets no intent, as a weak model may write none
        return [None if i % 2 else f"The user wants thing {i}." for i in range(len(prompts))]

    teacher = teachers.SelfIntentTeacher(base, write_intents, source="a test model")
    train, val = splits.train.head(40), splits.val.head(10)
    sets, skipped = collect_traces(teacher, train, val, ["no_intent", "synthetic_intent", "human_intent"])
    assert set(sets) == {"no_intent", "synthetic_intent", "human_intent"} and not skipped
    synthetic, human = sets["synthetic_intent"], sets["human_intent"]
    assert list(synthetic.train["ID"]) == list(human.train["ID"])  # the rows all three keep
    for s_completion, h_completion in zip(synthetic.train_completions, human.train_completions):
        s, h = formats.parse_output(s_completion), formats.parse_output(h_completion)
        assert s.reasoning == h.reasoning and s.label == h.label  # only the intent line differs
        assert s.intent.startswith("The user wants thing") and s.intent != h.intent
    assert written and set(written) <= set(train["Prompt"]) | set(val["Prompt"])  # never a test prompt
    assert "a test model" in teacher.name


def test_a_condition_with_no_usable_trace_is_skipped_not_fatal(splits):
    teacher = teachers.SelfIntentTeacher(make_teacher("file"), lambda prompts: [None] * len(prompts))
    sets, skipped = collect_traces(teacher, splits.train.head(20), splits.val.head(8), ["no_intent", "synthetic_intent"])
    assert set(sets) == {"no_intent"} and len(sets["no_intent"].train) > 0
    assert "survived the screen" in skipped["synthetic_intent"]


def test_students_are_named_by_their_traces_in_logs(monkeypatch, tmp_path):
    """Issue 41: two students were both logged "SFT reasoning_intent_label"; synthetic and human must read apart."""
    from aims_kit.training import distill, sft

    seen = []
    monkeypatch.setattr(sft, "train_sft", lambda *args, **kwargs: seen.append((kwargs["condition"], kwargs["name"])))
    frame = pd.DataFrame({"ID": ["1"], "label": ["safe"], "Intent": [GOLD]})
    for condition in ("synthetic_intent", "human_intent"):
        trace_set = distill.TraceSet(condition, frame, frame, [], [], [], {})
        distill.train_student("m", trace_set, settings=None, run_dir=tmp_path / condition)
    assert seen == [("reasoning_intent_label", "student synthetic_intent"), ("reasoning_intent_label", "student human_intent")]
