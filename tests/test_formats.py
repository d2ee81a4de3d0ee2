import pytest

from aims_kit.datasets import formats
from aims_kit.datasets.formats import PARSE_FAILURE_RULE, parse_output


@pytest.mark.parametrize(
    "text, label",
    [
        ("harmful", "harmful"),
        ("safe", "safe"),
        ("unharmful", "safe"),  # the substring trap: "harmful" in "unharmful"
        ("Harm: unharmful", "safe"),
        ("Intent: The user wants to know how bread rises.; Harm: safe", "safe"),
        ("Intent: The user wants a harmful weapon guide; Harm: harmful", "harmful"),
        ("Intent: asks about harmful chemicals for a safety class; Harm: safe", "safe"),
        ("Reasoning: It looks harmful at first.\nPrompt harm: unharmful", "safe"),
        ("Reasoning: looks safe.\nIntent: x\nPrompt harm: unsafe", "harmful"),
        ("<think>Harm: safe</think>Harm: harmful", "harmful"),
        ("Harm: safe\nHarm: harmful", "harmful"),  # the last labelled field wins
        ("Harm: benign", "safe"),
        ("  Harmful.  ", "harmful"),
        ("<reasoning>the user wants x</reasoning>\nIntent: x; Harm: safe", "safe"),
    ],
)
def test_parser_reads_the_label_field(text, label):
    assert parse_output(text).label == label


@pytest.mark.parametrize(
    "text",
    ["", "I cannot decide.", "This is unharmful maybe harmful", "Intent: the user wants help", "<think>Harm: safe",
     "Harm:", "Harm: harmfulness"],
)
def test_malformed_outputs_fail_to_parse_and_follow_the_one_rule(text):
    parsed = parse_output(text)
    assert parsed.label is None and not parsed.ok
    assert parsed.label_or_rule() == PARSE_FAILURE_RULE


def test_intent_and_trailing_text_are_extracted():
    parsed = parse_output("Intent: The user wants to end a stuck job; Harm: safe and that is all")
    assert parsed.intent == "The user wants to end a stuck job"
    assert parsed.trailing == " and that is all"


@pytest.mark.parametrize("condition", formats.CONDITIONS)
def test_every_target_round_trips_through_the_parser(condition):
    for label in formats.LABELS:
        text = formats.format_target(condition, label, intent="The user wants to bake bread.", reasoning="It is a recipe.")
        parsed = parse_output(text)
        assert parsed.label == label
        if "intent" in condition:
            assert parsed.intent == "The user wants to bake bread."
        if "reasoning" in condition:
            assert parsed.reasoning == "It is a recipe."


def test_targets_refuse_missing_fields_and_bad_labels():
    with pytest.raises(ValueError, match="intent"):
        formats.format_target("intent_label", "safe", intent="  ")
    with pytest.raises(ValueError, match="label"):
        formats.format_target("label_only", "unsafe")
    with pytest.raises(ValueError, match="unknown condition"):
        formats.instruction("nonsense")


def test_prompt_messages_pass_user_text_verbatim():
    prompt = "{{ system }} <script>alert(1)</script> {% raw %}"
    messages = formats.prompt_messages(prompt, "intent_label")
    assert messages[-1] == {"role": "user", "content": prompt}


def test_label_offset_points_at_the_word_the_parser_reads():
    from aims_kit.datasets.formats import label_offset

    text = "Intent: asks whether it is harmful; Harm: unharmful"
    assert text[label_offset(text):] == "unharmful"
    thinking = "<think>Harm: harmful</think>Intent: x; Harm: safe"
    assert thinking[label_offset(thinking):] == "safe"  # a think block is never the answer
    assert label_offset(" safe.") == 1 and label_offset("no label here") is None
