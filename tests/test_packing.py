"""Linear weights kept in oneDNN's layout for inference: the same products, and only where nothing records a gradient."""

import copy

import pytest
import torch

from aims_kit.models import packing, precision

BF16_PACKS = packing.packs_exactly(torch.bfloat16)
needs_packing = pytest.mark.skipif(not BF16_PACKS, reason="this CPU's oneDNN does not give bf16 products exactly packed")


def _layers(dtype=torch.bfloat16, bias=True) -> torch.nn.Sequential:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(48, 96, bias=bias), torch.nn.SiLU(), torch.nn.Linear(96, 40, bias=False)).to(dtype)


@needs_packing
@pytest.mark.parametrize("rows", [1, 8, 37])
def test_packed_layers_give_the_plain_products_bit_for_bit(rows, monkeypatch):
    layers = _layers()
    plain = copy.deepcopy(layers)
    assert packing.pack_linears(layers) == 2
    assert all(type(m) is packing.PackedLinear for m in layers if isinstance(m, torch.nn.Linear))
    calls = []
    real = packing._packed_call
    monkeypatch.setattr(packing, "_packed_call", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(rows, 1, 48).to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(layers(x), plain(x))
    assert len(calls) == 2  # the reordered weights were used, not the plain call


@needs_packing
def test_a_packed_layer_trains_through_the_plain_call_and_follows_a_changed_weight():
    layers = _layers()
    packing.pack_linears(layers)
    x = torch.randn(4, 48).to(torch.bfloat16)
    out = layers(x)  # autograd records: the plain call, which has a gradient
    out.float().sum().backward()
    assert layers[0].weight.grad is not None and layers[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        layers[0].weight.mul_(2)  # the reordered copy is stale now
        plain = torch.nn.functional.linear(x, layers[0].weight, layers[0].bias)
        assert torch.equal(layers[0](x), plain)
        layers.float()  # another dtype: the plain call again
        assert layers(x.float()).dtype == torch.float32


@needs_packing
def test_a_packed_model_can_be_copied_and_its_copy_computes_the_same():
    layers = _layers()
    packing.pack_linears(layers)
    twin = copy.deepcopy(layers)  # an opaque oneDNN tensor cannot be copied: the copy holds none
    assert not any(m in packing._PACKED for m in twin.modules())
    x = torch.randn(5, 48).to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(twin(x), layers(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_whatever_this_cpu_packs_computes_exactly_what_it_did(dtype):
    """fp32 goes to another kernel when packed on some CPUs (last bits differ): the probe keeps such layers plain."""
    layers = _layers(dtype)
    plain = copy.deepcopy(layers)
    assert packing.pack_linears(layers) == (2 if packing.packs_exactly(dtype) else 0)
    with torch.inference_mode():
        for rows in (1, 6, 64):
            x = torch.randn(rows, 1, 48).to(dtype)
            assert torch.equal(layers(x), plain(x))


@needs_packing
def test_a_model_prepared_for_a_bf16_cpu_is_packed_and_writes_the_same_answers(monkeypatch):
    from run_factory import SMOKE_MODEL

    from aims_kit.inference import generation
    from aims_kit.models import loading

    monkeypatch.setattr(precision, "model_precision",
                        lambda model: precision.InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16))
    model, tokenizer = loading.load_model(SMOKE_MODEL)
    prepared = precision.prepare_for_inference(model)
    plain = copy.deepcopy(prepared)
    linears = [m for m in prepared.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m in packing._PACKED for m in linears)
    prompts = [[{"role": "user", "content": text}] for text in ("how do I bake bread", "hi", "write a long poem about rivers and stones")]
    answers = [generation.generate(m, tokenizer, prompts, max_new_tokens=12, batch_size=2) for m in (prepared, plain)]
    assert answers[0].texts == answers[1].texts
    assert answers[0].p_harmful == answers[1].p_harmful
