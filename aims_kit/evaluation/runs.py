"""A trained (or zero-shot, or served) run loaded once, and scored on a labelled frame into its record.

Every later step that evaluates a run, on AIMS test right after training or on an external
benchmark, loads it through :func:`load_run` / :func:`evaluate_run`: the adapter is read fresh
from disk, so a run is never scored with an adapter that was not saved or not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aims_kit.core import distributed, results
from aims_kit.core.params import RunParams
from aims_kit.core.profiles import PROFILES
from aims_kit.datasets import aims as data
from aims_kit.inference.engines import Engine
from aims_kit.models.loading import load_for_inference
from aims_kit.scoring import evaluate as evaluation


@dataclass
class LoadedRun:
    """A run's model, loaded once for all benchmarks."""

    run_dir: Path
    config: dict
    model: object
    tokenizer: object
    #: What generates instead of ``model`` (a served endpoint); ``None``: the model through transformers.
    engine: Engine | None = None

    @property
    def is_encoder(self) -> bool:
        return self.config.get("regime") == "encoder"

    @property
    def max_new_tokens(self) -> int:
        """The answer budget the run was scored with (:func:`answer_budget`)."""
        return answer_budget(self.config)


#: The parameters that set answer budgets (non-reasoning and reasoning formats).
BUDGET_KEYS = ("max_new_tokens", "distill_max_new_tokens")


def answer_budget(config: dict) -> int:
    """The answer budget a run is classified with: the ``max_new_tokens`` its config recorded.

    A trained run records the budget its test split was scored with
    (:func:`aims_kit.notebook.experiments.run_config`), so the Classifier, export, ``eval`` and
    ``serve`` use that one, whatever the profile says today. A config without it (a served
    endpoint with no run folder) takes its profile's budget for its format, or the defaults.
    """
    if "max_new_tokens" in config:
        return int(config["max_new_tokens"])
    profile = PROFILES.get(config.get("profile", ""), {})
    budgets = RunParams.from_params({key: profile[key] for key in BUDGET_KEYS if key in profile})
    return budgets.answer_budget(config.get("condition", "label_only"))


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load what the run's regime needs: the encoder, a bare model or released checkpoint (zero-shot,
    :func:`aims_kit.models.loading.load_zero_shot`), base + adapter, or an endpoint client (served)."""
    from aims_kit.models.loading import load_for_inference, load_zero_shot

    run_dir = Path(run_dir)
    config = results.read_run_config(run_dir)
    regime = config.get("regime")
    if regime == "encoder":
        from aims_kit.training.encoder import load_encoder

        model, tokenizer = load_encoder(run_dir)
    elif regime == "zero_shot":
        model, tokenizer = load_zero_shot(config)
    elif regime == "served":
        from aims_kit.inference.engines import EndpointEngine, served_tokenizer

        engine = EndpointEngine(config["endpoint"], config["model"])
        return LoadedRun(run_dir, config, None, served_tokenizer(config["model"]), engine=engine)
    else:
        model, tokenizer = load_for_inference(run_dir)
    return LoadedRun(run_dir, config, model, tokenizer)


def evaluate_run(run_dir: Path, frame: pd.DataFrame, dataset: str, p: RunParams) -> dict | None:
    """Load the run's adapter fresh from disk (proving it was saved and is applied) and score it.

    The adapter is merged and, on a CPU with native bf16, the weights cast to bf16
    (:func:`aims_kit.models.loading.prepare_for_inference`); the record states the compute dtype.

    With ``backend`` "auto" (default) generation uses vLLM when it is installed and CUDA is
    present, after checking that vLLM really applies the adapter; "transformers" forces
    transformers. The kernel's one vLLM engine is reused across runs on the same base model
    (``gpu_memory_utilization`` sets its share; see :mod:`aims_kit.inference.vllm`).
    """
    from aims_kit.inference import vllm as vllm_backend

    if not distributed.is_main_process():  # under a multi-process launcher rank 0 evaluates alone
        return None
    config = results.read_run_config(run_dir)
    model, tokenizer = load_for_inference(run_dir)
    frame = data.balanced_head(frame, p.eval_limit)
    budget = answer_budget(config)
    engine = vllm_backend.engine_for_run(run_dir, model, tokenizer, frame["Prompt"], config["condition"], budget, p)
    metrics, predictions = evaluation.evaluate(
        model,
        tokenizer,
        frame,
        condition=config["condition"],
        dataset=dataset,
        batch_size=p.eval_batch_size,
        max_new_tokens=budget,
        latency_sample=p.latency_sample,
        n_boot=p.n_boot,
        engine=engine,
    )
    return results.write_record(run_dir, dataset, metrics, predictions)
