"""Which rollout temperature gives GRPO something to learn from? Measured on the validation split.

GRPO learns only from differences between the rollouts of one prompt: if every rollout gets the
same reward (all wrong-format, or all the same label), the group's advantage is zero. For an SFT
run this prints, per temperature, how often rollouts keep the format, how often their label is
right, and the share of prompts whose rollouts disagree on the reward (the ones that teach). The
cpu profile's ``grpo_temperature`` was chosen with it — on validation prompts only.

    python perf/grpo_rollouts.py RUN_DIR [--temperatures 0.7 0.9 1.2] [--prompts 24] [--rollouts 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aims_kit.core import results
from aims_kit.datasets import aims as data
from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models.loading import load_trained
from aims_kit.notebook import experiments
from aims_kit.training import rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="an SFT intent_label run folder")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.9, 1.2])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    config = results.read_run_config(args.run_dir)
    source = "" if config["data_source"] == "aims-kit sample" else config["data_source"]
    val = data.balanced_head(experiments.load_splits(source, config["seed"]).val, args.prompts)
    model, tokenizer = load_trained(args.run_dir)
    conversations = [formats.prompt_messages(p, "intent_label") for p in val["Prompt"]]
    k = args.rollouts
    for temperature in args.temperatures:
        out = generation.generate(
            model, tokenizer, conversations, max_new_tokens=args.max_new_tokens, do_sample=True,
            temperature=temperature, num_return_sequences=k, desc=f"T={temperature}",
        )
        labels = [label for label in val["label"] for _ in range(k)]
        fmt = rewards.format_reward(out.texts)
        right = rewards.label_reward(out.texts, label=labels)
        scores = [f * r for f, r in zip(fmt, right)]
        groups = [scores[i * k:(i + 1) * k] for i in range(len(val))]
        teaching = sum(len(set(g)) > 1 for g in groups) / len(groups)
        print(
            f"T={temperature:4.2f}: format kept {sum(f > 0 for f in fmt) / len(fmt):.2f}, "
            f"right label {sum(right) / len(right):.2f}, mean format×label reward {sum(scores) / len(scores):.2f}, "
            f"prompts whose rollouts disagree {teaching:.2f}"
        )


if __name__ == "__main__":
    main()
