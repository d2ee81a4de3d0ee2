"""Training speed of the cpu profile's SFT settings against TRL's defaults, as ratios.

Every variant trains the same model on the same intent → label records, seed and number of
steps; the loss after the last step is printed beside the speed so that a faster setting cannot
hide a broken loss. Variants (each adds to the one before):

- ``TRL defaults``: LoRA on every linear layer of every block, random batches, fp32;
- ``top layers``: LoRA on the top ``--layers`` blocks only (the cpu profile's ``lora_layers``),
  so backpropagation stops there;
- ``+ group by length``: batches of similar length, so less padding is computed;
- ``+ bf16 autocast``: bf16 matmuls on CPUs that have them (measured; the kit keeps fp32 on CPU
  unless this shows a gain).

    python perf/bench_train.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--steps 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aims_kit.models.loading import load_model
from aims_kit.models.lora import LoraSettings
from aims_kit.notebook import experiments
from aims_kit.training.common import TrainSettings, trainer_kwargs
from aims_kit.training.sft import sft_records


def train(model_name: str, settings: TrainSettings, extra: dict, label: str) -> tuple[float, float]:
    """Train ``settings.max_steps`` steps; returns (seconds per step, last training loss)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    splits = experiments.load_splits("", 22)
    model, tokenizer = load_model(model_name)
    config = SFTConfig(
        **{**trainer_kwargs(settings, Path(tempfile.mkdtemp()), with_eval=False), "save_strategy": "no", **extra},
        max_length=settings.max_length,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=settings.lora.to_peft(model),
        train_dataset=Dataset.from_list(sft_records(splits.train, "intent_label")),
    )
    start = time.perf_counter()
    trainer.train()
    per_step = (time.perf_counter() - start) / settings.max_steps
    loss = [h["loss"] for h in trainer.state.log_history if "loss" in h][-1]
    print(f"{label:>22}: {per_step:6.2f} s/step  loss after {settings.max_steps} steps {loss:.3f}", flush=True)
    return per_step, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    base = TrainSettings(learning_rate=1e-3, max_steps=args.steps, batch_size=args.batch_size, eval_steps=args.steps)
    top = replace(base, lora=LoraSettings(top_layers=args.layers))
    variants = [
        ("TRL defaults", base, {}),
        ("top layers", top, {}),
        ("+ group by length", top, {"train_sampling_strategy": "group_by_length"}),
        ("+ bf16 autocast", top, {"train_sampling_strategy": "group_by_length", "bf16": True}),
    ]
    results = {label: train(args.model, settings, extra, label) for label, settings, extra in variants}
    reference = results["TRL defaults"][0]
    for label, (per_step, loss) in results.items():
        print(f"speed ratio {label} / TRL defaults: {reference / per_step:.2f}x (loss {loss:.3f})")


if __name__ == "__main__":
    main()
