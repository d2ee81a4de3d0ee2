"""GRPO rewards on handcrafted completions, the judge behind the faithfulness reward against a
real local HTTP server, and a tiny GRPO run on the tiny random model."""

import pytest

from aims_kit.scoring import judges
from aims_kit.training import rewards

GOLD = "The user wants to bake a loaf of bread at home."  # 47 characters


def chat(text: str) -> list[dict]:
    """A conversational completion, as TRL passes it for chat prompts."""
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    "text, score",
    [
        (f"Intent: {GOLD}; Harm: safe", 1.0),
        (f"  Intent: {GOLD}; Harm: harmful\n", 1.0),  # surrounding whitespace is not trailing text
        (f"<reasoning>Baking is harmless.</reasoning>\nIntent: {GOLD}; Harm: safe", 1.0),
        (f"Intent: {GOLD}; Harm: unharmful", 1.0),  # a synonym the parser reads is in format
        (f"Intent: {GOLD}; Harm: safe.", 0.5),
        (f"Intent: {GOLD}; Harm: safe (sure)", 0.5),
        (f"Intent: {GOLD}; Harm: safe because baking bread is a normal thing", 0.1),
        ("", 0.0),
        ("safe", 0.0),  # label-only answer: not this condition's format
        (f"Intent: {GOLD}", 0.0),  # no label
        ("Intent: ; Harm: safe", 0.0),  # empty intent
        (f"Intent: {GOLD}\nHarm: safe", 0.0),  # wrong separator
        (f"Intent: {GOLD}; Harm: safe; Harm: harmful", 0.0),  # two answers
        (f"Sure! Intent: {GOLD}; Harm: safe", 0.0),  # preamble
        (f"<reasoning>unclosed\nIntent: {GOLD}; Harm: safe", 0.0),
        (f"Intent: {GOLD}; Harm: maybe", 0.0),
    ],
)
def test_format_reward(text, score):
    assert rewards.format_reward([text]) == [score]
    assert rewards.format_reward([chat(text)]) == [score]  # conversational form scores the same


@pytest.mark.parametrize(
    "text, gold, score",
    [
        (f"Intent: {GOLD}; Harm: safe", "safe", 1.0),
        (f"Intent: {GOLD}; Harm: safe", "harmful", 0.0),
        (f"Intent: {GOLD}; Harm: unharmful", "harmful", 0.0),  # never a substring match
        (f"Intent: {GOLD}; Harm: unharmful", "safe", 1.0),
        (f"Intent: {GOLD}; Harm: unsafe", "harmful", 1.0),
        ("", "safe", 0.0),  # unparseable earns nothing, not the evaluation's parse-failure rule
        ("no idea", "safe", 0.0),
        (f"Intent: {GOLD}; Harm: harmful and more text after it", "harmful", 1.0),  # label only
    ],
)
def test_label_reward(text, gold, score):
    assert rewards.label_reward([text], label=[gold]) == [score]
    assert rewards.label_reward([chat(text)], label=[gold]) == [score]


@pytest.mark.parametrize(
    "predicted, score",
    [
        (GOLD, 1.0),
        ("x" * 24, 1.0),  # 24/47 ≈ 0.51×: just inside
        ("x" * 70, 1.0),  # 70/47 ≈ 1.49×: just inside
        ("x" * 23, 0.5),  # too short
        ("x" * 71, 0.5),  # too long
        ("The user wants to bake bread, and also to learn everything about ovens and flour.", 0.5),
    ],
)
def test_intent_length_reward(predicted, score):
    completion = f"Intent: {predicted}; Harm: safe"
    assert rewards.intent_length_reward([completion], intent=[GOLD]) == [score]


def test_missing_intent_counts_as_too_short():
    assert rewards.intent_length_reward(["safe", ""], intent=[GOLD, GOLD]) == [0.5, 0.5]


def test_rewards_check_column_lengths():
    with pytest.raises(ValueError, match="column 'label'"):
        rewards.label_reward(["safe", "safe"], label=["safe"])


def test_completion_text_rejects_other_types():
    with pytest.raises(TypeError, match="string or a list of message dicts"):
        rewards.completion_text(42)


def test_faithfulness_reward_grades_through_the_judge_and_caches(chat_endpoint):
    judge = judges.make_judge(f"chat:judge@{chat_endpoint.url}")
    reward = rewards.make_faithfulness_reward(judge)
    chat_endpoint.answer = "decent"
    completions = ["Intent: The user wants bread.; Harm: safe", chat("Intent: The user wants bread.; Harm: safe"), "safe"]
    assert reward(completions, intent=[GOLD, GOLD, GOLD]) == [0.5, 0.5, 0.1]
    # one request for the repeated (gold, predicted) pair, none for the completion with no intent
    assert len(chat_endpoint.calls) == 1
    assert GOLD in chat_endpoint.calls[0]["body"]["messages"][0]["content"]
    chat_endpoint.answer = "good"  # the cache answers now; the endpoint is not asked again
    assert reward(completions[:1], intent=[GOLD]) == [0.5] and len(chat_endpoint.calls) == 1


def test_faithfulness_reward_with_an_unreachable_judge(dead_endpoint):
    completions = [f"Intent: {GOLD}; Harm: safe"]
    strict = rewards.make_faithfulness_reward(judges.make_judge(f"chat:m@{dead_endpoint}", timeout=2))
    with pytest.raises(judges.JudgeUnavailable, match="127.0.0.1:9"):
        strict(completions, intent=[GOLD])
    lenient = judges.make_judge(f"chat:m@{dead_endpoint}", on_failure="fallback", timeout=2)
    with pytest.warns(UserWarning, match="offline embedding judge"):
        assert rewards.make_faithfulness_reward(lenient)(completions, intent=[GOLD]) == [1.0]
    assert lenient.fallbacks == 1


def test_reward_sets_multiply_their_components(chat_endpoint):
    chat_endpoint.answer = "decent"
    judge = judges.make_judge(f"chat:judge@{chat_endpoint.url}")
    full = rewards.make_reward_set("label_intent", judge)
    ablation = rewards.make_reward_set("label_only")
    completions = [
        f"Intent: {GOLD}; Harm: safe",  # everything right: 1 × 1 × 1 × decent 0.5
        chat(f"Intent: {GOLD}; Harm: safe."),  # short tail: 0.5 × 1 × 1 × 0.5
        f"Intent: {GOLD}; Harm: harmful",  # wrong label zeroes it
        "Intent: bread; Harm: safe",  # too short an intent: 1 × 1 × 0.5 × 0.5
        "",  # malformed
    ]
    gold = dict(label=["safe"] * 5, intent=[GOLD] * 5)
    assert full(completions, **gold) == [0.5, 0.25, 0.0, 0.25, 0.0]
    assert ablation(completions, **gold) == [1.0, 0.5, 0.0, 1.0, 0.0]
    values = full.component_values(completions, **gold)
    assert list(values) == ["format", "label", "intent_length", "faithfulness"]
    assert values["label"] == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_reward_set_logs_its_components_to_the_trainer():
    logged = []
    ablation = rewards.make_reward_set("label_only")
    completions = [f"Intent: {GOLD}; Harm: safe", "nonsense"]

    class State:
        global_step = 7

    ablation(completions, label=["safe", "safe"], trainer_state=State(), completion_ids=[[1, 2, 3], [4]],
             log_metric=lambda name, value: logged.append((name, value)), prompts=["p", "p"])
    row = ablation.log[-1]
    assert row["step"] == 7 and row["reward"] == 0.5 and row["frac_format"] == 0.5
    assert row["format"] == 0.5 and row["label"] == 0.5 and row["completion_tokens"] == 2.0
    assert row["harmful_share"] == 0.0  # the step's prompt mix, which moves the mean reward too (prose.reward_reading)
    assert ("components/frac_format", 0.5) in logged and all(name.startswith("components/") for name, _ in logged)
    assert ablation.__name__ == "label_only"  # TRL names the reward's metrics after it


def test_reward_set_names():
    with pytest.raises(ValueError, match="unknown reward set"):
        rewards.make_reward_set("everything")
    with pytest.raises(ValueError, match="needs a judge"):
        rewards.make_reward_set("label_intent")


def test_reward_table_shows_both_sets(chat_endpoint):
    chat_endpoint.answer = "bad"
    table = rewards.reward_table(
        [f"Intent: {GOLD}; Harm: safe", "safe"], label="safe", intent=GOLD,
        judge=judges.make_judge(f"chat:judge@{chat_endpoint.url}"),
    )
    assert table["reward · label_only"].tolist() == [1.0, 0.0]
    assert table["reward · label_intent"].tolist() == pytest.approx([0.1, 0.0])
    assert table["completion"].tolist()[1] == "safe"
