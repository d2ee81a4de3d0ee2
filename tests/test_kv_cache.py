"""The reserved KV cache holds what transformers' DynamicCache holds, so decoding writes the same answers."""

import pytest
import torch
from transformers import DynamicCache

from aims_kit.inference import generation, kv_cache


def _decode(monkeypatch, intent_batch, cache_for, **kwargs):
    model, tokenizer, ids, eos_ids, pad_id = intent_batch
    monkeypatch.setattr(generation, "ReservedCache", cache_for)
    return generation.decode_batch(model, tokenizer, ids, pad_id, eos_ids, generation.LABEL_STOPS, 24, **kwargs)


@pytest.mark.parametrize("room", [None, 3])
def test_greedy_answers_match_the_dynamic_cache(monkeypatch, intent_batch, room):
    """Reserved for the whole answer (``None``), or too small so that it must grow mid-answer (3)."""
    dynamic = _decode(monkeypatch, intent_batch, lambda capacity: DynamicCache())
    reserved = _decode(monkeypatch, intent_batch, lambda capacity: kv_cache.ReservedCache(capacity if room is None else room))
    assert reserved == dynamic
    assert max(len(x) for x in reserved) > 3


def test_samples_match_the_dynamic_cache_at_a_fixed_seed(monkeypatch, intent_batch):
    torch.manual_seed(3)
    dynamic = _decode(monkeypatch, intent_batch, lambda capacity: DynamicCache(), k=3, temperature=1.3)
    torch.manual_seed(3)
    reserved = _decode(monkeypatch, intent_batch, kv_cache.ReservedCache, k=3, temperature=1.3)
    assert reserved == dynamic


def test_a_layer_keeps_the_filled_part_across_repeats_selects_and_growth():
    layer = kv_cache.ReservedLayer(capacity=4)
    first = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, values = layer.update(first, -first)
    assert torch.equal(keys, first) and torch.equal(values, -first) and layer.get_seq_length() == 3
    layer.batch_repeat_interleave(2)
    assert torch.equal(layer.keys, first.repeat_interleave(2, dim=0))
    layer.batch_select_indices(torch.tensor([3, 0]))
    more = torch.ones(2, 1, 2, 2)  # 5 positions in a room of 4: the buffer grows
    keys, _ = layer.update(more, more)
    expected = torch.cat([first[[1, 0]], more], dim=2)
    assert torch.equal(keys, expected) and layer.get_seq_length() == 5
