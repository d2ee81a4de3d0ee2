"""vLLM generation for evaluation on a CUDA GPU, with the LoRA adapter applied and checked.

Used when vLLM is installed and CUDA is present (``backend="auto"``); everything else uses
transformers. The paper's own pipeline once served base models while believing adapters were
loaded, so :func:`check_adapter_applied` compares a few greedy vLLM outputs with transformers
outputs of the same run and refuses to continue if vLLM matches the base model instead.

**Memory.** A vLLM engine reserves a fixed share of the GPU when it starts, and a notebook
kernel evaluates many runs, often right after training one. So a kernel holds at most one
engine, for one base model, and every run on that base model reuses it with its own adapter
(a ``LoRARequest``); a run on another base model replaces it. Before an engine starts, the
memory training left behind is released (``gc`` + ``torch.cuda.empty_cache``). Its share is
the ``gpu_memory_utilization`` parameter, :data:`GPU_MEMORY_UTILIZATION` by default: the
transformers copy of the run (adapter check, label scoring) stays on the GPU beside it.

This path needs a GPU; the kit's CPU tests run it against a stand-in ``vllm`` module.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from aims_kit.core.params import RunParams
from aims_kit.core.results import read_run_config
from aims_kit.datasets import formats
from aims_kit.inference.engines import Engine
from aims_kit.inference.engines import Generation
from aims_kit.inference.generation import TransformersEngine, generate
from aims_kit.models.loading import resolve_model_id
from aims_kit.models.precision import has_cuda

#: Share of GPU memory the engine may reserve (``gpu_memory_utilization`` parameter overrides it).
GPU_MEMORY_UTILIZATION = RunParams.gpu_memory_utilization
#: LoRA ranks vLLM accepts as ``max_lora_rank``; the engine takes the smallest one that fits, and
#: at least 32, so SFT (r=16) and distillation (r=32) adapters share one engine.
_VLLM_LORA_RANKS = (32, 64, 128, 256, 512)


def available() -> bool:
    return has_cuda() and importlib.util.find_spec("vllm") is not None


@dataclass
class _Shared:
    """The kernel's one engine and what it was started for."""

    model_id: str
    max_lora_rank: int
    llm: object


_shared: _Shared | None = None
_adapter_ids: dict[str, int] = {}
#: Run folder → its engine, adapter already checked (emptied when the shared engine is replaced).
_checked: dict[str, "VllmEngine"] = {}


def free_training_memory() -> None:
    """Drop unreachable training objects and return their cached CUDA blocks to the driver."""
    gc.collect()
    if has_cuda():
        import torch

        torch.cuda.empty_cache()


def shared_llm(model_id: str, *, max_lora_rank: int, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION):
    """The kernel's engine for ``model_id``, started (or restarted for another model) only when needed.

    An engine already running for ``model_id`` with room for ``max_lora_rank`` is reused as it is;
    its memory share was fixed when it started.
    """
    global _shared
    if _shared is not None and _shared.model_id == model_id and _shared.max_lora_rank >= max_lora_rank:
        return _shared.llm
    from vllm import LLM

    _shared = None  # the previous engine (another base model) goes before the next one starts
    _checked.clear()
    free_training_memory()
    rank = next((r for r in _VLLM_LORA_RANKS if r >= max_lora_rank), max_lora_rank)
    llm = LLM(
        model=model_id, enable_lora=True, max_lora_rank=rank, dtype="bfloat16",
        gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=False,
    )
    _shared = _Shared(model_id, rank, llm)
    return llm


class VllmEngine:
    """Generation through the kernel's shared vLLM engine with one run's adapter (none for zero-shot).

    An :class:`aims_kit.inference.engines.Engine`; it has no one-pass label scoring (``score``
    gives ``None``), so label-only answers are generated.
    """

    backend = "vllm"

    def __init__(self, run_dir: str | Path, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION):
        from vllm.lora.request import LoRARequest

        config = read_run_config(run_dir)
        rank = config.get("train", {}).get("lora", {}).get("r", 16)
        self.llm = shared_llm(resolve_model_id(config["model"]), max_lora_rank=rank, gpu_memory_utilization=gpu_memory_utilization)
        adapter = Path(run_dir) / "adapter"
        self.lora = None
        if (adapter / "adapter_config.json").exists():
            adapter_id = _adapter_ids.setdefault(str(adapter.resolve()), len(_adapter_ids) + 1)
            self.lora = LoRARequest(Path(run_dir).name, adapter_id, str(adapter))

    def score(self, conversations: Sequence[list[dict]], *, desc: str = "") -> None:
        return None

    def device_info(self) -> dict:
        import torch

        return {"device": f"cuda:{torch.cuda.get_device_name()}", "dtype": "vllm", "torch_threads": torch.get_num_threads()}

    def generate(self, conversations: Sequence[list[dict]], *, max_new_tokens: int, stop_strings: Sequence[str] = (),
                 desc: str = "", lora: bool = True) -> Generation:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop_strings), include_stop_str_in_output=True)
        start = time.perf_counter()
        outputs = self.llm.chat(
            list(conversations), params, lora_request=self.lora if lora else None, use_tqdm=False,
            chat_template_kwargs=formats.CHAT_TEMPLATE_KWARGS,
        )
        seconds = time.perf_counter() - start
        return Generation(
            texts=[o.outputs[0].text.strip() for o in outputs],
            new_tokens=[len(o.outputs[0].token_ids) for o in outputs],
            seconds=seconds,
        )


def engine_for_run(run_dir: str | Path, model, tokenizer, prompts: Sequence[str], condition: str, budget: int, params: RunParams) -> Engine:
    """The engine a run is evaluated with: a checked vLLM engine, or its model through transformers.

    ``params.backend``: ``"auto"`` (default) uses vLLM when it is installed and CUDA is
    present, ``"transformers"`` never, ``"vllm"`` always (an error where it cannot run). The
    adapter check runs once per run: a few of ``prompts`` through transformers (``model``) and
    vLLM with and without the adapter.
    """
    backend = params.backend
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, transformers or vllm")
    if backend == "transformers" or (backend == "auto" and not available()):
        return TransformersEngine(model, tokenizer, params.eval_batch_size)
    if not available():
        raise RuntimeError("backend='vllm' needs vLLM installed and a CUDA GPU; use backend='auto' to fall back to transformers")
    key = str(Path(run_dir).resolve())
    if key not in _checked:
        engine = VllmEngine(run_dir, float(params.gpu_memory_utilization))
        if engine.lora is not None:
            probe = [formats.prompt_messages(p, condition) for p in list(prompts)[:4]]
            reference = generate(model, tokenizer, probe, max_new_tokens=budget, desc="")
            check_adapter_applied(engine, reference, probe, budget)
        _checked[key] = engine
    return _checked[key]


def check_adapter_applied(engine: VllmEngine, reference: Generation, conversations: Sequence[list[dict]], max_new_tokens: int) -> None:
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
