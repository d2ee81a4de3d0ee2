"""Frozen weights cast to bf16 once for a training: the same losses and gradients as autocast's casts at every call."""

import pytest
import torch

from aims_kit.models import frozen_casts, packing, precision


def _lora_model():
    from peft import get_peft_model
    from run_factory import SMOKE_MODEL

    from aims_kit.models import loading, lora

    base, _ = loading.load_model(SMOKE_MODEL)
    torch.manual_seed(5)
    return get_peft_model(base.float(), lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())


def _step(model, ids):
    """One bf16-autocast forward and backward: the loss and every gradient LoRA takes."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_a_training_step_gives_autocasts_loss_and_gradients_bit_for_bit_and_casts_each_frozen_weight_once(monkeypatch):
    model = _lora_model()
    ids = torch.arange(3, 35).reshape(2, 16)
    plain_loss, plain_grads = _step(model, ids)
    casts = []
    real_cast = torch.Tensor.to
    with frozen_casts.frozen_weights_cast_once(model):
        swapped = [m for m in model.modules() if type(m) is frozen_casts.CastOnceLinear]
        trainable = [m for m in model.modules() if type(m) is torch.nn.Linear]  # LoRA's own: cast by autocast, through autograd
        assert swapped and trainable and all(m.weight.requires_grad for m in trainable)
        monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: casts.append(self.shape) or real_cast(self, *a, **k))
        for _ in range(3):
            loss, grads = _step(model, ids)
            assert torch.equal(loss, plain_loss)
            assert grads.keys() == plain_grads.keys()
            assert all(torch.equal(grads[name], plain_grads[name]) for name in grads)
        monkeypatch.undo()
        frozen = [m.weight for m in swapped]
        assert not any(w.requires_grad for w in frozen)  # LoRA's base layers and the unadapted linears
    weight_shapes = {tuple(w.shape) for w in frozen}
    assert 0 < sum(tuple(shape) in weight_shapes for shape in casts) <= len(frozen)  # once each, in the first step only
    assert all(type(m) is torch.nn.Linear for m in swapped)  # plain again after the training
    assert frozen_casts._CASTS is None


def test_a_kept_cast_follows_an_in_place_change_and_trainable_weights_are_cast_through_autograd():
    weight = torch.nn.Parameter(torch.randn(8, 4), requires_grad=False)
    layer = torch.nn.Linear(4, 8, bias=False)
    layer.weight = weight
    x = torch.randn(3, 4)
    with frozen_casts.frozen_weights_cast_once(layer), torch.autocast("cpu", dtype=torch.bfloat16):
        first = frozen_casts.cast_once(weight, torch.bfloat16)
        assert frozen_casts.cast_once(weight, torch.bfloat16) is first  # kept
        before = layer(x)
        with torch.no_grad():
            weight.mul_(3)  # the version counter moves: the kept cast is stale
        assert frozen_casts.cast_once(weight, torch.bfloat16) is not first
        assert torch.equal(layer(x), torch.nn.functional.linear(x, weight.to(torch.bfloat16)))
        assert not torch.equal(layer(x), before)
        trainable = torch.nn.Parameter(torch.randn(8, 4))
        cast = frozen_casts.cast_once(trainable, torch.bfloat16)
        assert cast.grad_fn is not None and frozen_casts.cast_once(trainable, torch.bfloat16) is not cast


def test_a_cast_kept_while_decoding_under_inference_mode_serves_the_next_training_step():
    layer = torch.nn.Linear(4, 8, bias=False).requires_grad_(False)
    x = torch.randn(3, 4, requires_grad=True)
    with frozen_casts.frozen_weights_cast_once(layer), torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.inference_mode():
            layer(x.detach())  # a rollout decoded on the training model
        layer(x).float().sum().backward()  # an inference tensor here could not be saved for backward
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_outside_the_context_nothing_is_kept():
    weight = torch.randn(8, 4)
    assert frozen_casts.cast_once(weight, torch.bfloat16) is not frozen_casts.cast_once(weight, torch.bfloat16)


@pytest.mark.skipif(not packing.packs_exactly(torch.bfloat16), reason="this CPU's oneDNN does not pack bf16 exactly")
def test_a_validation_copy_made_during_training_has_plain_linears_and_packs_them(monkeypatch):
    monkeypatch.setattr(precision, "model_precision",
                        lambda model: precision.InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16))
    model = _lora_model()
    with frozen_casts.frozen_weights_cast_once(model):
        copy = precision.inference_copy(model)
    assert not any(type(m) is frozen_casts.CastOnceLinear for m in copy.modules())
    assert any(type(m) is packing.PackedLinear for m in copy.modules())
