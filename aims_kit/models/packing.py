"""Linear weights laid out once for the CPU's matmul kernel, instead of at every call.

Why: on a CPU, a bf16 ``F.linear`` hands oneDNN its weight in PyTorch's plain layout, and oneDNN
reorders it into the blocked layout its kernel reads at every call: the weight is read, written
and read again. A decoding step multiplies a few rows by every weight of the model, so that
reorder is most of what the step pays. Reordered once, the 30 blocks' linears of SmolLM2-135M
took 12.8 / 12.5 / 26.8 / 39.9 ms instead of 17.9 / 20.2 / 35.1 / 49.9 at 1 / 8 / 36 / 64 rows,
the LM head 1.9 / 2.1 / 5.6 / 9.6 ms instead of 3.3 / 4.0 / 7.9 / 11.3, and a 512-row prompt pass
the same (2-core AMD EPYC with AVX512-BF16, torch 2.13; docs/measurements.md).

Same numbers: the reordered weight feeds the same kernel, so each product equals the plain call's
bit for bit. Where it would not (fp32 goes to another kernel there and differs in the last bits),
the kit does not reorder: :func:`packs_exactly` checks it on this machine, once per dtype.

Only for inference: the reordered copy has no gradient, so :class:`PackedLinear` runs the plain
call whenever autograd records, or the input or the weight is not what was reordered. A copy of
the model (``copy.deepcopy``) holds plain linears' arithmetic until it is packed itself.
"""

from __future__ import annotations

import weakref
from functools import lru_cache

import torch
import torch.nn.functional as F

#: Each packed layer's reordered weight, with what it was made from (data pointer, version,
#: dtype). Kept beside the modules, not in them: an opaque oneDNN tensor cannot be deep-copied,
#: saved or moved, and a model that holds none can be all three.
_PACKED: "weakref.WeakKeyDictionary[torch.nn.Linear, tuple[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _reorder(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


def _packed_call(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def weight_stamp(weight: torch.Tensor) -> tuple:
    """What a copy made from ``weight`` was made from: its storage, in-place version and dtype (a change in any makes the copy stale)."""
    return weight.data_ptr(), weight._version, weight.dtype


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose weight is also kept reordered for oneDNN (:func:`pack_linears`).

    It stays an ``nn.Linear`` with its own weight (state dicts, PEFT, ``model.dtype`` see nothing
    new); the reordered copy is used only when no gradient is recorded and the input and the
    weight are those it was made for.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entry = _PACKED.get(self)
        if (entry is None or torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != self.weight.dtype
                or entry[0] != weight_stamp(self.weight)):
            return F.linear(x, self.weight, self.bias)
        return _packed_call(x, entry[1], self.bias)


@lru_cache(maxsize=None)
def packs_exactly(dtype: torch.dtype) -> bool:
    """Whether a reordered weight gives exactly the plain ``F.linear`` result for ``dtype`` on this CPU.

    Checked on a few shapes a decoding step and a prompt pass use (1 to 70 rows; 3-D input, with
    and without bias). ``False`` where this torch has no oneDNN reorder at all.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.inference_mode():
            for rows, width, out, bias in ((1, 64, 96, False), (8, 96, 256, True), (70, 128, 64, False)):
                weight = torch.randn(out, width, generator=generator).to(dtype)
                b = torch.randn(out, generator=generator).to(dtype) if bias else None
                x = torch.randn(rows, 1, width, generator=generator).to(dtype)
                if not torch.equal(_packed_call(x, _reorder(weight), b), F.linear(x, weight, b)):
                    return False
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):  # an op this torch lacks or spells otherwise
        return False
    return True


def pack_linears(model: torch.nn.Module) -> int:
    """Keep every CPU ``nn.Linear`` of ``model`` in oneDNN's layout as well, where that is exact here; returns how many.

    Call it on a model that will only be evaluated (:func:`aims_kit.models.precision.prepare_for_inference`):
    training it afterwards still works (the plain call runs under autograd), but a weight that
    changes is no longer packed. Layers on another device, in another dtype than the probe
    passed, or of a subclass (bitsandbytes' 4-bit layers, PEFT's wrappers) are left as they are.
    """
    packed = 0
    for module in model.modules():
        if type(module) not in (torch.nn.Linear, PackedLinear) or module.weight.device.type != "cpu":
            continue
        if not packs_exactly(module.weight.dtype):
            continue
        module.__class__ = PackedLinear
        _PACKED[module] = (weight_stamp(module.weight), _reorder(module.weight))
        packed += 1
    return packed
