"""vLLM generation for evaluation on a CUDA GPU, with the LoRA adapter applied and checked.

Used when vLLM is installed and CUDA is present (``backend="auto"``); everything else uses
transformers. The paper's own pipeline once served base models while believing adapters were
loaded, so :func:`check_adapter_applied` compares a few greedy vLLM outputs with transformers
outputs of the same run and refuses to continue if vLLM matches the base model instead.

This path needs a GPU; the kit's CPU tests cannot exercise it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Sequence

from . import formats
from .evaluation import Generation
from .models import has_cuda, resolve_model_id
from .results import read_run_config


def available() -> bool:
    return has_cuda() and importlib.util.find_spec("vllm") is not None


class VllmEngine:
    """One vLLM instance for a run's base model, generating with the run's adapter."""

    def __init__(self, run_dir: str | Path, gpu_memory_utilization: float = 0.8):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        config = read_run_config(run_dir)
        rank = config.get("train", {}).get("lora", {}).get("r", 16)
        self.llm = LLM(
            model=resolve_model_id(config["model"]), enable_lora=True, max_lora_rank=max(16, rank),
            dtype="bfloat16", gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=False,
        )
        self.lora = LoRARequest(Path(run_dir).name, 1, str(Path(run_dir) / "adapter"))

    def generate(self, conversations: Sequence[list[dict]], *, max_new_tokens: int, stop_strings: Sequence[str] = (), lora: bool = True) -> Generation:
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
