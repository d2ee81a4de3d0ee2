"""Inference against the machine's own limit: a roofline per run type, and the kit's path against plain fp32.

For each run (label-only, intent, reasoning) the script evaluates the same prompts twice in this
process, one path after the other:

- **fp32 generation**: the adapter unmerged, fp32 weights, no autocast, every answer decoded
  (label-only too) by ``model.generate`` — what evaluation did before the precision policy;
- **kit, model.generate**: the kit's model and precision, but decoded by ``model.generate``, which
  keeps finished rows in the batch (runs that generate: the decoding lever alone);
- **kit, fixed batches**: the kit's decoding, but each batch decoded until its last row finishes
  before the next starts, in place of the kit's continuous batch, where waiting prompts take the
  places of finished rows (:func:`aims_kit.inference.generation.decode_batch`; runs that generate:
  the refill lever alone);
- **kit, plain weights**: the kit's decoding, but every linear multiplies by its weight in
  PyTorch's layout, which oneDNN reorders at every call, in place of the weights laid out once
  (:mod:`aims_kit.models.packing`; runs that generate: that lever alone, same answers expected);
- **kit**: :func:`aims_kit.models.loading.load_for_inference` (adapter merged, bf16 weights and bf16
  autocast where the CPU multiplies bf16 natively) and :func:`aims_kit.scoring.evaluate.evaluate`
  (label-only runs read their label from one forward pass; every batch runs its prompts' shared
  prefix once, :func:`aims_kit.inference.generation.prefill`, so its "prompt t" column counts the
  tokens each row computes on its own).

It first measures this machine's dense matmul peak (fp32 and bf16), then prints per run and path:
ms/prompt, prompt and generated tokens/prompt, the arithmetic a prompt needs
(2 × non-embedding parameters × tokens, plus the LM head per generated token), the achieved
GFLOP/s and its share of the peak of the dtype the path computes in, F1 with its 95% interval,
and the kit's speed-up and label agreement against fp32, and the floor: the kit's ms/prompt if
its arithmetic ran at the peak.

    python perf/bench_inference.py --run RUNS/sft-label_only-… --run RUNS/sft-intent_label-…
    python perf/bench_inference.py --run RUN --dataset xstest      # the shipped XSTest (450 prompts)
    python perf/bench_inference.py --no-fp32 --repeats 3 --run RUN # the kit and each lever 3 times: medians and ranges
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import weakref
from pathlib import Path

import torch

from aims_kit.core import results
from aims_kit.datasets import benchmarks, formats
from aims_kit.evaluation.runs import answer_budget
from aims_kit.inference import generation
from aims_kit.models import loading as models
from aims_kit.models import packing, precision
from aims_kit.notebook import experiments
from aims_kit.scoring import evaluate as evaluation
from aims_kit.scoring import stats
from aims_kit.scoring.metrics import binary_metrics


def parameter_counts(model) -> tuple[int, int]:
    """(non-embedding parameters, LM-head parameters): what a token costs in the decoder and at the head."""
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    head = model.get_output_embeddings().weight
    tied = head.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return total - embedding - (0 if tied else head.numel()), head.numel()


@contextlib.contextmanager
def fixed_batches():
    """Decode fixed batches (a batch runs until its last row finishes) instead of the kit's continuous batch."""
    kit = generation.REFILL
    generation.REFILL = 1.0  # waiting prompts join only an empty batch
    try:
        yield
    finally:
        generation.REFILL = kit


@contextlib.contextmanager
def model_generate():
    """Decode through ``model.generate`` (finished rows stay in the batch) instead of :func:`generation.decode_batch`."""
    kit = generation.plain_greedy
    generation.plain_greedy = lambda model: False
    try:
        yield
    finally:
        generation.plain_greedy = kit


@contextlib.contextmanager
def plain_weights():
    """Multiply by weights in PyTorch's layout (reordered by oneDNN at every call) instead of the kit's packed ones."""
    kit = packing._PACKED
    packing._PACKED = weakref.WeakKeyDictionary()  # no layer finds its packed weight: the plain call
    try:
        yield
    finally:
        packing._PACKED = kit


def fp32_path(run_dir: Path, frame, condition: str, budget: int, batch_size: int) -> tuple[list[str], float, float]:
    """The plain path: fp32, adapter unmerged, answers decoded. Returns (labels, seconds, generated tokens/prompt)."""
    os.environ[precision.PRECISION_ENV] = "fp32"
    try:
        model, tokenizer = models.load_trained(run_dir)
        _, conversations, _ = generation.classifier_inputs(model, tokenizer, list(frame["Prompt"]), condition, budget)
        stops = () if condition == "label_only" else generation.LABEL_STOPS
        with model_generate():
            gen = generation.generate(model, tokenizer, conversations, max_new_tokens=budget, batch_size=batch_size,
                                      stop_strings=stops, desc="fp32")
    finally:
        os.environ.pop(precision.PRECISION_ENV, None)
    labels = [formats.parse_output(text).label_or_rule() for text in gen.texts]
    return labels, gen.seconds, sum(gen.new_tokens) / len(frame)


def flop_per_prompt(prompt_tokens: float, new_tokens: float, params: tuple[int, int]) -> float:
    """GFLOP a prompt needs: every token through the decoder, the LM head once per generated token (at least once)."""
    body, head = params
    return (2 * body * (prompt_tokens + new_tokens) + 2 * head * max(new_tokens, 1)) / 1e9


def row(name: str, seconds: float, n: int, prompt_tokens: float, new_tokens: float, params: tuple[int, int], peak: float, f1: dict) -> str:
    gflop = flop_per_prompt(prompt_tokens, new_tokens, params)
    achieved = gflop / (seconds / n)
    return (f"  {name:<16} {1000 * seconds / n:9.1f} {prompt_tokens:8.1f} {new_tokens:8.1f} {gflop:8.1f} {achieved:9.1f} "
            f"{100 * achieved / peak:6.1f}%   {f1['f1']:.3f} [{f1['f1_ci_low']:.3f}, {f1['f1_ci_high']:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="a trained run folder (repeat for several)")
    parser.add_argument("--dataset", default="aims_test", help="aims_test (the sample's test split) or a benchmark name found locally")
    parser.add_argument("--prompts", type=int, default=0, help="at most this many prompts (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-tokens", type=int, default=generation.GENERATE_BATCH_TOKENS,
                        help="padded prompt tokens a generation batch may hold (the kit's planner)")
    parser.add_argument("--no-fp32", action="store_true", help="skip the plain fp32 path (compare the kit's own levers only)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time the kit's path and each lever this many times and report medians (this machine's passes move ±10%%)")
    args = parser.parse_args()
    generation.GENERATE_BATCH_TOKENS = args.batch_tokens

    if args.dataset == "aims_test":
        frame = experiments.load_splits("", 22).test
    else:
        found = benchmarks.discover([args.dataset], sources=["local"])[0]
        if found.frame is None:
            raise SystemExit(f"{args.dataset}: {found.note}")
        frame = found.frame
    frame = frame.head(args.prompts) if args.prompts else frame
    peaks = {"float32": precision.matmul_peak(torch.float32), "bfloat16": precision.matmul_peak(torch.bfloat16)}
    print(f"{len(frame)} prompts of {args.dataset}, {torch.get_num_threads()} threads; matmul peak: "
          f"fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s (native bf16: {precision.cpu_has_fast_bf16()})")
    print(f"  {'path':<16} {'ms/prompt':>9} {'prompt t':>8} {'gen t':>8} {'GFLOP/p':>8} {'GFLOP/s':>9} {'%peak':>7}   F1 [95% CI]")
    for run_dir in args.run:
        config = results.read_run_config(run_dir)
        condition = config["condition"]
        budget = answer_budget(config)
        print(f"{config['regime']} {condition} {config.get('variant') or ''} ({Path(run_dir).name}), answer budget {budget}")

        kit_model, tokenizer = models.load_for_inference(run_dir)
        params = parameter_counts(kit_model)
        conversations = [formats.prompt_messages(p, condition) for p in frame["Prompt"]]
        encoded = generation.chat_inputs(tokenizer, conversations)
        prompt_tokens = sum(map(len, encoded)) / len(frame)
        # The kit runs the prompts' shared prefix once per batch (generation.prefill): its rows compute the rest.
        own_tokens = prompt_tokens - generation.shared_prefix_length(encoded)
        # warm-up (oneDNN picks its kernels on first use), so the first timed path pays no more than the others
        evaluation.evaluate(kit_model, tokenizer, frame.head(4), condition=condition, dataset=args.dataset,
                            max_new_tokens=budget, latency_sample=0, n_boot=0)
        def timed_passes(name):
            """The evaluation ``--repeats`` times (with whatever lever is undone around it): the first pass's
            metrics and predictions, and every pass's ms/prompt, sorted."""
            passes = [evaluation.evaluate(kit_model, tokenizer, frame, condition=condition, dataset=args.dataset,
                                          batch_size=args.batch_size, max_new_tokens=budget, latency_sample=0, n_boot=1000)
                      for _ in range(max(args.repeats, 1))]
            ms = sorted(m["ms_per_prompt"] for m, _ in passes)
            if len(passes) > 1:
                same = all([p["output"] for p in other] == [p["output"] for p in passes[0][1]] for _, other in passes[1:])
                print(f"  {name} over {len(passes)} passes: {ms[0]:.1f}-{ms[-1]:.1f} ms/prompt (median below); "
                      f"the same answers in every pass: {same}")
            return (*passes[0], ms)

        metrics, predictions, kit_ms = timed_passes("kit")
        kit_labels = [p["pred"] for p in predictions]
        kit_seconds = statistics.median(kit_ms) * len(frame) / 1000
        # the kit's path with one lever undone at a time (runs that generate): row name, prompt tokens counted,
        # the lever, what stands in for it, and that path's metrics, predictions and sorted ms/prompt
        levers = []
        if metrics["label_method"] == "generated":
            def rerun(undo, instead):
                with undo():
                    return (instead, *timed_passes(f"with {instead}"))
            levers = [("kit, generate()", prompt_tokens, "greedy path (shared prefix once, finished rows dropped)",
                       *rerun(model_generate, "model.generate")),
                      ("kit, fixed batches", own_tokens, "continuous batch", *rerun(fixed_batches, "fixed batches")),
                      ("kit, plain weights", own_tokens, "packed weights", *rerun(plain_weights, "plain weights"))]
        del kit_model

        f1_kit = {"f1": metrics["f1"], "f1_ci_low": metrics["f1_ci_low"], "f1_ci_high": metrics["f1_ci_high"]}
        if not args.no_fp32:
            fp32_labels, fp32_seconds, fp32_tokens = fp32_path(run_dir, frame, condition, budget, args.batch_size)
            gold = list(frame["label"])
            f1_fp32 = {**binary_metrics(gold, fp32_labels), **stats.bootstrap_ci(gold, fp32_labels)}
            print(row("fp32 generation", fp32_seconds, len(frame), prompt_tokens, fp32_tokens, params, peaks["float32"], f1_fp32))
        kit_name = f"kit ({metrics['compute_dtype']}, {metrics['label_method']})"
        peak = peaks.get(metrics["compute_dtype"], peaks["float32"])
        for name, tokens, lever, instead, other, other_predictions, other_ms in levers:
            other_seconds = statistics.median(other_ms) * len(frame) / 1000
            print(row(name, other_seconds, len(frame), tokens, other["tokens_per_prompt"], params, peak,
                      {key: other[key] for key in ("f1", "f1_ci_low", "f1_ci_high")}))
            same_text = sum(a["output"] == b["output"] for a, b in zip(other_predictions, predictions)) / len(frame)
            same_label = sum(a["pred"] == b["pred"] for a, b in zip(other_predictions, predictions)) / len(frame)
            print(f"  kit's {lever}: {other_seconds / kit_seconds:.2f}x faster than {instead}; "
                  f"identical answers {same_text:.3f}, labels {same_label:.3f}")
        print(row(kit_name[:16], kit_seconds, len(frame), own_tokens, metrics["tokens_per_prompt"], params, peak, f1_kit))
        floor = 1000 * flop_per_prompt(own_tokens, metrics["tokens_per_prompt"], params) / peak
        print(f"  floor: {floor:.1f} ms/prompt if the kit's arithmetic ran at this machine's {metrics['compute_dtype']} peak; "
              f"kit / floor {kit_ms[0] / floor:.2f}-{kit_ms[-1] / floor:.2f}x")
        if args.no_fp32:
            continue
        agree = sum(a == b for a, b in zip(kit_labels, fp32_labels)) / len(frame)
        within = f1_fp32["f1_ci_low"] <= metrics["f1"] <= f1_fp32["f1_ci_high"]
        print(f"  speed-up {fp32_seconds / kit_seconds:.2f}x; label agreement with fp32 {agree:.3f}; "
              f"kit F1 within the fp32 95% CI: {within}")


if __name__ == "__main__":
    main()
