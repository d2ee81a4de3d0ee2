"""Where a generating evaluation's time goes, batch plan by batch plan: prompt passes, decoding steps, cache copies.

For one trained run the script evaluates the same prompts once per plan, in this process, in the
order given (repeat a plan to see the machine's spread), and times every forward pass of the model
(a prompt pass has more than one new token, a decoding step one), the rows a decoding step carries,
the copies of the cache when rows leave (``batch_select_indices``) and when waiting prompts join
(``ReservedCache.join``). A plan is ``ROWS/TOKENS/REFILL``: ``batch_size`` prompts,
:data:`aims_kit.inference.generation.GENERATE_BATCH_TOKENS` padded prompt tokens, and
:data:`aims_kit.inference.generation.REFILL` (1.0: fixed batches, each decoded to its last row;
0.25: the kit's continuous batch). Each line after the first gives the time as a ratio to the first
plan's and the label agreement with it.

    python perf/bench_batching.py RUNS/distill-human_intent-… 64/4096/1.0 64/8192/0.25 64/4096/1.0 64/8192/0.25
    python perf/bench_batching.py RUN 64/8192/0.25 --dataset openai_moderation --prompts 100
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from aims_kit.core import results
from aims_kit.datasets import benchmarks
from aims_kit.evaluation.runs import answer_budget
from aims_kit.inference import generation, kv_cache
from aims_kit.models import loading as models
from aims_kit.models.precision import cpu_name, model_precision
from aims_kit.notebook import experiments
from aims_kit.scoring import evaluate as evaluation


class Timings:
    """Seconds and counts per part, filled by wrappers around the model's forward and the cache's copies."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.rows: list[int] = []
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds
        self.calls[part] += 1

    def wrap(self, owner, name: str, part: str) -> None:
        """Time every call of ``owner.name`` as ``part``."""
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - start)

        setattr(owner, name, timed)

    def wrap_forward(self, model) -> None:
        """Time the model's forward passes, split into prompt passes and decoding steps (with their rows)."""
        real = model.forward

        def forward(*args, **kwargs):
            start = time.perf_counter()
            out = real(*args, **kwargs)
            shape = kwargs["input_ids"].shape
            if shape[1] == 1:
                self.rows.append(shape[0])
            self.add("decoding steps" if shape[1] == 1 else "prompt passes", time.perf_counter() - start)
            return out

        model.forward = forward


def prompts(dataset: str, n: int):
    """AIMS test, or a benchmark found locally, at most ``n`` prompts (a seeded sample; 0: all)."""
    if dataset == "aims_test":
        frame = experiments.load_splits("", 22).test
    else:
        found = benchmarks.discover([dataset], sources=["local"])[0]
        if found.frame is None:
            raise SystemExit(f"{dataset}: {found.note}")
        frame = found.frame
    return frame.sample(n, random_state=1) if 0 < n < len(frame) else frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained run folder that generates (intent, reasoning)")
    parser.add_argument("plans", nargs="+", help="ROWS/TOKENS/REFILL, e.g. 64/4096/1.0 (fixed) 64/8192/0.25 (continuous)")
    parser.add_argument("--dataset", default="aims_test")
    parser.add_argument("--prompts", type=int, default=0, help="at most this many prompts (0: all)")
    args = parser.parse_args()

    frame = prompts(args.dataset, args.prompts)
    config = results.read_run_config(args.run)
    condition, budget = config["condition"], answer_budget(config)
    model, tokenizer = models.load_for_inference(args.run)
    print(f"{config['regime']} {condition} ({args.run.name}), {len(frame)} prompts of {args.dataset}, answer budget {budget}; "
          f"{cpu_name()}, computes in {model_precision(model).compute_dtype}")
    timings = Timings()
    timings.wrap_forward(model)
    timings.wrap(kv_cache.ReservedCache, "batch_select_indices", "row drops")
    timings.wrap(kv_cache.ReservedCache, "join", "joins")
    # warm-up: oneDNN picks its kernels on first use
    evaluation.evaluate(model, tokenizer, frame.head(4), condition=condition, dataset=args.dataset,
                        max_new_tokens=budget, latency_sample=0, n_boot=0)
    first_seconds, first_labels = None, None
    for plan in args.plans:
        rows, tokens, refill = plan.split("/")
        generation.GENERATE_BATCH_TOKENS, generation.REFILL = int(tokens), float(refill)
        timings.reset()
        start = time.perf_counter()
        metrics, predictions = evaluation.evaluate(model, tokenizer, frame, condition=condition, dataset=args.dataset,
                                                   batch_size=int(rows), max_new_tokens=budget, latency_sample=0, n_boot=0)
        seconds = time.perf_counter() - start
        labels = [p["pred"] for p in predictions]
        first_seconds, first_labels = first_seconds or seconds, first_labels or labels
        agree = sum(a == b for a, b in zip(labels, first_labels)) / len(labels)
        parts = ", ".join(f"{part} {s:.1f} s ({timings.calls[part]})" for part, s in timings.seconds.items())
        mean_rows = sum(timings.rows) / max(1, len(timings.rows))
        print(f"{plan:>14}: {seconds:6.1f} s ({seconds / first_seconds:.2f}x), F1 {metrics['f1']:.3f}, labels agree {agree:.3f}; "
              f"mean rows a step {mean_rows:.1f}; {parts}", flush=True)


if __name__ == "__main__":
    main()
