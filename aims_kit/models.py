"""Models: one loader for a hub id or a local folder, QLoRA where the hardware allows, LoRA defaults.

The embedded default model (:mod:`aims_kit.embedded`) is a local folder and goes through the
same :func:`load_model` as ``Qwen/Qwen3-0.6B`` does, so the path the tests exercise is the path a
GPU user runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .distributed import local_rank

log = logging.getLogger(__name__)

EMBEDDED = "embedded"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters. Defaults are the paper's (DESIGN.md §5); distillation used r=32, α=64."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    #: ``all-linear`` adapts every linear layer but the LM head, as QLoRA recommends.
    target_modules: str | list[str] = "all-linear"
    extra: dict = field(default_factory=dict)

    def to_peft(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
            **self.extra,
        )


def resolve_model_id(name: str, cache_dir: Path | None = None) -> str:
    """Map ``"embedded"`` to the folder of the kit's own model (building it once); pass others through."""
    if name == EMBEDDED:
        from .embedded import embedded_model_dir

        return str(embedded_model_dir(cache_dir))
    return name


def has_cuda() -> bool:
    return torch.cuda.is_available()


def quantization_config(quantize: bool | None):
    """QLoRA's 4-bit NF4 with double quantisation and bf16 compute, when CUDA and bitsandbytes exist.

    ``quantize=None`` means "on a GPU". On CPU the kit loads full precision instead: 4-bit on CPU
    is slower than fp32 for small models and has an inference-then-train trap (DESIGN.md §7).
    A CUDA machine without bitsandbytes is an error, not a quiet switch to 16-bit training: that
    would change the experiment (and its memory needs) without a word.
    """
    if quantize is False or (quantize is None and not has_cuda()):
        return None
    if not has_cuda():
        raise RuntimeError("quantize=True needs a CUDA GPU; set quantize=None to fall back to full precision")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "a CUDA GPU is present but bitsandbytes is not installed, so 4-bit QLoRA cannot load: "
            "pip install bitsandbytes (requirements.txt pins it), or pass quantize=False to load in bf16"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


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
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
):
    """Load ``(model, tokenizer)`` from a hub id, a local folder or ``"embedded"``.

    Weights load from safetensors only; ``trust_remote_code`` stays off unless asked for.
    """
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_id(name, cache_dir)
    qconfig = quantization_config(quantize)
    kwargs: dict = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if qconfig is not None:
        kwargs.update(quantization_config=qconfig, dtype=torch.bfloat16, device_map={"": local_rank()})
    elif has_cuda():
        kwargs.update(dtype=torch.bfloat16, device_map={"": local_rank()})
    else:
        kwargs.update(dtype=torch.float32)
        if name != EMBEDDED:
            log.warning("No CUDA GPU: loading %s in full precision on CPU (no 4-bit QLoRA).", name)
    model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    tokenizer = load_tokenizer(model_id, trust_remote_code=trust_remote_code)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_trained(run_dir: str | Path, *, trainable: bool = False, quantize: bool | None = None):
    """Load a run's base model with its LoRA adapter applied, and check the adapter is in effect.

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
    base, tokenizer = load_model(config["model"], quantize=quantize)
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
