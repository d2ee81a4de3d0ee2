"""Peak GPU memory per regime, estimated before anything loads: what ``python -m aims_kit doctor`` prints.

Why: a first GPU user learns that a profile does not fit an hour into a run, at the first DPO
step or when GRPO's rollout engine starts. The estimate adds up what each regime holds at its
peak from the model's shape and the profile's settings: the weights (4-bit NF4 or the policy's
16-bit dtype), the LoRA adapter with its gradients and AdamW state (fp32), the activations a
step keeps (gradient checkpointing on a GPU: one hidden state per layer, plus one layer
recomputed and the LM head's fp32 logits), the KV cache of evaluation, and a vLLM engine's
fixed reservation. It is an estimate, meant to be within tens of percent: enough to tell a
16 GB card from an 80 GB one, not to tune a batch size to the last gigabyte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GIB = 1024 ** 3
#: What the CUDA context and the allocator's fragmentation take before any tensor.
CUDA_OVERHEAD_GIB = 0.8
#: Bytes per trainable LoRA parameter: fp32 weight, fp32 gradient, AdamW's two fp32 moments.
TRAINABLE_BYTES = 16
#: Tokens of one training sequence (the paper's ``max_length``) and of one evaluated prompt plus answer.
TRAIN_TOKENS = 512
EVAL_TOKENS = 1024


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a decoder: its size and the widths that set activations."""

    params: float
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    #: Width of one key (or value) vector per token and layer: kv heads × head dim.
    kv_width: int
    tied_embeddings: bool = False

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """The shape from a model's ``config.json`` (Llama / Qwen / Gemma style keys)."""
        hidden, layers = config["hidden_size"], config["num_hidden_layers"]
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or hidden // heads
        kv_width = config.get("num_key_value_heads", heads) * head_dim
        intermediate, vocab = config["intermediate_size"], config["vocab_size"]
        tied = bool(config.get("tie_word_embeddings", False))
        per_layer = hidden * (heads * head_dim) * 2 + hidden * kv_width * 2 + 3 * hidden * intermediate
        params = layers * per_layer + vocab * hidden * (1 if tied else 2)
        return cls(params, layers, hidden, intermediate, vocab, kv_width, tied)


#: Shapes of the models the profiles name, from their published configs (no download needed).
KNOWN_SHAPES: dict[str, ModelShape] = {
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(8.03e9, 32, 4096, 14336, 128256, 1024),
    "Qwen/Qwen3-0.6B": ModelShape(0.60e9, 28, 1024, 3072, 151936, 1024, tied_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelShape(0.135e9, 30, 576, 1536, 49152, 192, tied_embeddings=True),
}


def model_shape(model: str) -> ModelShape:
    """A profile's model: a known hub id, or a local folder's ``config.json``; else a clear error."""
    if model in KNOWN_SHAPES:
        return KNOWN_SHAPES[model]
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8")))
    raise ValueError(f"no shape known for {model!r}: name one of {', '.join(KNOWN_SHAPES)} or a local model folder with config.json")


def lora_params(shape: ModelShape, rank: int) -> float:
    """Trainable parameters of a rank-``rank`` LoRA on every linear layer of every decoder layer."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_width
    per_layer = rank * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 2 + (i + h))
    return per_layer * shape.layers


def weight_bytes(shape: ModelShape, four_bit: bool) -> float:
    """The base's weights: NF4 with double quantisation (~4.1 bits) for the linear layers, 16-bit embeddings."""
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    if not four_bit:
        return 2 * shape.params
    return 0.52 * (shape.params - embeddings) + 2 * embeddings


def training_activation_bytes(shape: ModelShape, sequences: int, tokens: int = TRAIN_TOKENS, logit_tokens: int | None = None) -> float:
    """One step's activations with gradient checkpointing: a hidden state per layer, one layer
    recomputed, and the LM head's fp32 logits with their gradient at ``logit_tokens`` positions
    per sequence (every position, unless the trainer keeps only the completion's, as GRPO does)."""
    positions = sequences * tokens
    checkpoints = positions * shape.hidden * shape.layers * 2
    one_layer = positions * (6 * shape.hidden + 3 * shape.intermediate) * 2
    logits = sequences * (tokens if logit_tokens is None else logit_tokens) * shape.vocab * 4 * 2
    return checkpoints + one_layer + logits


def kv_cache_bytes(shape: ModelShape, sequences: int, tokens: int = EVAL_TOKENS) -> float:
    """Keys and values of ``sequences`` sequences of ``tokens`` tokens, in 16 bits."""
    return sequences * tokens * shape.layers * 2 * shape.kv_width * 2


def estimate(profile: dict, gpu_gib: float) -> dict[str, dict[str, float]]:
    """Peak GiB per regime for ``profile`` on a GPU of ``gpu_gib``, by component (and ``total``).

    ``gpu_gib`` matters where a vLLM engine reserves its share of the card; the GRPO estimate
    assumes transformers rollouts for a 4-bit policy, as the kit runs them.
    """
    shape = model_shape(profile["model"])
    four_bit = profile.get("quantize") is not False
    weights = weight_bytes(shape, four_bit)
    batch = int(profile.get("batch_size", 8))
    vllm_share = float(profile.get("gpu_memory_utilization", 0.5)) * gpu_gib * GIB
    group = int(profile.get("grpo_prompts_per_step", 4)) * int(profile.get("grpo_num_generations", 8))

    answer = int(profile.get("max_new_tokens", 64))

    def training(rank: int, sequences: int, tokens: int = TRAIN_TOKENS, logit_tokens: int | None = None) -> dict[str, float]:
        return {"weights": weights, "lora + optimizer": lora_params(shape, rank) * TRAINABLE_BYTES,
                "activations": training_activation_bytes(shape, sequences, tokens, logit_tokens)}

    regimes = {
        "sft": training(16, batch),
        "dpo": training(16, 2 * batch),  # chosen and rejected; the reference is the adapter switched off
        "distill": training(32, batch),
        # A rollout is a prompt and a short answer; TRL computes the logits of the answer only.
        "grpo": {**training(16, group, TRAIN_TOKENS // 2 + answer, answer), "rollout kv cache": kv_cache_bytes(shape, group, TRAIN_TOKENS)},
        "eval (transformers)": {"weights": weights, "kv cache": kv_cache_bytes(shape, int(profile.get("eval_batch_size", 64)))},
        "eval (vllm)": {"transformers copy": weights, "vllm reservation": vllm_share},
    }
    out = {}
    for name, parts in regimes.items():
        gib = {part: value / GIB for part, value in parts.items()}
        gib["cuda overhead"] = CUDA_OVERHEAD_GIB
        gib["total"] = sum(gib.values())
        out[name] = gib
    return out


def zero_shot_estimate(model: str, gpu_gib: float, *, four_bit: bool = False, share: float = 0.5, rows: int = 64,
                       tokens: int = EVAL_TOKENS) -> dict[str, dict[str, float]]:
    """Peak GiB of evaluating one model zero-shot (``eval --model``, ``09_released_checkpoints``), per backend.

    ``transformers``: the weights (16-bit, or 4-bit NF4 with ``four_bit``) and the KV cache of
    ``rows`` sequences of ``tokens`` tokens (prompt and answer: a reasoning answer of 2,048
    tokens makes a batch of long sequences). ``vllm``: the transformers copy the kit loads beside
    the engine (it cuts prompts, checks adapters and is the fallback) plus the engine's
    reservation, ``share`` of the card, which must itself hold a 16-bit copy of the weights and
    the engine's KV cache (``vllm kv room``: what is left for it; below 0 the engine cannot
    start). A 4-bit model has no vLLM path. ``total`` excludes ``vllm kv room`` (it is inside the
    reservation).
    """
    shape = model_shape(model)
    weights = weight_bytes(shape, four_bit)
    backends = {"transformers": {"weights": weights, "kv cache": kv_cache_bytes(shape, rows, tokens)}}
    if not four_bit:
        backends["vllm"] = {"transformers copy": weights, "vllm reservation": share * gpu_gib * GIB}
    out = {}
    for name, parts in backends.items():
        gib = {part: value / GIB for part, value in parts.items()}
        gib["cuda overhead"] = CUDA_OVERHEAD_GIB
        gib["total"] = sum(gib.values())
        if name == "vllm":
            gib["vllm kv room"] = share * gpu_gib - weight_bytes(shape, False) / GIB
        out[name] = gib
    return out
