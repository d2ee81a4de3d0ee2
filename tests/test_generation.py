"""Greedy decoding that drops finished rows and runs the prompts' shared prefix once writes what
``model.generate`` writes, row for row; label scoring reads what each prompt alone gives."""

import pytest
import torch
from run_factory import SMOKE_MODEL

from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading, precision
from aims_kit.notebook import experiments


@pytest.fixture(scope="module")
def model_and_prompts():
    model, tokenizer = loading.load_model(SMOKE_MODEL)  # some rows end at once (end-of-turn), others run to the budget
    # fp32 whatever this CPU has: in bf16 the random model's near-tied logits part between batches of
    # other shapes (padding-shaped rounding), so its greedy texts could not be compared token for token
    precision.pin_precision(model, torch.float32)
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


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert generation.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert generation.shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert generation.shared_prefix_length([[7, 2], [1, 2]]) == 0


def test_the_shared_prefix_runs_once_and_label_scores_match_each_prompt_alone(monkeypatch, model_and_prompts):
    model, tokenizer, _ = model_and_prompts
    conversations = [formats.prompt_messages(p, "label_only") for p in experiments.load_splits("", 22).test["Prompt"][:6]]
    encoded = generation.chat_inputs(tokenizer, conversations)
    shared = generation.shared_prefix_length(encoded)
    assert shared >= generation.MIN_SHARED_PREFIX  # the system turn and the instruction
    forward, shapes = model.forward, []

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    batched = generation.score_conversations(model, tokenizer, conversations, batch_size=6)
    assert shapes == [(1, shared), (6, max(map(len, encoded)) - shared)]
    alone = [generation.score_conversations(model, tokenizer, [c], batch_size=1).p_harmful[0] for c in conversations]
    # Batched and one-prompt passes add in another order: equal to fp32 rounding in fp32, to a
    # few bf16 steps where the device policy computes in bf16 (eps 2^-8).
    atol = 1e-5 if precision.model_precision(model).compute_dtype in ("float32", "as loaded") else 4 * 2.0 ** -8
    torch.testing.assert_close(torch.tensor(batched.p_harmful), torch.tensor(alone), rtol=0, atol=atol)
