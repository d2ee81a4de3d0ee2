"""Training throughput: SFT tokens/s with the kit's configuration against TRL's defaults.

Same tiny random model, data, seed and number of steps; the loss after the last step is printed
beside the speed so a faster setting cannot hide a broken loss.

    python perf/bench_train.py [--steps 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aims_kit import experiments
from aims_kit.models import load_model
from aims_kit.training.common import TrainSettings, trainer_kwargs
from aims_kit.training.sft import sft_records


def train(config_kwargs: dict, steps: int, label: str) -> tuple[float, float]:
    """Train ``steps`` steps; returns (tokens per second, last training loss)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from aims_kit.models import LoraSettings

    splits = experiments.load_splits("", 22)
    model, tokenizer = load_model("tiny-random")
    config = SFTConfig(**config_kwargs)
    trainer = SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=LoraSettings().to_peft(),
        train_dataset=Dataset.from_list(sft_records(splits.train, "intent_label")),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen or sum(h.get("num_tokens", 0) for h in trainer.state.log_history[-2:-1])
    loss = [h["loss"] for h in trainer.state.log_history if "loss" in h][-1]
    print(f"{label:>12}: {tokens / seconds:9.0f} tokens/s  {seconds:6.1f} s  loss after {steps} steps {loss:.3f}")
    return tokens / seconds, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    settings = TrainSettings(learning_rate=3e-3, max_steps=args.steps, batch_size=16, eval_steps=args.steps)
    kit = {
        **trainer_kwargs(settings, Path(tempfile.mkdtemp()), with_eval=False),
        "save_strategy": "no",
        "max_length": settings.max_length,
        "completion_only_loss": True,
        "include_num_input_tokens_seen": True,
    }
    # TRL defaults: only what is needed to run here (CPU, the same steps, batch, lr and seed).
    defaults = {
        "output_dir": tempfile.mkdtemp(), "use_cpu": kit["use_cpu"], "bf16": kit["bf16"], "max_steps": args.steps,
        "per_device_train_batch_size": 16, "learning_rate": 3e-3, "seed": 22, "report_to": "none",
        "save_strategy": "no", "logging_steps": kit["logging_steps"], "include_num_input_tokens_seen": True,
        "disable_tqdm": True,
    }
    kit_speed, kit_loss = train(kit, args.steps, "kit")
    base_speed, base_loss = train(defaults, args.steps, "TRL defaults")
    print(f"speed ratio kit / TRL defaults: {kit_speed / base_speed:.2f}x; loss {kit_loss:.3f} vs {base_loss:.3f}")


if __name__ == "__main__":
    main()
