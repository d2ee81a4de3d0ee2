"""DPO on mined intent-error pairs, starting from the SFT intent → label adapter (docs/design.md §Regimes).

**Reference model.** Policy and reference both start from the SFT adapter. The SFT run is loaded
as a trainable ``PeftModel`` and handed to TRL's ``DPOTrainer`` *without* a ``peft_config``;
TRL 1.16 then copies the ``default`` adapter into a frozen adapter named ``ref`` and computes
the reference log-probabilities with it. So the reference is **a frozen copy of the SFT
adapter**, not the adapter-disabled model: with PEFT, disabling the adapter gives the untrained
base model, and DPO would then pull the policy towards (and measure its KL against) a model
that never learned the task. Only the ``default`` adapter is saved with the run.

**Batches.** Each batch is drawn from pairs of about the same length (:func:`length_grouped`), as
SFT's are: DPO's collator pads all four rows of a pair (chosen and rejected, policy and
reference) to the batch's longest prompt + answer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from aims_kit.core import results
from aims_kit.datasets.aims import require_split
from aims_kit.models.loading import load_trained
from aims_kit.models.precision import uses_4bit
from aims_kit.training.common import (
    SELECT_ON_LOSS,
    TrainSettings,
    attach_progress,
    fit,
    save_training,
    selection,
    trainer_kwargs,
    val_f1_callback,
)
from aims_kit.training.dpo_pairs import dpo_records
from aims_kit.training.sft import keep_within_max_length

log = logging.getLogger(__name__)


@dataclass
class DpoSettings:
    """DPO-specific settings. Defaults are the paper's: sigmoid loss, β=0.3."""

    beta: float = 0.3
    loss_type: str = "sigmoid"

    def to_dict(self) -> dict:
        return asdict(self)


def train_dpo(
    sft_run: Path,
    train_pairs: pd.DataFrame,
    val_pairs: pd.DataFrame,
    *,
    settings: TrainSettings,
    dpo: DpoSettings,
    run_dir: Path,
    val: pd.DataFrame | None = None,
    val_f1_tokens: int = 0,
):
    """Train the SFT adapter further with DPO; saves it under ``run_dir/adapter``.

    ``train_pairs`` must come from the train split and ``val_pairs`` from the val split. At each
    validation pass the pairs' DPO loss is measured and, with ``val`` and ``val_f1_tokens``, the
    validation split classified: its F1 then chooses the checkpoint and stops training, the rule
    its SFT parent was chosen by (else the pairs' loss does). When no val pair could be mined,
    training runs without evaluation and the last step is kept (logged, and said in the run's
    ``val_selection.json``). Returns the trainer.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    if train_pairs.empty:
        raise ValueError("no training pairs: the SFT model made no intent error to learn from (mine more prompts or raise k)")
    require_split(train_pairs, "train", "DPO training pairs")
    with_eval = not val_pairs.empty
    if with_eval:
        require_split(val_pairs, "val", "DPO early stopping and checkpoint selection")
    else:
        log.warning("no validation pairs: DPO trains without early stopping and keeps the last step")
    # Policy and reference both on the base this run asks for (4-bit: QLoRA), whatever the SFT run used.
    model, tokenizer = load_trained(sft_run, trainable=True, quantize=uses_4bit(settings.quantize))
    # A pair cut at max_length would lose the answers it contrasts: dropped, counted, reported.
    records = keep_within_max_length(
        {"train": dpo_records(train_pairs), "val": dpo_records(val_pairs)}, tokenizer, settings.max_length, run_dir, "DPO"
    )
    by_f1 = with_eval and val is not None and val_f1_tokens > 0
    val_f1 = val_f1_callback(val, "intent_label", tokenizer, val_f1_tokens, settings.batch_size * 4) if by_f1 else None
    select_on, callbacks = selection(settings, val_f1) if with_eval else (SELECT_ON_LOSS, [])
    config = DPOConfig(
        **trainer_kwargs(settings, run_dir, with_eval=with_eval, select_on=select_on),
        max_length=settings.max_length,
        beta=dpo.beta,
        loss_type=[dpo.loss_type],
    )
    trainer = length_grouped(DPOTrainer)(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records["train"]),
        eval_dataset=Dataset.from_list(records["val"]) if with_eval else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    attach_progress(trainer, "DPO")
    if "ref" not in trainer.model.peft_config:
        raise RuntimeError("TRL did not create the frozen reference adapter; the reference would be the base model")
    fit(trainer)
    trainer.model.delete_adapter("ref")
    save_training(trainer, run_dir)
    return trainer


def pair_lengths(dataset) -> list[int]:
    """Each tokenized pair's padded length in a batch: its prompt and the longer of its two answers."""
    return [len(p) + max(len(c), len(r)) for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def length_grouped(base: type) -> type:
    """TRL's DPO trainer whose training batches hold pairs of about the same length
    (:mod:`aims_kit.training.length_groups`).

    Why: DPO's collator pads all four rows of a pair (chosen and rejected, policy and reference)
    to the batch's longest prompt + answer; random batches of 8 pairs were 39% padding (61% of the
    positions computed were real tokens; grouped, 97%).
    """
    from aims_kit.training.length_groups import LengthGroupedOrder

    class LengthGroupedDPOTrainer(base):
        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedOrder(pair_lengths(dataset), batch, self.args.seed)

    return LengthGroupedDPOTrainer


def save_pairs(run_dir: Path, pairs: pd.DataFrame) -> Path:
    """Keep the mined pairs with the run (``pairs.jsonl``), so anyone can read what DPO saw."""
    path = Path(run_dir) / "pairs.jsonl"
    results.atomic_write_jsonl(path, pairs.to_dict("records"))
    return path


def load_pairs(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(results.read_jsonl(Path(run_dir) / "pairs.jsonl"))
