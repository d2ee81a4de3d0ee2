"""Continuous batching: prompts joining a batch mid-answer, as finished rows leave, write what each prompt
writes alone, keep each answer's label logits at its own tokens, and never hand attention an all-ones mask."""

import pytest
import torch
from collections import deque
from run_factory import SMOKE_MODEL

from aims_kit.datasets import formats
from aims_kit.inference import generation, kv_cache
from aims_kit.models import loading, precision
from aims_kit.notebook import experiments

STOP = ("exerc exerc",)  # the random model writes it on some prompts: rows then finish at different steps


@pytest.fixture(scope="module")
def fp32_batch():
    """The smoke model in fp32 (bf16 rounding would part a random model's near-tied logits between batch shapes) and
    16 AIMS test prompts encoded for intent → label: (model, tokenizer, ids, end-of-turn ids, pad id)."""
    model, tokenizer = loading.load_model(SMOKE_MODEL)
    precision.pin_precision(model, torch.float32)
    model = precision.prepare_for_inference(model)
    prompts = list(experiments.load_splits("", 22).test["Prompt"][:16])
    ids = generation.encode_inputs(tokenizer, [formats.prompt_messages(p, "intent_label") for p in prompts])
    return model, tokenizer, ids, generation._eos_ids(model, tokenizer), tokenizer.pad_token_id


class _Kept:
    """A reader's stand-in that records each output's kept logits by (output, token index)."""

    def __init__(self):
        self.at: dict[tuple[int, int], torch.Tensor] = {}

    def keep(self, rows, tokens, scores):
        for row, token, step in zip(rows.tolist(), tokens.tolist(), scores.float()):
            self.at[(row, token)] = step.clone()


def _decode(model, tokenizer, ids, eos_ids, pad_id, reader=None, **kwargs):
    with torch.inference_mode():
        return generation.decode_batch(model, tokenizer, ids, pad_id, eos_ids, STOP, 16, reader, **kwargs)


def test_prompts_joining_mid_answer_write_what_each_writes_alone(fp32_batch, monkeypatch):
    model, tokenizer, ids, eos_ids, pad_id = fp32_batch
    joins, steps = [], []
    real_join = generation._Decoding.joined
    monkeypatch.setattr(generation._Decoding, "joined", lambda self, other, room: joins.append(len(other.rows)) or real_join(self, other, room))
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: steps.append(kwargs["attention_mask"]) if kwargs["input_ids"].shape[1] == 1 else None,
        with_kwargs=True)
    batch_reader = _Kept()
    try:
        together = _decode(model, tokenizer, ids, eos_ids, pad_id, batch_reader, batch_size=4)
    finally:
        hook.remove()
    alone, alone_reader = [], _Kept()
    for i, prompt in enumerate(ids):
        single = _Kept()
        alone += _decode(model, tokenizer, [prompt], eos_ids, pad_id, single)
        alone_reader.at.update({(i, token): v for (_, token), v in single.at.items()})
    assert together == alone
    assert len({len(x) for x in together}) > 1, "rows must finish at different steps for prompts to join"
    assert len(joins) >= 3 and max(mask.shape[0] for mask in steps) <= 4  # refilled, never past batch_size rows
    # every step kept each output's label logits at that output's own token index
    assert batch_reader.at.keys() == alone_reader.at.keys() == {(row, t) for row, x in enumerate(together) for t in range(len(x))}
    assert all(torch.allclose(batch_reader.at[key], alone_reader.at[key], atol=1e-4) for key in alone_reader.at)
    # each row keeps a masked pad, so transformers never drops the mask (its maskless path is slow on a CPU)
    assert all(bool((mask == 0).any(dim=1).all()) for mask in steps)


def test_generate_reads_p_harmful_of_every_output_across_refills(fp32_batch):
    """Through ``generate``, outputs come back in input order with the reader's row mapping, whatever joined when."""
    model, tokenizer, ids, *_ = fp32_batch
    conversations = [tokenizer.decode(x, skip_special_tokens=False) for x in ids]
    wide = generation.generate(model, tokenizer, conversations, max_new_tokens=12, batch_size=16, stop_strings=STOP, desc="")
    narrow = generation.generate(model, tokenizer, conversations, max_new_tokens=12, batch_size=3, stop_strings=STOP, desc="")
    assert narrow.texts == wide.texts and narrow.new_tokens == wide.new_tokens
    assert narrow.p_harmful == pytest.approx(wide.p_harmful, abs=1e-4, nan_ok=True) if wide.p_harmful else narrow.p_harmful is None


def test_admission_fills_the_room_by_rows_and_padded_tokens_and_refills_at_a_quarter():
    lengths = [[0] * n for n in (10, 10, 20, 40, 80)]
    waiting = deque(range(5))
    assert generation._admitted(waiting, lengths, 0, 1, 4, 100) == [0, 1, 2]  # a 4th at 40 tokens would pad 160
    assert generation._admitted(waiting, lengths, 3, 1, 4, 100) == []  # 40-token prompts: room for 2 rows
    assert generation._admitted(waiting, lengths, 1, 1, 4, 100) == [3]  # the 80-token one needs a batch of its own
    assert generation._admitted(waiting, lengths, 0, 1, 4, 100) == [4] and not waiting
    # k samples a prompt: rows count k each; beside running rows, a quarter of the room must be free first
    assert generation._admitted(deque(range(5)), lengths, 0, 2, 4, None) == [0, 1, 2, 3]
    assert generation._admitted(deque(range(5)), lengths, 7, 1, 8, None) == []
    assert generation._admitted(deque(range(5)), lengths, 6, 1, 8, None) == [0, 1]
    assert generation._admitted(deque([1, 0]), lengths, 0, 1, 8, None) == [0, 1]  # rows in input order


def test_a_joined_layer_right_aligns_both_sides_over_masked_zeros():
    mine, theirs = kv_cache.ReservedLayer(capacity=8), kv_cache.ReservedLayer(capacity=8)
    a = torch.arange(1, 1 + 2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    b = -torch.arange(1, 1 + 1 * 1 * 4 * 2, dtype=torch.float32).reshape(1, 1, 4, 2)
    mine.update(a, a)
    theirs.update(b, b)
    mine.join(theirs, torch.tensor([1, 2]), width=4, room=2)  # column 0 dropped: padding in every row
    keys = mine.keys
    assert keys.shape == (3, 1, 4, 2) and mine.get_seq_length() == 4
    assert torch.equal(keys[:2, :, 2:], a[:, :, 1:]) and torch.equal(keys[:2, :, :2], torch.zeros(2, 1, 2, 2))
    assert torch.equal(keys[2:], b) and torch.equal(mine.values, keys)
    step = torch.full((3, 1, 1, 2), 7.0)
    keys, _ = mine.update(step, step)  # the next token's column, written in the room kept
    assert keys.shape == (3, 1, 5, 2) and torch.equal(keys[:, :, 4:], step) and mine._key_buffer.shape[2] == 6
