"""Precision and quantization: what a model computes in, on which device, and the QLoRA 4-bit base.

One device policy for every engine and trainer (:func:`compute_dtype`): bf16 where the device
multiplies it natively (a CUDA GPU of compute capability 8.0 or newer; a CPU with AVX512-BF16 or
AMX), fp16 with loss scaling on an older CUDA GPU (a T4 emulates bf16: slow, and vLLM refuses
it), fp32 otherwise. ``AIMS_KIT_PRECISION`` overrides it. Loading, QLoRA's 4-bit compute dtype,
TRL's ``bf16`` / ``fp16`` flags, vLLM's ``dtype`` and the served guard all take it from here, and
every record states what computed (:func:`device_info`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from aims_kit.core.params import PRECISIONS
from aims_kit.models.frozen_casts import plain_linears
from aims_kit.models.packing import pack_linears

log = logging.getLogger(__name__)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def _cpu_supports(name: str) -> bool:
    return bool(getattr(torch.cpu, name, lambda: False)())


#: How much faster bf16 matmuls must run than fp32 for the policy to compute in bf16 on a CPU
#: without AMX: a margin over the probe's noise, and for the casts bf16 adds around each matmul.
BF16_MIN_SPEEDUP = 1.3


def bf16_pays(speedup: float) -> bool:
    """Whether a measured bf16 / fp32 matmul speed ratio makes bf16 the faster choice."""
    return speedup >= BF16_MIN_SPEEDUP


@lru_cache(maxsize=1)
def bf16_speedup() -> float:
    """bf16 over fp32 matmul throughput on this CPU, measured once per process (about 0.1 s).

    Why a measurement and not a flag: AVX512-BF16 alone does not make bf16 faster. Measured with
    torch 2.13 on 2 threads, a 2048² matmul ran fp32 170 / bf16 410 GFLOP/s on an AMD EPYC
    (2.4x), but fp32 265 / bf16 156 on an Intel Xeon with AVX512-BF16 and no AMX (0.6x), where
    the default run's SFT notebook took 28:55 in bf16. The shape is a training step's
    (256 rows through a 1024-wide layer); the fastest of five timings per dtype counts, taken in
    turns (bf16, fp32, bf16, ...), so that a moment's load on the cores slows both dtypes alike
    instead of one: a probe of three timings per dtype, one dtype after the other, read 2.0-2.7x
    on the EPYC but once chose fp32 there (perf/bench_train.py trained in fp32).
    """
    import time

    operands = {dtype: (torch.randn(256, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype))
                for dtype in (torch.bfloat16, torch.float32)}
    best = dict.fromkeys(operands, float("inf"))
    for a, b in operands.values():
        a @ b  # oneDNN picks its kernel on the first call
    for _ in range(5):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 8) -> float:
    """Dense matmul GFLOP/s of this CPU in ``dtype`` (the best of ``repeats``): the ceiling the perf scripts judge
    speed against, and, taken before each notebook of a run, how fast the machine was while it ran.

    Why both: the machines this kit runs on are shared, and one host's peak moved by a fifth
    within an hour (bf16 378-429 GFLOP/s on a 2-core AMD EPYC) while a run's every notebook slowed
    by as much with the same predictions; a time means something only beside the peak it ran at.
    """
    import time

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # oneDNN picks its kernel on the first call
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 matmuls pay on this CPU: AMX always; AVX512-BF16 alone where :func:`bf16_speedup`
    measures them faster (:data:`BF16_MIN_SPEEDUP`); elsewhere bf16 is emulated and slow."""
    if _cpu_supports("_is_amx_tile_supported"):
        return True
    return _cpu_supports("_is_avx512_bf16_supported") and bf16_pays(bf16_speedup())


#: Set to ``fp32`` to compute in full precision even where bf16 is native (a check that a
#: result does not hinge on bf16 rounding; perf/bench_inference.py compares both), ``bf16`` to
#: compute in bf16 where the CPU only emulates it (slow: to reproduce, on any CPU, what a
#: machine with native bf16 computes), ``fp16`` on a CUDA GPU only. ``auto`` (or unset): the policy.
PRECISION_ENV = "AIMS_KIT_PRECISION"
_REQUESTS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The first CUDA compute capability with native bf16 (Ampere: A100, A10, L4 is 8.9, H100 9.0).
BF16_CAPABILITY = (8, 0)


def requested_precision() -> torch.dtype | None:
    """The dtype :data:`PRECISION_ENV` asks for (``None``: the policy decides); anything else is an error."""
    requested = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if requested not in _REQUESTS:
        raise ValueError(f"{PRECISION_ENV}={requested!r}: use auto, fp32, bf16 or fp16")
    return _REQUESTS[requested]


def cuda_capability() -> tuple[int, int] | None:
    """This process's CUDA device's compute capability, ``None`` without one."""
    return tuple(torch.cuda.get_device_capability()) if has_cuda() else None


def compute_dtype(device_type: str | None = None, *, capability: tuple[int, int] | None = None,
                  fast_bf16: bool | None = None) -> torch.dtype:
    """The dtype matmuls run in on ``device_type`` (default: CUDA where present, else the CPU).

    ``capability`` and ``fast_bf16`` stand in for the device's own answers (tests simulate a T4,
    an A100 or a CPU kind with them). CUDA: bf16 from compute capability 8.0, fp16 below it
    (trained with loss scaling). CPU: bf16 where it is native, else fp32; fp16 is refused on a
    CPU (no fast kernels, and nothing there trains with loss scaling).
    """
    device_type = device_type or ("cuda" if has_cuda() else "cpu")
    requested = requested_precision()
    if device_type == "cuda":
        if requested is not None:
            return requested
        capability = capability or cuda_capability() or (0, 0)
        return torch.bfloat16 if tuple(capability) >= BF16_CAPABILITY else torch.float16
    if requested == torch.float16:
        raise ValueError(f"{PRECISION_ENV}=fp16 is for CUDA GPUs; a CPU computes in bf16 or fp32")
    if requested is not None:
        return requested
    native = cpu_has_fast_bf16() if fast_bf16 is None else fast_bf16
    return torch.bfloat16 if native else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``bfloat16`` / ``float16`` / ``float32``, as records, TRL and vLLM spell it."""
    return str(dtype).replace("torch.", "")


def mixed_precision_flags(dtype: torch.dtype) -> dict[str, bool]:
    """TRL / ``TrainingArguments``' ``bf16`` and ``fp16`` flags for training in ``dtype`` (fp32: neither)."""
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


@dataclass(frozen=True)
class InferencePrecision:
    """How a model computes at inference: the dtype its weights are stored in and whether autocast runs.

    Why: on a CPU with native bf16 (AVX512-BF16, AMX) bf16 matmuls run ~6.7x the fp32 peak, and
    decoding reads every weight once per generated token, so bf16 weights halve what each step
    reads (perf/bench_inference.py measures both). Elsewhere bf16 is emulated and slower: fp32
    stays. On CUDA the loader already chose the policy's dtype (or 4-bit with it as compute dtype).
    """

    #: Dtype the weights are cast to for inference (``None``: keep what was loaded).
    weights: torch.dtype | None
    #: Autocast dtype around forward passes (``None``: no autocast).
    autocast: torch.dtype | None

    @property
    def compute_dtype(self) -> str:
        """The dtype matmuls run in, as records state it."""
        dtype = self.autocast or self.weights
        return dtype_name(dtype) if dtype is not None else "as loaded"


def inference_precision(device_type: str, fast_bf16: bool | None = None, *, quantized: bool = False) -> InferencePrecision:
    """The inference side of the policy for a model on ``device_type`` (``cpu``/``cuda``).

    CPU computing in bf16: bf16 weights and bf16 autocast (the ops that autocast keeps in fp32,
    such as softmax, stay accurate). CPU computing in fp32: fp32, no autocast. CUDA, or a 4-bit
    model: as loaded (the loader took the policy's dtype already).
    """
    if device_type != "cpu" or quantized:
        return InferencePrecision(weights=None, autocast=None)
    if compute_dtype("cpu", fast_bf16=fast_bf16) == torch.bfloat16:
        return InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16)
    return InferencePrecision(weights=torch.float32, autocast=None)


def serving_dtype() -> str:
    """The dtype a served guard's weights are loaded in here: the one local evaluation computes in.

    Why: an export keeps fp32 weights, and ``transformers serve`` would load them as stored;
    where local evaluation runs bf16 (a CUDA GPU, a CPU with native bf16) the served guard
    would then answer from other arithmetic, and greedy answers can part after a few tokens.
    """
    return dtype_name(compute_dtype())


_NAMED_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_precision(precision: str | None) -> tuple[bool | None, torch.dtype | None]:
    """``(quantize, dtype)`` for :func:`aims_kit.models.loading.load_model` from a run's ``precision``.

    ``auto``: unquantized in the device policy's dtype (as the paper evaluated: bf16 on its GPU).
    A named dtype: unquantized in that dtype, on any device (fp16 on a CUDA GPU only). ``4bit``:
    the NF4 base, on any device. ``None`` (a zero-shot run recorded before ``precision`` existed):
    as it was loaded then, 4-bit on a CUDA GPU, unquantized elsewhere.
    """
    if precision is None:
        return None, None
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "4bit":
        return True, None
    return False, _NAMED_DTYPES.get(precision)


def vllm_dtype(precision: str | None, *, capability: tuple[int, int] | None = None) -> str:
    """The dtype a vLLM engine is started in for a run's ``precision``: the named one, else the policy's.

    ``4bit`` has none: vLLM serves the 16-bit weights, so a 4-bit run evaluates with transformers.
    """
    if precision == "4bit":
        raise ValueError("a 4-bit run is evaluated with transformers (bitsandbytes); vLLM serves 16-bit weights")
    named = _NAMED_DTYPES.get(precision or "auto")
    return dtype_name(named or compute_dtype("cuda", capability=capability))


#: Attribute a model loaded in an explicitly asked dtype carries (:func:`pin_precision`).
_PINNED = "_aims_kit_precision"


def pin_precision(model, dtype: torch.dtype) -> None:
    """Keep ``model`` in ``dtype`` whatever the device policy says (a run that asked for it).

    Why: on a CPU the policy casts weights and autocasts at every forward pass
    (:func:`inference_precision`); a run loaded in fp32 on a CPU with native bf16, or in bf16
    where it is emulated, must compute in the dtype it recorded. On a CPU ``dtype`` bf16 also
    autocasts in bf16 (as the policy does for bf16); fp16 is refused there. On CUDA the weights are
    already in ``dtype``.
    """
    if model.device.type == "cpu":
        if dtype == torch.float16:
            raise ValueError("fp16 is for CUDA GPUs; a CPU computes in bf16 or fp32")
        pinned = InferencePrecision(weights=dtype, autocast=dtype if dtype == torch.bfloat16 else None)
    else:
        pinned = InferencePrecision(weights=None, autocast=None)
    setattr(model, _PINNED, pinned)


def model_precision(model) -> InferencePrecision:
    """The policy for this model object, from its device and whether it is quantized (or the dtype it was pinned to)."""
    pinned = getattr(model, _PINNED, None)
    if isinstance(pinned, InferencePrecision):
        return pinned
    quantized = bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))
    return inference_precision(model.device.type, quantized=quantized)


def inference_autocast(model):
    """Context for a forward pass or ``generate`` of ``model`` under its precision policy.

    Used by every generation and label-scoring path, so a model still being trained (GRPO's
    validation snapshots) gets the bf16 arithmetic without its fp32 weights being touched.
    """
    import contextlib

    policy = model_precision(model)
    if policy.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=policy.autocast)


def prepare_for_inference(model):
    """Merge a LoRA adapter into its base and store the weights in the policy's dtype (on a CPU, linear
    weights also in the matmul kernel's layout); returns the model.

    Merging removes two small matmuls per adapted layer from every decoding step; only for
    models that will not be trained again (the adapter is checked as active before, by
    :func:`load_trained`). Export does not use it: an exported guard keeps full precision.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel) and not getattr(model, "is_loaded_in_4bit", False):
        model = model.merge_and_unload()
    policy = model_precision(model)
    if policy.weights is not None:
        model = model.to(policy.weights)
        # Measured with torch 2.13 on a CPU with AMX: a bf16 linear layer whose weight has
        # requires_grad=False (as PEFT leaves a frozen base) runs ~7x slower than the same
        # weight with requires_grad=True (SmolLM2 forward: 190 vs 26 ms/prompt; fp32 is
        # unaffected). Inference runs under torch.inference_mode, so no gradient is ever kept.
        model.requires_grad_(True)
        # A decoding step reads every weight: laid out once for the CPU's kernel, not at every
        # call (same products bit for bit, where this CPU gives them; aims_kit/models/packing.py).
        pack_linears(model)
    model.eval()
    return model


def inference_copy(model):
    """A model still being trained, as its saved run will be evaluated: a copy with the adapter merged and the
    weights in the policy's dtype (:func:`prepare_for_inference`), where the policy stores them otherwise; else the model itself.

    Why: validation during training (the F1 that chooses the checkpoint) decoded from the
    training model, whose fp32 weights bf16 autocast casts again at every decoding step, with
    the adapter's two extra matmuls per adapted layer: on a 2-core AMD EPYC the default run's
    intent → label model took 17.6-23.5 s on the 126 validation prompts that way, 13.2-13.6 s
    from a merged bf16 copy (made in 0.2 s). The copy also makes the choosing F1 come from the
    arithmetic the test F1 comes from. On a GPU, or where the policy keeps what was loaded, no
    copy is made (no second model in memory).

    The copy runs its own forward (:func:`own_forwards`): before that, it ran the trained model's;
    and plain linear layers (:func:`aims_kit.models.frozen_casts.plain_linears`), which inference lays out for its kernel.
    """
    import copy

    policy = model_precision(model)
    if policy.weights is None or all(p.dtype == policy.weights for p in model.parameters()):
        return model
    return prepare_for_inference(plain_linears(own_forwards(copy.deepcopy(model))))


def own_forwards(model):
    """``model`` with every module's ``forward`` its class's again, where something replaced it on the instance; returns it.

    Why: TRL's trainers give the model a fused LM head by replacing ``forward`` on the instance
    with a function that keeps the model's original bound ``forward`` in its closure.
    ``copy.deepcopy`` copies the module but not that closure (a function is copied by reference),
    so the copy's forward went on running the *trained* model: validation decoded with fp32
    weights under autocast and the adapter unmerged, not with the merged copy, and took 33.8 s
    instead of 20.1 s on the 126 validation prompts early in an intent SFT run (2-core AMD EPYC,
    bf16). The fused head only serves training losses; an inference copy does not need it.
    accelerate's device hooks (``_hf_hook``) are left alone: they are rebuilt on the copy, not shared.
    """
    for module in model.modules():
        if "forward" in vars(module) and not hasattr(module, "_hf_hook"):
            del module.forward
    return model


#: How a run's config and records name a 4-bit base: QLoRA's NF4 with double quantisation.
NF4_DOUBLE_QUANT = "nf4+double_quant"


def uses_4bit(quantize: bool | None) -> bool:
    """Whether ``quantize`` loads the base in 4-bit here: ``True`` on any device, ``None`` on a CUDA GPU only."""
    return quantize is True or (quantize is None and has_cuda())


def quantization_name(quantize: bool | None) -> str:
    """What a run's config records as its quantization: :data:`NF4_DOUBLE_QUANT` or ``none``."""
    return NF4_DOUBLE_QUANT if uses_4bit(quantize) else "none"


def quantization_config(quantize: bool | None):
    """QLoRA's 4-bit NF4 with double quantisation, computing in the policy's dtype, where ``quantize`` asks for it.

    ``quantize=None`` means "on a GPU": a CPU then loads full precision, which is faster there
    for small models. ``quantize=True`` loads 4-bit on a CPU too, through the same
    bitsandbytes / PEFT / TRL path a GPU runs, so that path can be checked without one
    (docs/qlora.md). Missing bitsandbytes is an error, not a quiet switch to 16-bit training:
    that would change the experiment (and its memory needs) without a word.
    """
    if not uses_4bit(quantize):
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            "bitsandbytes is not installed, so 4-bit QLoRA cannot load: pip install bitsandbytes "
            "(requirements.txt pins it), or pass quantize=False to load without quantization"
        )
    from transformers import BitsAndBytesConfig

    if not has_cuda():
        _cpu_4bit_notice()
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(),
    )


@lru_cache(maxsize=1)
def _cpu_4bit_notice() -> None:
    """Say once per process what 4-bit on a CPU is for."""
    log.warning("4-bit NF4 on CPU: this checks the QLoRA path a GPU runs; it is slower than full precision here, not faster.")


def keep_4bit_training_layout(model) -> None:
    """Keep a 4-bit model that will be trained out of bitsandbytes' CPU inference layout.

    Why: on a CPU with AVX512-BF16, a bitsandbytes ``Linear4bit`` layer run in eval mode without
    gradients repacks its weight, in place and for good, into a layout only an inference kernel
    reads. Training that object afterwards backpropagates through that kernel, which has no
    gradient (bitsandbytes 0.50: one warning, then no gradient flows through the quantized
    weights to the layers below). Every validation pass during training (the trainer's validation loss, the val-F1
    curve, GRPO's snapshots) runs on the training object, so that object never takes the
    inference layout; records are scored on a separate, fresh instance (:func:`load_for_inference`).
    On a GPU there is no such layout and nothing changes.
    """
    import bitsandbytes as bnb

    if model.device.type != "cpu":
        return
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            if not hasattr(module, "support_avx512bf16_for_cpu"):
                raise RuntimeError(
                    f"bitsandbytes {bnb.__version__}: {name} has no support_avx512bf16_for_cpu flag, so the kit cannot keep "
                    "it trainable after a validation pass on CPU; use the bitsandbytes version requirements.txt pins"
                )
            module.support_avx512bf16_for_cpu = False


def cpu_name() -> str:
    """The CPU's model name and its family and model numbers (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    info = Path("/proc/cpuinfo")
    named = cpu_name_in(info.read_text(errors="replace")) if info.is_file() else None
    return named or platform.processor() or platform.machine()


def cpu_name_in(cpuinfo: str) -> str | None:
    """The first processor's ``model name`` in a ``/proc/cpuinfo`` text, with its ``cpu family`` and ``model`` numbers.

    Why the numbers: a cloud VM may name only the vendor's line ("AMD EPYC"), and this project's
    2-core machines of that one name multiplied bf16 at 380-426 GFLOP/s in some sessions and at
    850-960 in others, so a timing compares with another only beside them. ``None`` where no
    model name is given (e.g. ARM's cpuinfo).
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if not key.strip():
            break  # the first processor's block ends; every core names the same CPU
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return None
    numbers = ", ".join(f"{key} {fields[key]}" for key in ("cpu family", "model") if key in fields)
    return f"{fields['model name']} ({numbers})" if numbers else fields["model name"]


def device_info(model) -> dict:
    """Where and how latency was measured, so a plot never mixes hardware or precision silently.

    ``dtype`` is what the weights are stored in; ``compute_dtype`` what the matmuls ran in
    (bf16 autocast on a CPU with native bf16, :func:`aims_kit.models.precision.inference_precision`);
    ``quantization`` says whether the base is 4-bit NF4.
    """
    device = model.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    stored = str(next(model.parameters()).dtype).replace("torch.", "")
    policy = model_precision(model)
    quantization = getattr(model, "quantization_config", None) or getattr(getattr(model, "config", None), "quantization_config", None)
    four_bit = bool(getattr(model, "is_loaded_in_4bit", False))
    compute = policy.compute_dtype if policy.autocast or policy.weights else stored
    if four_bit:
        compute = str(getattr(quantization, "bnb_4bit_compute_dtype", "bfloat16")).replace("torch.", "")
    return {
        "device": f"{device.type}:{name}",
        "dtype": stored,
        "compute_dtype": compute,
        "quantization": NF4_DOUBLE_QUANT if four_bit else "none",
        "torch_threads": torch.get_num_threads(),
    }
