"""What every regime shares: trainer settings and arguments, the checkpoint chosen on validation
F1, saving the adapter, the log and that choice, progress."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from aims_kit.core.params import TrainingBasics
from aims_kit.core.results import atomic_write_json, share_like_umask
from aims_kit.models.frozen_casts import frozen_weights_cast_once
from aims_kit.models.lora import LoraSettings
from aims_kit.models.precision import (
    compute_dtype as policy_dtype,
    dtype_name,
    has_cuda,
    inference_copy,
    mixed_precision_flags,
    quantization_name,
)
from aims_kit.training.lm_head import cpu_lm_head


@dataclass(frozen=True)
class TrainSettings(TrainingBasics):
    """What every trainer takes: the shared fields (:class:`aims_kit.core.params.TrainingBasics`),
    the resolved learning rate and the schedule. Defaults follow the paper (docs/design.md §Regimes).
    """

    #: The rate itself (a notebook's ``learning_rate`` 0 has been resolved to the paper's by now).
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    early_stopping_patience: int = 3
    max_length: int = 512
    lora: LoraSettings = field(default_factory=LoraSettings)
    #: What training computes in (fp32 master weights under bf16 / fp16 autocast, or plain fp32),
    #: from the device policy (:func:`aims_kit.models.precision.compute_dtype`): bf16 on an
    #: Ampere-or-newer GPU and on a CPU with native bf16 (it halves SFT step time there,
    #: perf/bench_train.py), fp16 with loss scaling on an older GPU, fp32 elsewhere. Resolved when
    #: the settings are made, so the run config records what was used.
    compute_dtype: str = field(default_factory=lambda: dtype_name(policy_dtype()))

    def to_dict(self) -> dict:
        return asdict(self)

    def precision(self) -> dict:
        """How the base is stored and what training computes in, as a run's config records them.

        Both come from the device policy: a 4-bit base computes in QLoRA's compute dtype, which
        is the policy's, and a full-precision one under autocast in it (or plain fp32).
        """
        return {"quantization": quantization_name(self.quantize), "compute_dtype": self.compute_dtype}

    def mixed_precision(self) -> dict[str, bool]:
        """TRL's ``bf16`` / ``fp16`` flags for :attr:`compute_dtype`."""
        import torch

        return mixed_precision_flags(getattr(torch, self.compute_dtype))


#: What a trainer's checkpoint is chosen by: the validation F1 of the labels the model writes
#: (:func:`val_f1_callback`), or, where the validation split is not classified, the validation loss.
SELECT_ON_F1, SELECT_ON_LOSS = "val_f1", "eval_loss"


def trainer_kwargs(settings: TrainSettings, run_dir: Path, *, with_eval: bool = True, select_on: str = SELECT_ON_LOSS) -> dict:
    """Keyword arguments for any TRL ``*Config`` (they all extend ``TrainingArguments``).

    Every trainer calls it before it is built, so it also shuts down the kernel's vLLM evaluation
    engine (:func:`aims_kit.inference.vllm.release_engine`). With ``with_eval`` the trainer validates every ``eval_steps`` steps, stops early and ends on
    the best checkpoint by ``select_on`` (ties keep the earlier step: only a strict improvement
    moves the choice). Library chatter is silenced here, before the trainer is built: building it
    tokenizes the datasets with one ``datasets`` progress bar per pass.
    """
    from aims_kit.core.progress import quiet_libraries
    from aims_kit.inference.vllm import release_engine

    quiet_libraries()
    # An evaluation engine left from an earlier notebook step holds its share of the GPU; the
    # trainer (and GRPO's colocated rollout engine, built with the trainer) needs it back.
    release_engine()
    cuda = has_cuda()
    kwargs = dict(
        output_dir=str(run_dir / "checkpoints"),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
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
        **settings.mixed_precision(),
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
            metric_for_best_model=select_on,
            greater_is_better=select_on == SELECT_ON_F1,
        )
    return kwargs


def val_f1_callback(val: pd.DataFrame, condition: str, tokenizer, max_new_tokens: int, batch_size: int):
    """A trainer callback: at each validation pass, the F1 of the labels the model writes on the validation split.

    Why: the loss says how well the model predicts the gold text; F1 says how often the label it
    *writes* is right, which for an intent target can lag the loss by many steps (a 200-step
    intent run read val F1 0.71 / 0.28 / 0.58 / 0.84 at 50-step intervals). The value joins
    the pass's metrics as ``eval_val_f1``, so with ``select_on=SELECT_ON_F1`` early stopping and
    the kept checkpoint follow it, the same rule for every condition of a comparison. Validation
    rows only (split hygiene is checked); every process classifies, so each holds the metric
    the trainer selects by. Logged into ``log_history`` as ``val_f1``.
    """
    from transformers import TrainerCallback

    from aims_kit.datasets.aims import require_split
    from aims_kit.scoring import evaluate as evaluation

    require_split(val, "val", "validation F1 during training (checkpoint selection)")

    class _ValF1(TrainerCallback):
        def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
            if model is None:
                return
            scores, _ = evaluation.evaluate(inference_copy(model), tokenizer, val, condition=condition, dataset="val",
                                            batch_size=batch_size, max_new_tokens=max_new_tokens, latency_sample=0, n_boot=0)
            if metrics is not None:
                metrics["eval_" + SELECT_ON_F1] = scores["f1"]
            state.log_history.append({"step": state.global_step, "val_f1": scores["f1"],
                                      "val_parse_failure_rate": scores["parse_failure_rate"]})

    return _ValF1()


def selection(settings: TrainSettings, val_f1=None) -> tuple[str, list]:
    """What a validating trainer keeps its checkpoint by, and the callbacks that make the choice.

    With ``val_f1`` (a :func:`val_f1_callback`) the validation F1 chooses, and that callback comes
    before early stopping, which reads the metric it adds to the same pass; without, the loss.
    """
    from transformers import EarlyStoppingCallback

    stopping = EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience)
    return (SELECT_ON_F1, [val_f1, stopping]) if val_f1 is not None else (SELECT_ON_LOSS, [stopping])


def checkpoint_choice(trainer) -> dict:
    """Which step the saved adapter is from, and the validation curve it was chosen from.

    Written as ``val_selection.json`` beside the adapter (GRPO writes the same file from its own
    snapshots) and copied into every results record of the run (``selected_checkpoint``).
    """
    args, state = trainer.args, trainer.state
    if args.eval_strategy == "no" or not args.metric_for_best_model:
        return {"split": None, "metric": None, "history": [], "best_step": state.global_step,
                "rule": "the last step (nothing to validate on)"}
    key = args.metric_for_best_model.removeprefix("eval_")
    logged = "val_f1" if key == SELECT_ON_F1 else "eval_loss"
    # The generating regimes' callback logs ``val_f1``; a trainer's own compute_metrics (the encoder) ``eval_val_f1``.
    history = [{"step": entry["step"], logged: entry.get(logged, entry.get("eval_" + logged))}
               for entry in state.log_history if logged in entry or "eval_" + logged in entry]
    best = state.best_global_step or (history[-1]["step"] if history else state.global_step)
    rule = "the highest validation F1, ties to the earlier step" if logged == "val_f1" else "the lowest validation loss"
    return {"split": "val", "metric": "f1" if logged == "val_f1" else "loss", "history": history, "best_step": best, "rule": rule}


def fit(trainer, **train_kwargs) -> None:
    """``trainer.train(**train_kwargs)`` within :func:`kit_training`."""
    with kit_training(trainer.model):
        trainer.train(**train_kwargs)


@contextmanager
def kit_training(model):
    """What the kit changes for the length of a training: its LM head on a CPU
    (:func:`aims_kit.training.lm_head.cpu_lm_head`) and the frozen weights cast to the autocast
    dtype once (:func:`aims_kit.models.frozen_casts.frozen_weights_cast_once`); the same losses either way."""
    with cpu_lm_head(), frozen_weights_cast_once(model):
        yield


def save_training(trainer, run_dir: Path) -> None:
    """Save the adapter (safetensors), the trainer's log history and the checkpoint choice beside it.

    Under several processes the main one writes and the others wait for it: the next step
    (evaluation) reads the adapter back from disk.
    """
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(run_dir / "adapter"), safe_serialization=True)
        atomic_write_json(run_dir / "train_log.json", trainer.state.log_history)
        atomic_write_json(run_dir / "val_selection.json", checkpoint_choice(trainer))
        share_like_umask(run_dir)  # safetensors writes the adapter and every checkpoint's weights 0600
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
