"""Frozen weights cast to the autocast dtype once for a training, instead of at every call.

Why: mixed-precision training keeps full-precision weights and runs the forward under autocast,
and autocast keeps its cast of a weight only for weights that take a gradient. LoRA freezes the
base, so every forward pass cast every frozen weight of the model to bf16 again: each training
step, DPO's reference pass as well, and every decoding step of GRPO's rollouts, which run on the
training model and cast 135M weights to write one token per row. Measured on a 2-core AMD EPYC
with AVX512-BF16 (bf16; docs/measurements.md): GRPO's rollouts 1.04-1.20x faster in four
alternations; a training step's casts about 100 ms of a student's 4.8 s step, under what this
shared machine's drift lets a step's time show (0.86-1.08x).

Same numbers: the cast made once holds the same bf16 values autocast makes at each call, and
they go into the same kernel, so every product, loss and gradient is the one autocast gives, bit
for bit (tests/test_frozen_casts.py). A cast is made again when its weight changes in place
(:func:`aims_kit.models.packing.weight_stamp`), and weights that take a gradient are cast at each
call as autocast casts them, through autograd.

Only within :func:`frozen_weights_cast_once`, and only on a CPU: outside it no cast is kept, and
the model's linear layers are plain ``nn.Linear`` again. On a GPU the weights are loaded in the
compute dtype already (or in 4-bit), so there is nothing to keep. A change made through
``weight.data`` is not seen (it leaves the version counter alone): PEFT's ``merge_adapter`` does
that on the training model only to hand weights to vLLM, which runs on a GPU.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from aims_kit.models.packing import weight_stamp

#: The casts kept by the innermost :func:`frozen_weights_cast_once`: ``(id(weight), dtype)`` ->
#: ``(weak reference to the weight, its stamp, its cast)``; ``None`` outside one. Keyed by id,
#: not by the tensor: a tensor's ``==`` compares values, which a dictionary lookup must not do.
_CASTS: dict[tuple[int, torch.dtype], tuple[weakref.ref, tuple, torch.Tensor]] | None = None


def cast_once(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``: for a frozen weight within :func:`frozen_weights_cast_once`, the cast kept
    since it last changed; otherwise cast now (through autograd where it takes a gradient)."""
    if weight.dtype == dtype or weight.requires_grad or _CASTS is None:
        return weight.to(dtype)
    key = (id(weight), dtype)
    entry = _CASTS.get(key)
    if entry is None or entry[0]() is not weight or entry[1] != weight_stamp(weight):
        with torch.inference_mode(False):  # made while decoding under inference mode, it still serves the next backward
            entry = (weakref.ref(weight), weight_stamp(weight), weight.detach().to(dtype))
        _CASTS[key] = entry
    return entry[2]


class CastOnceLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose frozen weight, under CPU autocast, goes into the product as its kept cast (:func:`cast_once`).

    Without autocast, or off a CPU, it is a plain linear layer; a weight that takes a gradient, or any weight
    outside :func:`frozen_weights_cast_once`, :func:`cast_once` casts at the call, as autocast would.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return F.linear(x, self.weight, self.bias)
        dtype = torch.get_autocast_dtype("cpu")
        bias = None if self.bias is None else cast_once(self.bias, dtype)
        return F.linear(x, cast_once(self.weight, dtype), bias)


@contextmanager
def frozen_weights_cast_once(model: torch.nn.Module):
    """Within it, every frozen plain ``nn.Linear`` of ``model`` is a :class:`CastOnceLinear` and casts are kept; after it,
    plain again and the casts freed (one bf16 copy of the frozen weights while it lasts: 270 MB for SmolLM2-135M).

    Layers that train (LoRA's own) and layers of other kinds (bitsandbytes' 4-bit layers, PEFT's
    wrappers, whose base layers are plain linears and are swapped) are left as they are.
    """
    global _CASTS
    swapped = [module for module in model.modules() if type(module) is torch.nn.Linear and not module.weight.requires_grad]
    for module in swapped:
        module.__class__ = CastOnceLinear
    outer, _CASTS = _CASTS, {}
    try:
        yield model
    finally:
        _CASTS = outer
        for module in swapped:
            module.__class__ = torch.nn.Linear


def plain_linears(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every :class:`CastOnceLinear` a plain ``nn.Linear`` again; returns it.

    Why: a copy made within :func:`frozen_weights_cast_once` (validation's merged copy,
    :func:`aims_kit.models.precision.inference_copy`) copies the swapped class, and the context
    swaps back only the layers it swapped; a plain linear is what inference lays out for its kernel.
    """
    for module in model.modules():
        if type(module) is CastOnceLinear:
            module.__class__ = torch.nn.Linear
    return model
