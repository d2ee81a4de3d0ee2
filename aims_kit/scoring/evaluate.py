"""Evaluation: parsing, metrics and latency as the paper measured it, and the prediction records.

Answers come from :mod:`aims_kit.inference.generation`; this module scores them. Throughput latency
(docs/design.md §Evaluation) is the wall clock of generating the whole set in batches
divided by the number of prompts; generated tokens per prompt go beside it because a model that
reasons at length pays for it there. Single-request latency (p50 / p95 ms at batch size 1 over a
fixed sample) is what one user waiting for one verdict sees; both are recorded.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from aims_kit.datasets import formats
from aims_kit.datasets.prompt_formats import PromptFormat
from aims_kit.inference.engines import Engine
from aims_kit.inference.generation import (
    Generation,
    TransformersEngine,
    agreeing,
    classifier_inputs,
    generate_answers,
)
from aims_kit.scoring import metrics, probes, stats


def latency_sample_indices(n_items: int, sample: int) -> list[int]:
    """A fixed, evenly spaced sample of row positions (same rows on every run of the same set)."""
    if sample <= 0 or n_items == 0:
        return []
    if sample >= n_items:
        return list(range(n_items))
    return sorted({round(i * (n_items - 1) / (sample - 1)) for i in range(sample)}) if sample > 1 else [0]


def single_request_latency(run_one: Callable[[int], object], n_items: int, sample: int = 16, *, warm_up: bool = True) -> dict:
    """p50 / p95 wall-clock ms of ``run_one(i)`` (one request, batch size 1) over a fixed sample.

    With ``warm_up``, one untimed call first, so a lazy first-call cost (kernel compilation,
    allocator) does not land in the percentiles. A caller that has just run the same model on
    the same prompts has paid that cost already and may skip it.
    """
    indices = latency_sample_indices(n_items, sample)
    if not indices:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_n": 0, "latency_batch_size": 1}
    if warm_up:
        run_one(indices[0])
    times = []
    for i in indices:
        start = time.perf_counter()
        run_one(i)
        times.append(1000 * (time.perf_counter() - start))
    p50, p95 = np.percentile(times, [50, 95])
    return {"latency_p50_ms": float(p50), "latency_p95_ms": float(p95), "latency_n": len(times), "latency_batch_size": 1}


@lru_cache(maxsize=1)
def _similarity_judge():
    from aims_kit.scoring.judges import EmbeddingJudge

    return EmbeddingJudge()


def intent_quality(intents: Sequence[str | None], gold_intents: Sequence[str] | None = None) -> dict:
    """How the written intents read, for any run that writes them (empty dict otherwise).

    ``intent_repeat_rate``: share of the written intents that repeat a four-word sequence (a
    sentence about the prompt does not; a model stuck in a loop does). ``intent_similarity``:
    mean cosine similarity of the offline intent judge (MiniLM) between each human intent and the
    predicted one, a missing prediction counting as an empty one; only where ``gold_intents``
    are known (the AIMS splits).
    """
    written = [intent for intent in intents if intent]
    if not written:
        return {}
    quality = {"intent_repeat_rate": float(np.mean([probes.repeats_ngram(intent) for intent in written]))}
    if gold_intents is not None:
        pairs = [(gold, intent or "") for gold, intent in zip(gold_intents, intents) if isinstance(gold, str) and gold.strip()]
        if pairs:
            quality["intent_similarity"] = float(np.mean(_similarity_judge().similarity(pairs)))
    return quality


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
    engine: Engine | None = None,
    prompt_format: PromptFormat | None = None,
) -> tuple[dict, list[dict]]:
    """Classify ``frame['Prompt']`` and score against ``frame['label']``.

    ``prompt_format`` renders each prompt (default: the kit's chat + instruction); the record names it.

    ``engine`` writes the answers (:class:`aims_kit.inference.engines.Engine`); without one,
    ``model`` through transformers in batches of ``batch_size``. ``model`` and ``tokenizer``
    still cut over-long prompts and name the device. A served model has no local weights: they are
    then ``None`` and the engine (:class:`aims_kit.inference.engines.EndpointEngine`) names the device.

    Returns ``(metrics, predictions)``: metrics include F1, precision, recall, accuracy, AUROC and
    AUPRC of P(harmful) where the engine reads it (:func:`aims_kit.scoring.metrics.threshold_free`), the
    parse-failure rate and rule, how the intents read (:func:`intent_quality`), ms/prompt
    (batched throughput), single-request p50/p95 ms over
    ``latency_sample`` prompts (0: skip), bootstrap 95% intervals from ``n_boot`` resamples
    (0: skip), tokens/prompt, the trivial baselines and the device.
    """
    if len(frame) == 0:
        raise ValueError(f"{dataset}: nothing to evaluate (0 rows)")
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    prompt_format = prompt_format or PromptFormat()
    _, conversations, n_truncated = classifier_inputs(model, tokenizer, list(frame["Prompt"]), condition, max_new_tokens,
                                                      prompt_format)
    engine = engine or TransformersEngine(model, tokenizer, batch_size)

    def run(convs: list, desc: str) -> Generation:
        return generate_answers(engine, convs, condition=condition, max_new_tokens=max_new_tokens, desc=desc)

    gen = run(conversations, f"eval {dataset}")
    # The batched pass just above ran this model on these prompts: no separate warm-up call
    # (on a CPU it would cost as much as one timed request per run and benchmark).
    latency = single_request_latency(lambda i: run([conversations[i]], ""), len(conversations), latency_sample, warm_up=False)
    if was_training:
        model.train()
    parsed = [formats.parse_output(t) for t in gen.texts]
    gold = list(frame["label"])
    pred = [p.label_or_rule() for p in parsed]
    ids = frame["ID"].astype(str).tolist() if "ID" in frame else [str(i) for i in range(len(frame))]
    ok = [p.ok for p in parsed]
    p_harmful = parsed_only(gen.p_harmful, [p.label for p in parsed])
    result = {
        **label_metrics(gold, pred, ok, p_harmful, n_boot=n_boot),
        "parse_rule": f"unparseable -> {formats.PARSE_FAILURE_RULE}",
        "prompt_format": prompt_format.name,
        "ms_per_prompt": 1000 * gen.seconds / len(frame),
        "tokens_per_prompt": sum(gen.new_tokens) / len(frame),
        "truncated_prompts": n_truncated,
        **intent_quality([p.intent for p in parsed], list(frame["Intent"]) if "Intent" in frame else None),
        "label_method": gen.method,
        **latency,
        "batch_size": batch_size,
        "backend": engine.backend,
        # The engine that wrote the answers names the device and dtype (vLLM answers from its own
        # copy of the base, not from the transformers model that cut the prompts).
        **engine.device_info(),
    }
    predictions = prediction_rows(ids, list(frame["Prompt"]), gold, pred, ok, [p.intent for p in parsed], gen.texts,
                                  gen.new_tokens, p_harmful)
    return result, predictions


def parsed_only(p_harmful: Sequence[float | None] | None, labels: Sequence[formats.Label | None]) -> list[float | None] | None:
    """P(harmful) of the rows whose label was read, on that label's side of 0.5; ``None`` for the others.

    An unread answer has no probability (it is not "certainly safe"). Whatever engine read P,
    P >= 0.5 exactly when the parsed label is harmful (:func:`aims_kit.inference.generation.agreeing`;
    transformers' own reading already is).
    """
    if p_harmful is None:
        return None
    return [None if label is None or p is None or p != p else agreeing(float(p), label) for p, label in zip(p_harmful, labels)]


def label_metrics(gold: Sequence[str], pred: Sequence[str], parsed: Sequence[bool],
                  p_harmful: Sequence[float | None] | None, *, n_boot: int) -> dict:
    """What every record says of its labels and P(harmful): generative runs and the encoder alike.

    F1, precision, recall, accuracy and counts, bootstrap 95% intervals from ``n_boot``
    resamples (0: skip), the trivial baselines, AUROC / AUPRC of ``p_harmful`` over the rows that
    have one with how many have none (:func:`aims_kit.scoring.metrics.threshold_free`; nothing
    when ``p_harmful`` is ``None``), and beside them the parse-failure rate (``parsed``: whether
    each row's label was read).
    """
    return {
        **metrics.binary_metrics(gold, pred),
        **(stats.bootstrap_ci(gold, pred, n_boot=n_boot) if n_boot else {}),
        **metrics.trivial_baselines(gold),
        **(metrics.threshold_free(gold, p_harmful) if p_harmful is not None else {}),
        "parse_failure_rate": sum(not ok for ok in parsed) / len(parsed),
    }


def prediction_rows(ids: Sequence[str], prompts: Sequence[str], gold: Sequence[str], pred: Sequence[str],
                    parsed: Sequence[bool], intents: Sequence[str | None], outputs: Sequence[str],
                    new_tokens: Sequence[int], p_harmful: Sequence[float | None] | None) -> list[dict]:
    """One predictions-file line per row (``p_harmful`` only where the classifier reads one)."""
    return [
        {
            "id": row_id, "prompt": prompt, "gold": g, "pred": p, "parsed": ok, "intent": intent, "output": text,
            "new_tokens": n, **({"p_harmful": p_harmful[i]} if p_harmful is not None else {}),
        }
        for i, (row_id, prompt, g, p, ok, intent, text, n)
        in enumerate(zip(ids, prompts, gold, pred, parsed, intents, outputs, new_tokens))
    ]
