"""Inference speed: the kit's batched evaluation against a naive one-prompt-at-a-time loop.

Both run in this process on the same model and prompts; the script prints prompts/s for each,
the ratio, and whether the labels agree; for a label-only run also the one-forward-pass label
scoring (P(harmful) from the first answer token) and its agreement with generation. Target with
the cpu profile's SmolLM2-135M on 2 CPU cores: the kit at least 8x the naive baseline with
identical labels.

    python perf/bench_inference.py                 # trains a small SFT run first (~1 min)
    python perf/bench_inference.py --run RUN_DIR   # or measure an existing run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from aims_kit import evaluation, experiments, formats, profiles, results
from aims_kit.models import load_trained


def naive_labels(model, tokenizer, prompts: list[str], condition: str, max_new_tokens: int) -> tuple[list[str], float]:
    """One ``generate`` call per prompt, default settings: what a first script would do."""
    labels = []
    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(formats.prompt_messages(prompt, condition), add_generation_prompt=True, return_tensors="pt", return_dict=True)
            out = model.generate(**ids, max_new_tokens=max_new_tokens)
            text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            labels.append(formats.parse_output(text).label_or_rule())
    return labels, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run folder (default: train a small one)")
    parser.add_argument("--prompts", type=int, default=85, help="how many AIMS test prompts")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    splits = experiments.load_splits("", 22)
    run_dir = args.run
    if run_dir is None:
        params = profiles.profile_parameters("cpu", {"max_steps": 120, "eval_limit": 8, "latency_sample": 0, "n_boot": 0})
        run_dir = experiments.sft_run(params, splits, "intent_label", Path(tempfile.mkdtemp()))
    condition = results.read_run_config(run_dir)["condition"]
    max_new = 48
    frame = splits.test.head(args.prompts)
    prompts = list(frame["Prompt"])
    model, tokenizer = load_trained(run_dir)

    metrics, predictions = evaluation.evaluate(
        model, tokenizer, frame, condition=condition, dataset="bench", batch_size=args.batch_size,
        max_new_tokens=max_new, latency_sample=0, n_boot=0,
    )
    kit_seconds = metrics["ms_per_prompt"] * len(prompts) / 1000
    naive, naive_seconds = naive_labels(model, tokenizer, prompts, condition, max_new)
    agree = sum(p["pred"] == n for p, n in zip(predictions, naive)) / len(prompts)

    print(f"model: {run_dir} ({condition}), {len(prompts)} prompts, {torch.get_num_threads()} threads, {metrics['device']}")
    print(f"kit   : {len(prompts) / kit_seconds:8.1f} prompts/s  (batch {args.batch_size}, {metrics['tokens_per_prompt']:.1f} tokens/prompt)")
    print(f"naive : {len(prompts) / naive_seconds:8.1f} prompts/s  (one generate per prompt)")
    print(f"ratio : {naive_seconds / kit_seconds:8.1f}x   label agreement {agree:.3f}")
    if metrics.get("score_ms_per_prompt"):
        print(f"score : {1000 / metrics['score_ms_per_prompt']:8.1f} prompts/s  (label scoring, one forward pass; "
              f"agreement with generation {metrics['score_agreement']:.3f})")


if __name__ == "__main__":
    main()
