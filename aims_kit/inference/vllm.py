"""vLLM generation for evaluation on a CUDA GPU, with the LoRA adapter applied and checked.

Used when vLLM is installed and CUDA is present (``backend="auto"``); everything else uses
transformers. The paper's own pipeline once served base models while believing adapters were
loaded, so :func:`check_adapter_applied` compares a few greedy vLLM outputs with transformers
outputs of the same run and refuses to continue if vLLM matches the base model instead.

**What the engine is built with** (:func:`engine_settings`): the device policy's dtype
(:func:`aims_kit.models.precision.compute_dtype`: bf16 from compute capability 8.0, fp16 on a
T4, where vLLM refuses bf16) or the one a zero-shot run asked for (``precision``), a context cut to what evaluation can send
(:data:`MAX_MODEL_LEN`, not the model's own 131,072 tokens, whose KV cache alone would need
about 16 GiB for an 8B model), and the ``gpu_memory_utilization`` parameter's share of the GPU.

**Memory.** A vLLM engine reserves its share of the GPU when it starts, and a notebook kernel
evaluates many runs, often right after training one. So a kernel holds at most one engine, for
one base model, and every run on that base model reuses it with its own adapter (a
``LoRARequest``); a run on another base model replaces it. Training releases it first
(:func:`release_engine`, called by :func:`aims_kit.training.common.fit`), so a trainer or
GRPO never starts beside an idle engine's reservation. Where the engine cannot start (an old
GPU, too little memory), ``backend="auto"`` falls back to transformers and says why, once.

**P(harmful).** vLLM returns the top :data:`TOP_LOGPROBS` log-probabilities of every generated
token; at the step that wrote the label, P(harmful) is the mass of every harmful label word the
parser accepts against every safe one (:func:`aims_kit.datasets.formats.label_word_ids`), the
same rule as the transformers engine, so AUROC / AUPRC exist on every engine.

**Prompt formats.** Conversations go through ``LLM.chat`` (the model's chat template); the
plain-text formats (``raw``, ``paper-student``: :mod:`aims_kit.datasets.prompt_formats`) through
``LLM.generate``, as the paper's own evaluation sent them.

**Released checkpoints.** A zero-shot run of a whole model starts the engine on it, no adapter;
one of an adapter-only repository (``adapter_of``) starts it on the base and applies the
repository as the run's LoRA adapter, checked like a trained run's.

This path needs a GPU; the kit's CPU tests run it against a stand-in ``vllm`` module.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from aims_kit.core.params import RunParams
from aims_kit.core.results import read_run_config
from aims_kit.datasets import formats, prompt_formats
from aims_kit.datasets.prompt_formats import ModelInput, PromptFormat
from aims_kit.inference.engines import Engine, Generation
from aims_kit.inference.generation import (
    PROMPT_TOKEN_CAP,
    TransformersEngine,
    agreeing,
    generate,
    harmful_share,
    token_index_at,
)
from aims_kit.models.loading import resolve_adapter_id, resolve_model_id
from aims_kit.models.precision import has_cuda, vllm_dtype

log = logging.getLogger(__name__)

#: Share of GPU memory the engine may reserve (``gpu_memory_utilization`` parameter overrides it).
GPU_MEMORY_UTILIZATION = RunParams.gpu_memory_utilization
#: LoRA ranks vLLM accepts as ``max_lora_rank``; the engine takes the smallest one that fits, and
#: at least 32, so SFT (r=16) and distillation (r=32) adapters share one engine.
_VLLM_LORA_RANKS = (32, 64, 128, 256, 512)
#: The longest sequence evaluation sends: prompts are cut to :data:`PROMPT_TOKEN_CAP` tokens with
#: the answer budget inside it (:func:`aims_kit.inference.generation.max_prompt_tokens`), plus room
#: for a chat template and system instruction.
TEMPLATE_ROOM = 512
MAX_MODEL_LEN = PROMPT_TOKEN_CAP + TEMPLATE_ROOM
#: Log-probabilities returned per generated token (vLLM's default ``max_logprobs`` is 20).
TOP_LOGPROBS = 20


def available() -> bool:
    return has_cuda() and importlib.util.find_spec("vllm") is not None


@dataclass
class _Shared:
    """The kernel's one engine and what it was started for."""

    model_id: str
    max_lora_rank: int
    dtype: str
    llm: object
    settings: dict


_shared: _Shared | None = None
_adapter_ids: dict[str, int] = {}
#: Run folder → its engine, adapter already checked (emptied when the shared engine is replaced).
_checked: dict[str, "VllmEngine"] = {}
#: Why the engine could not start in this kernel (``auto`` then uses transformers without retrying).
_start_failure: str | None = None


def free_training_memory() -> None:
    """Drop unreachable training objects and return their cached CUDA blocks to the driver."""
    gc.collect()
    if has_cuda():
        import torch

        torch.cuda.empty_cache()


def release_engine() -> None:
    """Shut the kernel's engine down and return its memory, so training gets the whole GPU.

    Runs before every training (:func:`aims_kit.training.common.fit`); the next evaluation starts
    a new engine. A no-op where none runs.
    """
    global _shared
    if _shared is None:
        return
    _shared = None
    _checked.clear()
    try:  # vLLM keeps a process group and its workers until told; absent in some versions
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except (ImportError, AttributeError):
        pass
    free_training_memory()


def engine_settings(model_id: str, *, max_lora_rank: int, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
                    context: int | None = None, capability: tuple[int, int] | None = None,
                    precision: str | None = None) -> dict:
    """The keyword arguments the engine is built with: dtype from the device policy, a fitting context.

    ``context`` is the model's own (``max_position_embeddings``; ``None``: unknown), so the
    engine never asks for more than the model holds. ``capability`` stands in for the GPU's own
    (tests build the settings of a T4 or an A100 without one). ``precision``: a zero-shot run's
    (:func:`aims_kit.models.precision.vllm_dtype`; ``None`` or ``auto``: the policy's dtype).
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization={gpu_memory_utilization}: give a share of the GPU between 0 and 1")
    rank = next((r for r in _VLLM_LORA_RANKS if r >= max_lora_rank), max_lora_rank)
    return {
        "model": model_id,
        "enable_lora": True,
        "max_lora_rank": rank,
        "dtype": vllm_dtype(precision, capability=capability),
        "max_model_len": min(MAX_MODEL_LEN, context) if context else MAX_MODEL_LEN,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_logprobs": TOP_LOGPROBS,
        "trust_remote_code": False,
    }


def shared_llm(model_id: str, *, max_lora_rank: int, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
               context: int | None = None, precision: str | None = None):
    """The kernel's engine for ``model_id``, started (or restarted for another model or dtype) only when needed.

    An engine already running for ``model_id`` in the same dtype with room for ``max_lora_rank``
    is reused as it is; its memory share was fixed when it started.
    """
    global _shared
    settings = engine_settings(model_id, max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization,
                               context=context, precision=precision)
    if (_shared is not None and _shared.model_id == model_id and _shared.max_lora_rank >= max_lora_rank
            and _shared.dtype == settings["dtype"]):
        return _shared
    from vllm import LLM

    release_engine()  # the previous engine (another base model) goes before the next one starts
    free_training_memory()
    _shared = _Shared(model_id, settings["max_lora_rank"], settings["dtype"], LLM(**settings), settings)
    return _shared


def run_weights(run_dir: str | Path, config: dict) -> tuple[str, str | None, int]:
    """What a run's engine serves: the base model, the LoRA adapter to apply (``None``: none) and its rank.

    A trained run: its base and its ``adapter/`` folder. A zero-shot run of an adapter-only
    repository (``adapter_of``): that base and the repository. Any other zero-shot run: the model itself.
    """
    adapter = Path(run_dir) / "adapter"
    if (adapter / "adapter_config.json").exists():
        return resolve_model_id(config["model"]), str(adapter), config.get("train", {}).get("lora", {}).get("r", 16)
    if config.get("adapter_of"):
        path = resolve_adapter_id(config["model"])
        settings = Path(path) / "adapter_config.json"
        rank = json.loads(settings.read_text()).get("r", 16) if settings.is_file() else 16
        return resolve_model_id(config["adapter_of"]), path, rank
    return resolve_model_id(config["model"]), None, 16


class VllmEngine:
    """Generation through the kernel's shared vLLM engine with one run's adapter (none for zero-shot).

    An :class:`aims_kit.inference.engines.Engine`; it has no one-pass label scoring (``score``
    gives ``None``), so label-only answers are generated, with P(harmful) from the log-probabilities.
    """

    backend = "vllm"

    def __init__(self, run_dir: str | Path, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION, context: int | None = None):
        from vllm.lora.request import LoRARequest

        config = read_run_config(run_dir)
        base, adapter, rank = run_weights(run_dir, config)
        self.shared = shared_llm(base, max_lora_rank=rank, gpu_memory_utilization=gpu_memory_utilization, context=context,
                                 precision=config.get("precision"))
        self.llm = self.shared.llm
        self.lora = None
        if adapter is not None:
            key = str(Path(adapter).resolve()) if Path(adapter).exists() else adapter
            adapter_id = _adapter_ids.setdefault(key, len(_adapter_ids) + 1)
            self.lora = LoRARequest(Path(run_dir).name, adapter_id, adapter)

    def score(self, conversations: Sequence[ModelInput], *, desc: str = "") -> None:
        return None

    def device_info(self) -> dict:
        """What answered: vLLM's own unquantized copy of the base, in the dtype it was started with."""
        import torch

        dtype = self.shared.settings["dtype"]
        return {"device": f"cuda:{torch.cuda.get_device_name()}", "dtype": dtype, "compute_dtype": dtype,
                "quantization": "none", "torch_threads": torch.get_num_threads()}

    def generate(self, conversations: Sequence[ModelInput], *, max_new_tokens: int, stop_strings: Sequence[str] = (),
                 desc: str = "", lora: bool = True) -> Generation:
        """Greedy answers: conversations through ``LLM.chat``, plain-text prompts through ``LLM.generate``."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop_strings),
                                include_stop_str_in_output=True, logprobs=TOP_LOGPROBS)
        lora_request = self.lora if lora else None
        start = time.perf_counter()
        if prompt_formats.is_plain_text(conversations):
            outputs = self.llm.generate(list(conversations), params, lora_request=lora_request, use_tqdm=False)
        else:
            outputs = self.llm.chat(
                list(conversations), params, lora_request=lora_request, use_tqdm=False,
                chat_template_kwargs=formats.CHAT_TEMPLATE_KWARGS,
            )
        seconds = time.perf_counter() - start
        tokenizer = self.llm.get_tokenizer()
        harmful, safe = formats.label_word_ids(tokenizer)
        return Generation(
            texts=[o.outputs[0].text.strip() for o in outputs],
            new_tokens=[len(o.outputs[0].token_ids) for o in outputs],
            seconds=seconds,
            p_harmful=[label_probability(tokenizer, o.outputs[0], set(harmful), set(safe)) for o in outputs],
        )


def label_probability(tokenizer, completion, harmful: set[int], safe: set[int]) -> float | None:
    """P(harmful) at the step that wrote ``completion``'s label, from its top log-probabilities.

    The transformers engine's rule (:func:`aims_kit.inference.generation.harmful_share`, then
    :func:`~aims_kit.inference.generation.agreeing`) over the label words among the step's top
    :data:`TOP_LOGPROBS` tokens: the harmful words' mass over both classes', on the written
    label's side of 0.5. ``None`` where the answer has no label, or neither side is among them
    (a label the model wrote is always among them, so that happens only off-label).
    """
    steps = getattr(completion, "logprobs", None)
    offset = formats.label_offset(completion.text)
    if not steps or offset is None:
        return None
    token_ids = list(completion.token_ids)
    # ``text`` may begin with whitespace that :meth:`str.strip` removed above; the offset is
    # taken on the raw text, as the tokens decode.
    step = token_index_at(tokenizer, token_ids, offset)
    if step >= len(steps):
        return None
    on_harmful = [entry.logprob for token, entry in steps[step].items() if token in harmful]
    on_safe = [entry.logprob for token, entry in steps[step].items() if token in safe]
    label = formats.parse_output(completion.text).label
    if label is None or not (on_harmful or on_safe):
        return None
    return agreeing(float(harmful_share(torch.tensor(on_harmful + on_safe), len(on_harmful))), label)


def engine_for_run(run_dir: str | Path, model, tokenizer, prompts: Sequence[str], condition: str, budget: int, params: RunParams) -> Engine:
    """The engine a run is evaluated with: a checked vLLM engine, or its model through transformers.

    ``params.backend``: ``"auto"`` (default) uses vLLM when it is installed and CUDA is
    present, and transformers where the engine cannot start (said once, with the reason);
    ``"transformers"`` never uses vLLM; ``"vllm"`` always (an error where it cannot run). A
    zero-shot run loaded in 4-bit (``precision`` ``4bit``) always uses transformers: vLLM would
    answer from 16-bit weights. The adapter check runs once per run: a few of ``prompts``, in the
    run's prompt format, through transformers (``model``) and vLLM with and without the adapter.
    """
    global _start_failure
    backend = params.backend
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, transformers or vllm")
    fallback = TransformersEngine(model, tokenizer, params.eval_batch_size)
    config = read_run_config(run_dir)
    if config.get("precision") == "4bit":
        if backend == "vllm":
            raise ValueError("precision 4bit is evaluated with transformers (bitsandbytes): vLLM serves 16-bit weights; "
                             "use --backend auto or transformers, or another --precision")
        return fallback
    if backend == "transformers" or (backend == "auto" and (not available() or _start_failure)):
        return fallback
    if not available():
        raise RuntimeError("backend='vllm' needs vLLM installed and a CUDA GPU; use backend='auto' to fall back to transformers")
    key = str(Path(run_dir).resolve())
    if key not in _checked:
        try:
            engine = VllmEngine(run_dir, float(params.gpu_memory_utilization), getattr(model.config, "max_position_embeddings", None))
        except Exception as err:  # vLLM raises many kinds at start-up (memory, dtype, kernels)
            if backend == "vllm":
                raise
            _start_failure = f"{type(err).__name__}: {err}"
            log.warning("vLLM could not start (%s); evaluating with transformers instead", _start_failure)
            print(f"vLLM could not start ({_start_failure}); evaluating with transformers instead.")
            return fallback
        if engine.lora is not None:
            probe = [PromptFormat.from_config(config).render(p, condition) for p in list(prompts)[:4]]
            reference = generate(model, tokenizer, probe, max_new_tokens=budget, desc="")
            check_adapter_applied(engine, reference, probe, budget)
        _checked[key] = engine
    return _checked[key]


def check_adapter_applied(engine: VllmEngine, reference: Generation, conversations: Sequence[ModelInput], max_new_tokens: int) -> None:
    """Raise unless vLLM-with-adapter agrees with transformers more than vLLM-without-adapter does.

    ``reference`` is the transformers (adapter applied, verified) output for ``conversations``.
    """
    with_adapter = engine.generate(conversations, max_new_tokens=max_new_tokens).texts
    without = engine.generate(conversations, max_new_tokens=max_new_tokens, lora=False).texts
    agree_with = sum(a == r for a, r in zip(with_adapter, reference.texts))
    agree_without = sum(a == r for a, r in zip(without, reference.texts))
    if with_adapter == without or agree_with < agree_without:
        raise RuntimeError(
            f"vLLM does not apply the LoRA adapter: its outputs match the base model "
            f"({agree_without}/{len(reference.texts)}) rather than transformers with the adapter ({agree_with})"
        )
