"""Evaluation: batched greedy generation, parsing, metrics and latency as the paper measured it.

Throughput latency (DESIGN.md §6) is the wall clock of generating the whole set in batches
divided by the number of prompts; generated tokens per prompt go beside it because a model that
reasons at length pays for it there. Single-request latency (p50 / p95 ms at batch size 1 over a
fixed sample) is what one user waiting for one verdict sees; both are recorded.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import formats, metrics, stats
from .progress import progress


@dataclass
class Generation:
    texts: list[str]
    new_tokens: list[int]
    seconds: float


def chat_inputs(tokenizer, conversations: Sequence[list[dict]]) -> list[list[int]]:
    """Token ids of each conversation with the assistant turn opened (the generation prompt)."""
    return [
        list(tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=False))
        for conv in conversations
    ]


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    desc: str = "generating",
) -> Generation:
    """Generate for every conversation, batched by similar length with left padding and KV cache.

    Rows are sorted by prompt length so a batch wastes little on padding, then put back in
    input order. With ``num_return_sequences=k`` the outputs of row i are at ``i*k … i*k+k-1``.
    """
    encoded = chat_inputs(tokenizer, conversations)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    k = num_return_sequences
    texts: list[str] = [""] * (len(encoded) * k)
    counts: list[int] = [0] * (len(encoded) * k)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id
    start = time.perf_counter()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress(batches, desc=desc, unit="batch"):
        ids = [encoded[i] for i in batch]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in ids], device=model.device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=model.device)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=None,
            top_k=None,
            num_return_sequences=k,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            use_cache=True,
        )
        new = out[:, width:].tolist()
        for j, seq in enumerate(new):
            row, sample = batch[j // k], j % k
            used = _until_eos(seq, eos_ids)
            texts[row * k + sample] = tokenizer.decode(used, skip_special_tokens=True).strip()
            counts[row * k + sample] = len(used) + (1 if len(used) < len(seq) else 0)
    return Generation(texts=texts, new_tokens=counts, seconds=time.perf_counter() - start)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _until_eos(seq: list[int], eos_ids: list[int]) -> list[int]:
    for position, token in enumerate(seq):
        if token in eos_ids:
            return seq[:position]
    return seq


def device_info(model) -> dict:
    """Where latency was measured, so a plot never mixes hardware silently."""
    device = model.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": f"{device.type}:{name}",
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
    }


def latency_sample_indices(n_items: int, sample: int) -> list[int]:
    """A fixed, evenly spaced sample of row positions (same rows on every run of the same set)."""
    if sample <= 0 or n_items == 0:
        return []
    if sample >= n_items:
        return list(range(n_items))
    return sorted({round(i * (n_items - 1) / (sample - 1)) for i in range(sample)}) if sample > 1 else [0]


def single_request_latency(run_one: Callable[[int], object], n_items: int, sample: int = 16) -> dict:
    """p50 / p95 wall-clock ms of ``run_one(i)`` (one request, batch size 1) over a fixed sample.

    One untimed warm-up call first, so a lazy first-call cost (kernel compilation, allocator) does
    not land in the percentiles.
    """
    indices = latency_sample_indices(n_items, sample)
    if not indices:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_n": 0, "latency_batch_size": 1}
    run_one(indices[0])
    times = []
    for i in indices:
        start = time.perf_counter()
        run_one(i)
        times.append(1000 * (time.perf_counter() - start))
    p50, p95 = np.percentile(times, [50, 95])
    return {"latency_p50_ms": float(p50), "latency_p95_ms": float(p95), "latency_n": len(times), "latency_batch_size": 1}


def evaluate(
    model,
    tokenizer,
    frame: pd.DataFrame,
    *,
    condition: formats.Condition,
    dataset: str,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    latency_sample: int = 16,
    n_boot: int = 1000,
) -> tuple[dict, list[dict]]:
    """Classify ``frame['Prompt']`` and score against ``frame['label']``.

    Returns ``(metrics, predictions)``: metrics include F1, precision, recall, accuracy, the
    parse-failure rate and rule, ms/prompt (batched throughput), single-request p50/p95 ms over
    ``latency_sample`` prompts (0: skip), bootstrap 95% intervals from ``n_boot`` resamples
    (0: skip), tokens/prompt, the trivial baselines and the device.
    """
    if len(frame) == 0:
        raise ValueError(f"{dataset}: nothing to evaluate (0 rows)")
    was_training = model.training
    model.eval()
    conversations = [formats.prompt_messages(p, condition) for p in frame["Prompt"]]
    gen = generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=f"eval {dataset}")
    latency = single_request_latency(
        lambda i: generate(model, tokenizer, [conversations[i]], max_new_tokens=max_new_tokens, batch_size=1, desc=""),
        len(conversations),
        latency_sample,
    )
    if was_training:
        model.train()
    parsed = [formats.parse_output(t) for t in gen.texts]
    gold = list(frame["label"])
    pred = [p.label_or_rule() for p in parsed]
    ids = frame["ID"].astype(str).tolist() if "ID" in frame else [str(i) for i in range(len(frame))]
    result = {
        **metrics.binary_metrics(gold, pred),
        **(stats.bootstrap_ci(gold, pred, n_boot=n_boot) if n_boot else {}),
        **metrics.trivial_baselines(gold),
        "parse_failure_rate": sum(not p.ok for p in parsed) / len(parsed),
        "parse_rule": f"unparseable -> {formats.PARSE_FAILURE_RULE}",
        "ms_per_prompt": 1000 * gen.seconds / len(frame),
        "tokens_per_prompt": sum(gen.new_tokens) / len(frame),
        **latency,
        "batch_size": batch_size,
        "backend": "transformers",
        **device_info(model),
    }
    predictions = [
        {
            "id": row_id,
            "prompt": prompt,
            "gold": g,
            "pred": p.label_or_rule(),
            "parsed": p.ok,
            "intent": p.intent,
            "output": text,
            "new_tokens": n,
        }
        for row_id, prompt, g, p, text, n in zip(ids, frame["Prompt"], gold, parsed, gen.texts, gen.new_tokens)
    ]
    return result, predictions
