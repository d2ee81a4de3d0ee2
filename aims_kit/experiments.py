"""The glue a notebook calls: turn notebook parameters into a trained, evaluated, recorded run.

Each function here is one lab-notebook step ("train SFT with the intent target", "evaluate
this run on the test split"), so notebook cells stay one or two calls long.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data, evaluation, formats, results
from .models import LoraSettings, load_trained
from .training.common import TrainSettings
from .training.sft import PAPER_LR, train_sft


def load_splits(source: str = "", seed: int = 22) -> data.Splits:
    """AIMS rows (the shipped sample when ``source`` is empty), split with the paper's policy."""
    return data.split_aims(data.load_aims(source or None), seed=seed)


def limit_rows(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows, balanced over labels (``0``: all rows). For quick smoke runs."""
    if not limit or limit >= len(frame):
        return frame
    per_label = max(1, limit // frame["label"].nunique())
    return frame.groupby("label", group_keys=False).head(per_label).reset_index(drop=True)


def train_settings(params: dict, condition: formats.Condition, *, lora: LoraSettings | None = None) -> TrainSettings:
    """Training settings from notebook parameters; ``learning_rate`` 0 picks the paper's rate."""
    return TrainSettings(
        learning_rate=params.get("learning_rate") or PAPER_LR[condition],
        epochs=params.get("epochs", 3.0),
        max_steps=params.get("max_steps", -1),
        batch_size=params.get("batch_size", 32),
        eval_steps=params.get("eval_steps", 20),
        seed=params.get("seed", 22),
        lora=lora or LoraSettings(),
    )


def run_config(params: dict, regime: str, condition: str, settings: TrainSettings, **extra) -> dict:
    return {
        "regime": regime,
        "condition": condition,
        "model": params["model"],
        "data_source": params.get("data_source") or "aims-kit sample",
        "profile": params.get("profile", "custom"),
        "seed": settings.seed,
        "train": settings.to_dict(),
        **extra,
    }


def sft_run(params: dict, splits: data.Splits, condition: formats.Condition, out_dir: Path) -> Path:
    """Train one SFT condition into a new run folder and evaluate it on the test split."""
    settings = train_settings(params, condition)
    run_dir = results.create_run(out_dir, f"sft-{condition}", run_config(params, "sft", condition, settings))
    train_sft(params["model"], splits.train, splits.val, condition=condition, settings=settings, run_dir=run_dir)
    evaluate_run(run_dir, splits.test, "aims_test", params)
    return run_dir


def evaluate_run(run_dir: Path, frame: pd.DataFrame, dataset: str, params: dict) -> dict:
    """Load the run's adapter fresh from disk (proving it was saved and is applied) and score it."""
    config = results.read_run_config(run_dir)
    model, tokenizer = load_trained(run_dir)
    metrics, predictions = evaluation.evaluate(
        model,
        tokenizer,
        limit_rows(frame, params.get("eval_limit", 0)),
        condition=config["condition"],
        dataset=dataset,
        batch_size=params.get("eval_batch_size", 32),
        max_new_tokens=params.get("max_new_tokens", 64),
        latency_sample=params.get("latency_sample", 16),
        n_boot=params.get("n_boot", 1000),
    )
    return results.write_record(run_dir, dataset, metrics, predictions)


def comparison_table(out_dir: Path, dataset: str = "aims_test") -> pd.DataFrame:
    """F1 and friends per run on one dataset, trivial baselines beside them."""
    from .report import results_table

    records = results.load_records(out_dir)
    if records.empty:
        return records
    return results_table(records[records["dataset"] == dataset])


#: Names a notebook's ``parameters`` cell may define; :func:`notebook_params` gathers them.
PARAMETER_NAMES = (
    "model", "data_source", "profile", "seed", "out_dir", "max_steps", "epochs", "learning_rate",
    "batch_size", "eval_steps", "eval_limit", "max_new_tokens",
)


def notebook_params(namespace: dict, extra: tuple[str, ...] = ()) -> dict:
    """Collect the notebook's parameters from its globals into one dict (for configs and records)."""
    return {name: namespace[name] for name in (*PARAMETER_NAMES, *extra) if name in namespace}


def predictions_frame(run_dir: Path, dataset: str) -> pd.DataFrame:
    """A run's saved predictions on ``dataset``: prompt, gold, predicted label and intent, raw output."""
    rows = results.read_jsonl(Path(run_dir) / "predictions" / f"{dataset}.jsonl")
    return pd.DataFrame(rows)[["id", "gold", "pred", "parsed", "intent", "prompt", "output"]]
