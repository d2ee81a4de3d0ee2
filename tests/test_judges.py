"""The judge interface, its cache and failure policy — against a real HTTP server on localhost."""

import pytest

from aims_kit.scoring import judges


def test_chat_judge_grades_caches_and_keeps_the_key_out_of_its_state(chat_endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    judge = judges.make_judge(f"chat:judge-model@{chat_endpoint.url}")
    chat_endpoint.answer = "Decent."
    pairs = [("The user wants a cake recipe.", "The user wants to bake."), ("a", "b"), ("The user wants a cake recipe.", "The user wants to bake.")]
    assert judge.grade(pairs) == ["decent", "decent", "decent"]
    assert len(chat_endpoint.calls) == 2  # the repeated pair was asked once
    assert judge.grade(pairs[:1]) == ["decent"] and len(chat_endpoint.calls) == 2  # cached
    assert chat_endpoint.calls[0]["auth"] == "Bearer sk-test-123"
    assert chat_endpoint.calls[0]["body"]["model"] == "judge-model"
    assert "sk-test" not in repr(judge)
    assert judge.scores([("x", "y")]) == [0.5]


def test_unparseable_answer_is_a_clear_failure(chat_endpoint):
    chat_endpoint.answer = "I would rather not say"
    with pytest.raises(judges.JudgeUnavailable, match="not good/decent/bad"):
        judges.make_judge(f"chat:m@{chat_endpoint.url}").grade([("a", "b")])


def test_unreachable_endpoint_raises_or_falls_back(dead_endpoint):
    dead = dead_endpoint
    with pytest.raises(judges.JudgeUnavailable, match="127.0.0.1:9"):
        judges.make_judge(f"chat:m@{dead}", timeout=2).grade([("a", "b")])
    fallback = judges.make_judge(f"chat:m@{dead}", on_failure="fallback", timeout=2)
    with pytest.warns(UserWarning, match="offline embedding judge"):
        grades = fallback.grade([("The user wants to bake bread.", "The user wants to bake bread.")])
    assert grades == ["good"] and fallback.fallbacks == 1


def test_embedding_judge_orders_paraphrase_above_unrelated():
    judge = judges.EmbeddingJudge()
    same, other = judge.similarity([
        ("The user wants to steal a car.", "The user wants to take someone else's vehicle without permission."),
        ("The user wants to steal a car.", "The user wants advice on baking sourdough bread."),
    ])
    assert same > judge.decent_threshold > other
    assert judge.grade([("The user wants to steal a car.", "The user wants to steal a car.")]) == ["good"]


def test_thresholds_match_their_calibration():
    measured = judges.calibrate_thresholds()
    judge = judges.EmbeddingJudge()
    assert judge.good_threshold == pytest.approx(measured["good_threshold"], abs=0.03)
    assert judge.decent_threshold == pytest.approx(measured["decent_threshold"], abs=0.03)
    assert measured["paraphrase_median"] > measured["related_median"]


@pytest.mark.parametrize("text, grade", [("good", "good"), ("Grade: BAD", "bad"), ("decent match", "decent"), ("excellent", None)])
def test_parse_grade(text, grade):
    assert judges.parse_grade(text) == grade


def test_unknown_judge_spec():
    with pytest.raises(ValueError, match="unknown judge"):
        judges.make_judge("magic")


def test_intent_quality_counts_loops_and_scores_similarity_to_the_human_intent():
    from aims_kit.scoring.evaluate import intent_quality

    gold = ["The user wants to kill a stuck Python process.", "The user wants to hurt their neighbour."]
    good = intent_quality(["The user wants to stop a frozen Python program.", "The user wants to harm a neighbour."], gold)
    looping = intent_quality(["The user wants a of a of a of a", None], gold)
    assert good["intent_repeat_rate"] == 0.0 and looping["intent_repeat_rate"] == 1.0  # over written intents only
    assert good["intent_similarity"] > 0.6 > looping["intent_similarity"]  # a missing intent scores as empty
    assert set(intent_quality(["An intent."])) == {"intent_repeat_rate"}  # no gold intents: no similarity
    assert intent_quality([None, None], gold) == {}  # a run without intents reports none


def test_calibration_reads_train_paraphrases_and_val_intents_never_the_test_split():
    from aims_kit.notebook import experiments

    seen: list[str] = []

    class Recording(judges.EmbeddingJudge):
        def similarity(self, pairs):
            seen.extend(text for pair in pairs for text in pair)
            return [0.5] * len(pairs)

    measured = judges.calibrate_thresholds(Recording())
    splits = experiments.load_splits("", 22)
    assert measured["paraphrase_pairs"] > 0 and measured["related_pairs"] > 0
    assert set(seen) <= set(splits.train["Intent"]) | set(splits.val["Intent"])


def test_embedding_judge_uses_the_shipped_sentence_transformers_config_in_batches():
    judge = judges.EmbeddingJudge(batch_size=2)
    vectors = judge.embed(["one intent", "another intent", "a third one"])
    assert judge._load().max_seq_length == 256  # the folder's sentence_bert_config, not a hand-set cut
    assert vectors.shape[0] == 3 and vectors.norm(dim=-1).sub(1).abs().max() < 1e-5
    head = "The user wants " + "a very long and detailed explanation " * 60  # well past 256 tokens
    same_head, = judge.similarity([(head + "about baking.", head + "about hacking a bank.")])
    assert same_head > 0.999  # only the first 256 tokens are read
