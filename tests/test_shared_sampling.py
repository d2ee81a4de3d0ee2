"""Sampling k answers per prompt from one prompt pass (DPO pair mining, GRPO rollouts) draws what
``model.generate(num_return_sequences=k)`` draws: at a fixed seed the same tokens, while no row has finished."""

import torch

from aims_kit.inference import generation

K, STEPS, T = 3, 8, 1.3


def _rows_seen(model):
    """Rows of every prompt-length forward pass (more than one new token), recorded by a hook."""
    seen = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[0]) if kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True)
    return seen, handle


def _first_finish(outputs, eos_ids):
    """The first step at which any output wrote end-of-turn (the budget when none did)."""
    return min([seq.index(t) for seq in outputs for t in eos_ids if t in seq] or [STEPS])


def test_same_seed_same_tokens_as_model_generate_until_a_row_finishes(intent_batch):
    model, tokenizer, ids, eos_ids, pad_id = intent_batch
    torch.manual_seed(7)
    hf = generation._generate_batch(model, ids, pad_id, eos_ids, None, STEPS, True, T, K)
    torch.manual_seed(7)
    kit = generation.decode_batch(model, tokenizer, ids, pad_id, eos_ids, (), STEPS, k=K, temperature=T,
                                  top_k=generation.sampling_top_k(model))
    assert len(kit) == len(hf) == len(ids) * K
    upto = min(_first_finish(hf, eos_ids), _first_finish(kit, eos_ids))
    assert upto >= 3, "the test needs a few steps before any row finishes"
    assert [seq[:upto + 1] for seq in kit] == [seq[:upto + 1] for seq in hf]
    # k samples of a prompt differ (it is sampling), and another seed draws other tokens
    assert any(len({tuple(kit[i * K + j]) for j in range(K)}) > 1 for i in range(len(ids)))
    torch.manual_seed(8)
    other = generation.decode_batch(model, tokenizer, ids, pad_id, eos_ids, (), STEPS, k=K, temperature=T, top_k=0)
    assert other != kit


def test_the_prompt_pass_runs_once_per_prompt_not_once_per_sample(intent_batch):
    model, tokenizer, ids, eos_ids, pad_id = intent_batch
    seen, handle = _rows_seen(model)
    try:
        generation.decode_batch(model, tokenizer, ids, pad_id, eos_ids, (), 2, k=K, temperature=T, top_k=0)
        kit, seen[:] = list(seen), []
        generation._generate_batch(model, ids, pad_id, eos_ids, None, 2, True, T, K)
        hf = list(seen)
    finally:
        handle.remove()
    assert sum(kit) == 1 + len(ids)  # the shared prefix once, then each prompt's own tokens once
    assert sum(hf) == len(ids) * K


def test_generate_samples_through_the_shared_pass_and_keeps_the_output_order(intent_batch, monkeypatch):
    model, tokenizer, ids, eos_ids, pad_id = intent_batch
    conversations = [tokenizer.decode(x) for x in ids]
    calls = []
    real = generation.decode_batch
    monkeypatch.setattr(generation, "decode_batch", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    out = generation.generate(model, tokenizer, conversations, max_new_tokens=4, do_sample=True, temperature=T,
                              num_return_sequences=K, desc="")
    assert len(out.texts) == len(ids) * K and calls and all(c["k"] == K and c["temperature"] == T for c in calls)


def test_a_sampler_the_kit_does_not_apply_sends_sampling_to_model_generate(intent_batch):
    model = intent_batch[0]
    config = model.generation_config
    assert generation.sampling_top_k(model) == 0  # unset: model.generate(top_k=None) keeps every token
    try:
        config.top_k = 20
        assert generation.sampling_top_k(model) == 20
        config.top_p = 0.9
        assert generation.sampling_top_k(model) is None
    finally:
        config.top_k, config.top_p = None, None
