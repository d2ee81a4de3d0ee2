"""Supervised fine-tuning: label-only and intent → label targets (and reasoning traces for distillation).

Loss is on the completion only (TRL's prompt–completion format), the best checkpoint and early
stopping are chosen on the validation F1 of the labels the model writes (on the validation loss
where the validation split is not classified), and the adapter is saved with the run. An example
longer than ``max_length`` tokens is dropped, counted and reported (:func:`keep_within_max_length`),
never trained on with its completion cut.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aims_kit.core import results
from aims_kit.core.distributed import is_main_process
from aims_kit.datasets import formats
from aims_kit.datasets.aims import require_split
from aims_kit.models.loading import load_model
from aims_kit.training.common import (
    TrainSettings,
    attach_progress,
    fit,
    save_training,
    selection,
    trainer_kwargs,
    val_f1_callback,
)

#: Paper learning rates: generation targets learn at 2e-4, a one-word label at 5e-5.
PAPER_LR = {"label_only": 5e-5, "intent_label": 2e-4, "reasoning_label": 2e-4, "reasoning_intent_label": 2e-4}


def sft_records(frame: pd.DataFrame, condition: formats.Condition, completions: list[str] | None = None) -> list[dict]:
    """Prompt–completion chat records. ``completions`` overrides the targets (reasoning traces).

    Each carries :data:`aims_kit.datasets.formats.CHAT_TEMPLATE_KWARGS`, which TRL passes to the chat
    template: a thinking template's empty think block is then part of the prompt, never of
    the completion the model learns.
    """
    if completions is None:
        completions = [
            formats.format_target(condition, label, intent=intent)
            for label, intent in zip(frame["label"], frame["Intent"])
        ]
    return [
        {
            "prompt": formats.prompt_messages(prompt, condition),
            "completion": [{"role": "assistant", "content": completion}],
            "chat_template_kwargs": formats.CHAT_TEMPLATE_KWARGS,
        }
        for prompt, completion in zip(frame["Prompt"], completions)
    ]


#: Keys of a TRL record that hold a completion (SFT: ``completion``; DPO: ``chosen`` and ``rejected``).
COMPLETION_KEYS = ("completion", "chosen", "rejected")


def record_length(tokenizer, record: dict) -> int:
    """Tokens of the record's longest prompt + completion, rendered as TRL renders it for training."""
    return max(
        len(tokenizer.apply_chat_template(
            record["prompt"] + record[key], tokenize=True, return_dict=False, **record.get("chat_template_kwargs", {})
        ))
        for key in COMPLETION_KEYS if key in record
    )


def keep_within_max_length(records: dict[str, list[dict]], tokenizer, max_length: int, run_dir: Path, desc: str) -> dict[str, list[dict]]:
    """Per split, the records that fit in ``max_length`` tokens; the others are dropped, counted and reported.

    TRL cuts a longer sequence at ``max_length`` from the end, and the end is the completion,
    the only part the loss is on: the model would learn an answer with its label cut off, or
    nothing. So such an example is dropped. The counts are printed and saved as
    ``train_data.json`` in the run folder; a split left with nothing is an error.
    """
    kept = {split: [r for r in rows if record_length(tokenizer, r) <= max_length] for split, rows in records.items()}
    counts = {split: {"examples": len(rows), "dropped_too_long": len(rows) - len(kept[split])} for split, rows in records.items()}
    dropped = [f"{c['dropped_too_long']} of {c['examples']} {split}" for split, c in counts.items() if c["dropped_too_long"]]
    if is_main_process():  # under several processes the main one writes and reports
        results.atomic_write_json(Path(run_dir) / "train_data.json", {"max_length": max_length, **counts})
        if dropped:
            print(f"{desc}: dropped {' and '.join(dropped)} examples longer than max_length={max_length} tokens (their completion would be cut)")
    for split, rows in kept.items():
        if records[split] and not rows:
            raise ValueError(
                f"{desc}: every {split} example is longer than max_length={max_length} tokens; "
                "raise TrainSettings.max_length or shorten the prompts/completions"
            )
    return kept


def train_sft(
    model_name: str,
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    condition: formats.Condition,
    settings: TrainSettings,
    run_dir: Path,
    train_completions: list[str] | None = None,
    val_completions: list[str] | None = None,
    val_f1_tokens: int = 0,
    name: str = "",
):
    """Train a LoRA adapter with TRL's ``SFTTrainer``; saves it under ``run_dir/adapter``.

    ``name`` is what the progress bar and log lines call the run (default ``SFT <condition>``):
    the three distillation students share one condition, so they pass their trace condition.

    Examples longer than ``settings.max_length`` are dropped and counted (``train_data.json``).
    With ``val_f1_tokens`` > 0 every validation pass also classifies the validation split with
    that answer budget and logs ``val_f1``; early stopping and the kept checkpoint then follow
    it (:func:`aims_kit.training.common.val_f1_callback`), else the validation loss. The choice
    is written as ``val_selection.json``. Returns the trainer (its ``state.log_history`` holds
    the losses and F1 for plotting).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    require_split(train, "train", "SFT training data")
    require_split(val, "val", "early stopping and checkpoint selection")
    name = name or f"SFT {condition}"
    model, tokenizer = load_model(model_name, quantize=settings.quantize, trainable=True)
    records = keep_within_max_length(
        {"train": sft_records(train, condition, train_completions), "val": sft_records(val, condition, val_completions)},
        tokenizer, settings.max_length, run_dir, name,
    )
    val_f1 = val_f1_callback(val, condition, tokenizer, val_f1_tokens, settings.batch_size * 4) if val_f1_tokens else None
    select_on, callbacks = selection(settings, val_f1)
    config = SFTConfig(
        **trainer_kwargs(settings, run_dir, select_on=select_on),
        max_length=settings.max_length,
        completion_only_loss=True,
        # Batches of similar length compute less padding; prompts run from 10 to 200+ tokens.
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records["train"]),
        eval_dataset=Dataset.from_list(records["val"]),
        processing_class=tokenizer,
        peft_config=settings.lora.to_peft(model),
        callbacks=callbacks,
    )
    attach_progress(trainer, name)
    fit(trainer, resume_from_checkpoint=_last_checkpoint(run_dir))
    save_training(trainer, run_dir)
    return trainer


def _last_checkpoint(run_dir: Path) -> str | None:
    """Resume from a checkpoint left by an interrupted run of this same folder, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = run_dir / "checkpoints"
    return get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
