"""What every regime shares: trainer settings and arguments, saving the adapter and the log, progress."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from aims_kit.core.params import TrainingBasics
from aims_kit.core.results import atomic_write_json
from aims_kit.models.lora import LoraSettings
from aims_kit.models.precision import (
    cpu_has_fast_bf16,
    has_cuda,
    quantization_name,
    uses_4bit,
)


@dataclass(frozen=True)
class TrainSettings(TrainingBasics):
    """What every trainer takes: the shared fields (:class:`aims_kit.core.params.TrainingBasics`),
    the resolved learning rate and the schedule. Defaults follow the paper (docs/design.md §Regimes).
    """

    #: The rate itself (a notebook's ``learning_rate`` 0 has been resolved to the paper's by now).
    learning_rate: float = 2e-4
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    early_stopping_patience: int = 3
    max_length: int = 512
    lora: LoraSettings = field(default_factory=LoraSettings)
    #: Mixed precision (bf16 autocast, fp32 master weights): on a CUDA GPU, and on a CPU with
    #: native bf16 matmuls, where it halves SFT step time (perf/bench_train.py). Resolved when
    #: the settings are made, so the run config records what was used.
    bf16: bool = field(default_factory=lambda: has_cuda() or cpu_has_fast_bf16())

    def to_dict(self) -> dict:
        return asdict(self)

    def precision(self) -> dict:
        """How the base is stored and what training computes in, as a run's config records them.

        A 4-bit base computes in bf16 (QLoRA's compute dtype); a full-precision one in bf16
        under autocast where ``bf16`` is on, else in fp32.
        """
        four_bit = uses_4bit(self.quantize)
        return {
            "quantization": quantization_name(self.quantize),
            "compute_dtype": "bfloat16" if four_bit or self.bf16 else "float32",
        }


def trainer_kwargs(settings: TrainSettings, run_dir: Path, *, with_eval: bool = True) -> dict:
    """Keyword arguments for any TRL ``*Config`` (they all extend ``TrainingArguments``).

    Library chatter is silenced here, before the trainer is built: building it tokenizes the
    datasets with one ``datasets`` progress bar per pass.
    """
    from aims_kit.core.progress import quiet_libraries

    quiet_libraries()
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
        report_to=[name.strip() for name in settings.report_to.split(",") if name.strip()] or "none",
        use_cpu=not cuda,
        bf16=settings.bf16,
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
    """Save the adapter (safetensors) and the trainer's log history beside it.

    Under several processes the main one writes and the others wait for it: the next step
    (evaluation) reads the adapter back from disk.
    """
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(run_dir / "adapter"), safe_serialization=True)
        atomic_write_json(run_dir / "train_log.json", trainer.state.log_history)
    trainer.accelerator.wait_for_everyone()


def attach_progress(trainer, desc: str) -> None:
    """Show ``trainer``'s steps and latest losses with the kit's progress bar, and a summary line at the end.

    It replaces transformers' ``PrinterCallback`` (``disable_tqdm`` adds it), which prints every
    log entry as a raw dict into the notebook; the full log is saved as ``train_log.json`` and
    drawn by :func:`aims_kit.notebook.plots.learning_curves`.
    """
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress_callback(desc))


#: Log keys the progress bar shows: the losses and GRPO's mean reward.
SHOWN_LOG_KEYS = ("loss", "eval_loss", "reward")


def progress_callback(desc: str):
    """A trainer callback: steps on the kit's progress bar with the latest losses, one summary line at the end."""
    from transformers import TrainerCallback

    from aims_kit.core.progress import progress_bar

    class _Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # Under several processes only the main one shows progress (an empty desc: no bar).
            self.main = state.is_world_process_zero
            self.bar = progress_bar(state.max_steps, desc=desc if self.main else "", unit="step")
            self.bar.update(state.global_step)  # resumed from a checkpoint: start where it left off
            self.shown: dict[str, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            latest = {k: round(float(v), 4) for k, v in (logs or {}).items() if k in SHOWN_LOG_KEYS}
            if latest:  # training and validation losses arrive in separate log entries: keep both
                self.shown.update(latest)
                self.bar.set_postfix(self.shown, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            seconds = self.bar.format_dict["elapsed"]
            self.bar.close()
            if self.main:
                print(training_summary(desc, state.log_history, state.global_step, seconds))

    return _Progress()


def training_summary(desc: str, log_history: list[dict], steps: int, seconds: float) -> str:
    """One line that closes a training run: steps, time, first and last training loss, best validation loss."""
    from aims_kit.core.progress import format_duration

    parts = [f"{desc}: {steps} steps in {format_duration(seconds)}"]
    train = [entry["loss"] for entry in log_history if "loss" in entry]
    if train:
        parts.append(f"train loss {train[0]:.3g} -> {train[-1]:.3g}")
    evals = [(entry["eval_loss"], entry.get("step")) for entry in log_history if "eval_loss" in entry]
    if evals:
        best, step = min(evals, key=lambda pair: pair[0])
        parts.append(f"best val loss {best:.3g} (step {step})")
    rewards = [entry["reward"] for entry in log_history if "reward" in entry]
    if rewards:
        parts.append(f"reward {rewards[0]:.3g} -> {rewards[-1]:.3g}")
    return "; ".join(parts)
