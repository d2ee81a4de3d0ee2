"""What every regime shares: trainer arguments, split hygiene, saving the adapter and the log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..models import LoraSettings, has_cuda
from ..results import atomic_write_json


class SplitHygieneError(ValueError):
    """Raised when a frame from the wrong split would drive a training decision."""


def require_split(frame: pd.DataFrame, split: str, purpose: str) -> None:
    """Refuse ``frame`` unless every row comes from ``split``.

    Test rows and external benchmarks must never choose a checkpoint, stop training or tune
    a hyper-parameter (the paper's own pipeline did); the check lives here so no notebook can
    forget it.
    """
    if "split" not in frame.columns:
        raise SplitHygieneError(f"{purpose}: frame has no 'split' column; use aims_kit.data.split_aims")
    found = sorted(set(frame["split"]))
    if found != [split]:
        raise SplitHygieneError(f"{purpose} may only use the {split!r} split, got rows from {found}")


@dataclass
class TrainSettings:
    """Optimiser and schedule shared by all regimes. Defaults follow the paper (DESIGN.md §5)."""

    learning_rate: float = 2e-4
    epochs: float = 3.0
    #: Stop after this many optimiser steps (``-1``: run the epochs). The smoke profile uses it.
    max_steps: int = -1
    batch_size: int = 32
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    #: Evaluate the validation loss every this many steps; early stopping and the best
    #: checkpoint are chosen on it alone.
    eval_steps: int = 20
    early_stopping_patience: int = 3
    max_length: int = 512
    seed: int = 22
    lora: LoraSettings = field(default_factory=LoraSettings)

    def to_dict(self) -> dict:
        return asdict(self)


def trainer_kwargs(settings: TrainSettings, run_dir: Path, *, with_eval: bool = True) -> dict:
    """Keyword arguments for any TRL ``*Config`` (they all extend ``TrainingArguments``)."""
    cuda = has_cuda()
    kwargs = dict(
        output_dir=str(run_dir / "checkpoints"),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.scheduler,
        logging_steps=max(1, min(10, settings.eval_steps)),
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda,
        # TRL turns (gradient) checkpointing on by default: it saves GPU memory for QLoRA but only
        # costs time on a CPU, where memory is not the limit for these models.
        activation_checkpointing=cuda,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if with_eval:
        kwargs.update(
            eval_strategy="steps",
            eval_steps=settings.eval_steps,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
        )
    return kwargs


def save_training(trainer, run_dir: Path) -> None:
    """Save the adapter (safetensors) and the trainer's log history beside it."""
    trainer.model.save_pretrained(str(run_dir / "adapter"), safe_serialization=True)
    atomic_write_json(run_dir / "train_log.json", trainer.state.log_history)


def progress_callback(desc: str):
    """A trainer callback that shows steps with the kit's progress bar and the latest losses."""
    from transformers import TrainerCallback

    from ..progress import progress_bar

    class _Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = progress_bar(state.max_steps, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            shown = {k: round(v, 4) for k, v in (logs or {}).items() if "loss" in k or "reward" in k}
            if shown:
                self.bar.set_postfix(shown, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return _Progress()
