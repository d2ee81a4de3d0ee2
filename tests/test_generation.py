"""Greedy decoding that drops finished rows writes what ``model.generate`` writes, row for row."""

import pytest
from run_factory import SMOKE_MODEL

from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading, precision
from aims_kit.notebook import experiments


@pytest.fixture(scope="module")
def model_and_prompts():
    model, tokenizer = loading.load_model(SMOKE_MODEL)  # some rows end at once (end-of-turn), others run to the budget
    model = precision.prepare_for_inference(model)
    prompts = list(experiments.load_splits("", 22).test["Prompt"][:24])
    return model, tokenizer, [formats.prompt_messages(p, "intent_label") for p in prompts]


def _both(monkeypatch, model, tokenizer, conversations, **kwargs):
    out = {}
    for name, kit in (("generate", False), ("kit", True)):
        monkeypatch.setattr(generation, "plain_greedy", lambda m, kit=kit: kit)
        out[name] = generation.generate(model, tokenizer, conversations, batch_size=8, desc="", **kwargs)
    return out["generate"], out["kit"]


def test_dropping_finished_rows_changes_no_answer(monkeypatch, model_and_prompts):
    """The random model writes ``exerc exerc …`` on some prompts and special tokens on others: with that phrase as
    a stop string, rows finish at different steps and leave the batch while the others decode on."""
    model, tokenizer, conversations = model_and_prompts
    free, _ = _both(monkeypatch, model, tokenizer, conversations, max_new_tokens=16)
    assert any("exerc exerc" in text for text in free.texts)
    hf, kit = _both(monkeypatch, model, tokenizer, conversations, max_new_tokens=16, stop_strings=("exerc exerc",))
    assert kit.texts == hf.texts
    assert len(set(kit.new_tokens)) > 1 and max(kit.new_tokens) == 16  # some rows stopped early, some ran on
    assert all(text == "exerc exerc" for text in kit.texts if "exerc" in text)
    assert sum(kit.new_tokens) < sum(free.new_tokens)


def test_a_model_whose_config_changes_the_argmax_decodes_through_model_generate(model_and_prompts):
    model = model_and_prompts[0]
    assert generation.plain_greedy(model)
    model.generation_config.repetition_penalty = 1.3
    try:
        assert not generation.plain_greedy(model)
    finally:
        model.generation_config.repetition_penalty = None
