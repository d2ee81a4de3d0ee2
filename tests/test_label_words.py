"""P(harmful) reads a label the way the parser does: every synonym, case and spacing it accepts,
and it never contradicts the hard label (issue #38, point 5)."""

import pytest
import torch
from run_factory import SMOKE_MODEL

from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading
from aims_kit.notebook import experiments
from aims_kit.scoring import evaluate as evaluation
from aims_kit.scoring import metrics


@pytest.fixture(scope="module")
def tiny():
    return loading.load_model(SMOKE_MODEL)


class _FirstCharTokenizer:
    """One token per character (its code point): every word's first token is its first character."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def _first(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def test_every_accepted_label_word_starts_with_a_token_of_its_class(tiny):
    _, tokenizer = tiny
    harmful, safe = formats.label_word_ids(tokenizer)
    assert harmful and safe and not set(harmful) & set(safe)
    assert harmful == sorted(harmful) and safe == sorted(safe)
    sides = {"harmful": set(harmful), "safe": set(safe)}
    claimed = {label: {_first(tokenizer, form) for word, owner in formats._SYNONYMS.items() if owner == label
                       for form in formats.label_word_forms(word)} for label in formats.LABELS}
    for word, label in formats._SYNONYMS.items():
        other = "safe" if label == "harmful" else "harmful"
        firsts = [_first(tokenizer, form) for form in formats.label_word_forms(word)]
        if word == label:  # the canonical words: every form counts for its class
            assert set(firsts) <= sides[label], word
        else:  # a synonym: each form counts for its class unless the other class starts a word with it too
            assert all(t in sides[label] or t in claimed[other] for t in firsts), word
            assert any(t in sides[label] for t in firsts), word
    # the forms a model writes, spelled out: the parser's synonyms are in the sets
    for text, label in [(" unsafe", "harmful"), ("unsafe", "harmful"), (" benign", "safe"), ("benign", "safe"),
                        (" unharmful", "safe"), (" not harmful", "safe"), ("Not harmful", "safe"), (" harmless", "safe"),
                        ("Safe", "safe"), (" SAFE", "safe"), ("Harmful", "harmful"), (" HARMFUL", "harmful")]:
        assert _first(tokenizer, text) in sides[label], text


def test_label_word_forms_cover_the_cases_and_spacing_a_model_writes():
    assert formats.label_word_forms("not harmful") == (
        "not harmful", " not harmful", "Not harmful", " Not harmful", "NOT HARMFUL", " NOT HARMFUL")


def test_ambiguous_first_tokens_count_for_neither_class_unless_they_start_a_canonical_word():
    harmful, safe = formats.label_word_ids(_FirstCharTokenizer())
    # "h" starts harmful and harmless: the canonical word keeps it. "u" starts unsafe and unharmful:
    # dropped. " " starts every spaced form of both canonical words: dropped.
    assert [chr(i) for i in harmful] == ["H", "h"]
    assert [chr(i) for i in safe] == ["B", "N", "S", "b", "n", "s"]


def test_a_tokenizer_that_cannot_tell_the_labels_apart_gets_no_ids_and_no_scores():
    class OneToken:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7, 8]}

    assert formats.label_word_ids(OneToken()) == ([], [])
    assert not generation.LabelProbability(OneToken()).usable
    with pytest.raises(ValueError, match="same token"):
        generation.score_conversations(None, OneToken(), [])


def test_p_is_put_on_the_written_labels_side_when_the_other_classes_forms_outweigh_it(tiny):
    _, tokenizer = tiny
    reader = generation.LabelProbability(tokenizer)
    for answer, written, expected_side in [("harmful", "harmful", "harmful"), ("benign", "safe", "safe")]:
        used = tokenizer(answer, add_special_tokens=False)["input_ids"]
        reader.start(len(used))
        logits = torch.zeros(1, len(reader.ids))
        # the written word's class gets one form far above the rest, the other class many forms just below it
        mine = [i for i, t in enumerate(reader.ids) if t == used[0]]
        others = range(reader.n_harmful, len(reader.ids)) if written == "harmful" else range(reader.n_harmful)
        logits[0, mine] = 3.0
        logits[0, list(others)] = 2.9
        reader.kept[0] = logits.expand(len(used), -1).clone()  # every step
        raw = float(generation.harmful_share(logits[0], reader.n_harmful))
        assert (raw >= 0.5) != (written == "harmful")  # the masses alone disagree with the written word
        p = reader.read(0, used)
        assert (p >= 0.5) == (expected_side == "harmful")
        assert p == (0.5 if written == "harmful" else generation.BELOW_HALF)
    assert not reader.kept  # each output is read once, and its logits freed
    reader.kept[0] = torch.zeros(8, len(reader.ids))
    assert reader.read(0, tokenizer("no label here", add_special_tokens=False)["input_ids"]) is None


class _Scripted:
    """A forward hook that makes the random tiny model answer ``Intent: a; Harm: <label word>`` and stop.

    The intent part and end-of-turn are forced; at the label's step the model's own logits choose
    among the label words that are one token with a leading space, as a trained model would: each
    word's logit less its mean over the batch's prompts (the random model's per-token offset),
    amplified, so which word wins, and by how much, varies from prompt to prompt. Steps are counted from the attention mask's growth, so the
    hook works for the kit's greedy decoding and ``model.generate`` alike.
    """

    def __init__(self, tokenizer):
        self.script = tokenizer("Intent: a; Harm:", add_special_tokens=False)["input_ids"]
        words = [form for word in formats._SYNONYMS for form in formats.label_word_forms(word) if form.startswith(" ")]
        self.words = [w for w in words if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
        self.word_ids = torch.tensor([_first(tokenizer, w) for w in self.words])
        self.eos = tokenizer.eos_token_id
        self.base = 0

    def __call__(self, module, args, kwargs, output):
        input_ids, attention = kwargs["input_ids"], kwargs.get("attention_mask")
        if attention is None:  # the shared prefix's pass: its logits are not used
            return output
        if input_ids.shape[1] > 1:
            self.base = attention.shape[1]
        step = attention.shape[1] - self.base
        logits = output.logits[:, -1, :]
        if step < len(self.script):
            logits[:, self.script[step]] += 1e4
        elif step == len(self.script):
            chosen = logits[:, self.word_ids]
            logits[:, self.word_ids] = 20 + 40 * (chosen - chosen.mean(0, keepdim=True))
        else:
            logits[:, self.eos] += 1e4
        return output


@pytest.mark.parametrize("decoder", ["kit", "generate"])
def test_p_harmful_of_generated_answers_agrees_with_the_parsed_label(tiny, monkeypatch, decoder):
    model, tokenizer = tiny
    monkeypatch.setattr(generation, "plain_greedy", lambda m: decoder == "kit")
    scripted = _Scripted(tokenizer)
    assert {formats._SYNONYMS[w.strip().lower()] for w in scripted.words} == {"harmful", "safe"}
    prompts = list(experiments.load_splits("", 22).test["Prompt"][:24])
    conversations = [formats.prompt_messages(p, "intent_label") for p in prompts]
    handle = model.register_forward_hook(scripted, with_kwargs=True)
    try:
        gen = generation.generate(model, tokenizer, conversations, max_new_tokens=len(scripted.script) + 3,
                                  batch_size=8, stop_strings=generation.LABEL_STOPS, desc="")
    finally:
        handle.remove()
    labels = [formats.parse_output(text).label for text in gen.texts]
    assert None not in labels and set(labels) == {"harmful", "safe"}, gen.texts
    assert any(text.split("Harm:")[-1].strip() not in formats.LABELS for text in gen.texts)  # a synonym or another case
    assert all(p is not None and 0.0 <= p <= 1.0 for p in gen.p_harmful)
    assert all((p >= 0.5) == (label == "harmful") for p, label in zip(gen.p_harmful, labels))
    assert len({round(p, 6) for p in gen.p_harmful}) > 2  # a real score per answer


def test_label_scoring_reads_every_label_words_mass_and_its_label_is_p_at_least_half(tiny):
    model, tokenizer = tiny
    prompts = list(experiments.load_splits("", 22).test["Prompt"][:6])
    conversations = [formats.prompt_messages(p, "label_only") for p in prompts]
    scored = generation.score_conversations(model, tokenizer, conversations, batch_size=6)
    harmful, safe = formats.label_word_ids(tokenizer)
    with torch.inference_mode():
        for conversation, p, text in zip(conversations, scored.p_harmful, scored.texts):
            ids = generation.chat_inputs(tokenizer, [conversation])[0]
            probs = model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)
            expected = float(probs[harmful].sum() / (probs[harmful].sum() + probs[safe].sum()))
            assert p == pytest.approx(expected, abs=1e-3)
            assert text == ("harmful" if p >= 0.5 else "safe")


def test_unparsed_rows_have_no_p_and_are_left_out_of_auroc_and_auprc():
    labels = ["harmful", None, "safe", "harmful", "safe"]
    p = evaluation.parsed_only([0.9, 0.99, 0.3, 0.4, 0.6], labels)
    assert p == [0.9, None, 0.3, 0.5, generation.BELOW_HALF]  # the last two put on their label's side
    gold = ["harmful", "safe", "safe", "harmful", "safe"]
    scores = evaluation.label_metrics(gold, [lab or formats.PARSE_FAILURE_RULE for lab in labels],
                                      [lab is not None for lab in labels], p, n_boot=0)
    assert scores["p_harmful_missing"] == 1 and scores["parse_failure_rate"] == 0.2
    kept = [0, 2, 3, 4]
    assert scores["auprc"] == metrics.average_precision([gold[i] for i in kept], [p[i] for i in kept])
    assert scores["auroc"] == metrics.auroc([gold[i] for i in kept], [p[i] for i in kept])
