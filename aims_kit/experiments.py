"""The glue a notebook calls: turn notebook parameters into a trained, evaluated, recorded run.

Each function here is one lab-notebook step ("train SFT with the intent target", "evaluate
this run on the test split"), so notebook cells stay one or two calls long.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import pandas as pd

from . import data, distributed, evaluation, formats, results
from .models import LoraSettings, load_for_inference
from .settings import KNOWN, DistillParams, DPOParams, GRPOParams, RunParams, SFTParams
from .training.common import TrainSettings
from .training.grpo import CONDITION as GRPO_CONDITION
from .training.grpo import GRPOSettings, train_grpo
from .training.dpo_pairs import MiningReport, MiningSettings, mine_pairs, model_generator
from .training.sft import PAPER_LR, train_sft

#: The paper's DPO learning rate (docs/design.md §Regimes).
PAPER_DPO_LR = 5e-5


def load_splits(source: str = "", seed: int = 22) -> data.Splits:
    """AIMS rows (the shipped sample when ``source`` is empty) in train / val / test.

    A hub id or dataset folder with its own train / validation / test splits keeps them (the
    paper's test set); a single file is split with the paper's policy (see ``data.split_aims``).
    """
    return data.split_aims(data.load_aims(source or None), seed=seed)


def train_settings(p: RunParams, condition: formats.Condition, *, lora: LoraSettings | None = None) -> TrainSettings:
    """Training settings from notebook parameters; ``learning_rate`` 0 picks the paper's rate."""
    return TrainSettings(
        learning_rate=p.learning_rate or PAPER_LR[condition],
        epochs=p.epochs,
        max_steps=p.max_steps,
        batch_size=p.batch_size,
        eval_steps=p.eval_steps,
        seed=p.seed,
        report_to=p.report_to,
        quantize=p.quantize,
        lora=replace(lora or LoraSettings(), top_layers=p.lora_layers),
    )


def run_config(p: RunParams, regime: str, condition: str, settings: TrainSettings, **extra) -> dict:
    return {
        "regime": regime,
        "condition": condition,
        "model": p.model,
        "data_source": p.data_source or "aims-kit sample",
        "profile": p.profile,
        "seed": settings.seed,
        "train": settings.to_dict(),
        **settings.precision(),
        **extra,
    }


def sft_run(params: dict, splits: data.Splits, condition: formats.Condition, out_dir: Path) -> Path:
    """Train one SFT condition into a new run folder and evaluate it on the test split."""
    p = SFTParams.from_params(params)
    p = replace(p, max_steps=int(p.condition_max_steps.get(condition, p.max_steps)))
    settings = train_settings(p, condition)
    run_dir = results.create_run(out_dir, f"sft-{condition}", run_config(p, "sft", condition, settings))
    if results.is_evaluated(run_dir, "aims_test"):  # finished before an interruption
        return run_dir
    train_sft(p.model, splits.train, splits.val, condition=condition, settings=settings, run_dir=run_dir,
              val_f1_tokens=p.answer_budget(condition) if p.val_f1_curve else 0)
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def grpo_settings(p: GRPOParams, reward_set: str) -> GRPOSettings:
    """GRPO settings from notebook parameters (``grpo_*`` keys; the paper's values where unset)."""
    given = {
        "start": p.grpo_start,
        "num_generations": p.grpo_num_generations,
        "prompts_per_step": p.grpo_prompts_per_step,
        "temperature": p.grpo_temperature,
        "beta": p.grpo_beta,
        "learning_rate": p.grpo_learning_rate,
        "steps": p.grpo_steps,
        "eval_steps": p.grpo_eval_steps,
        "judge": p.judge,
        "judge_on_failure": p.judge_on_failure,
    }
    return GRPOSettings(
        reward_set=reward_set,
        **{name: value for name, value in given.items() if value is not None},
        max_completion_length=p.max_new_tokens,
        val_limit=p.eval_limit if p.grpo_val_limit is None else p.grpo_val_limit,
        seed=p.seed,
        report_to=p.report_to,
        quantize=p.quantize,
        lora=LoraSettings(top_layers=p.lora_layers),  # used when GRPO starts from the base model
    )


def grpo_run(
    params: dict,
    splits: data.Splits,
    reward_set: str,
    out_dir: Path,
    sft_run: Path | None = None,
) -> Path:
    """Train GRPO with one reward set into a new run folder and evaluate it on the test split.

    With ``grpo_start="sft"`` (default) it continues ``sft_run``, or the latest SFT intent_label
    run under ``out_dir``; the run records that parent and uses the parent's base model.
    """
    p = GRPOParams.from_params(params)
    settings = grpo_settings(p, reward_set)
    parent = None
    if settings.start == "sft":
        parent = find_sft_run(out_dir, str(sft_run or ""))
        p = replace(p, model=results.read_run_config(parent)["model"])
    config = run_config(
        p, "grpo", GRPO_CONDITION, settings.train_settings(),
        variant=reward_set, parent_run=parent.name if parent else None, grpo=settings.to_dict(),
    )
    run_dir = results.create_run(out_dir, f"grpo-{reward_set}", config)
    train_grpo(p.model, splits.train, splits.val, settings=settings, run_dir=run_dir, sft_run=parent)
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def find_sft_run(out_dir: Path, sft_run: str = "", condition: formats.Condition = "intent_label") -> Path:
    """The SFT run a later regime starts from: ``sft_run`` if given, else the newest one in ``out_dir``."""
    if sft_run:
        return Path(sft_run)
    return results.latest_run(out_dir, regime="sft", condition=condition)


@dataclass
class MinedPairs:
    """DPO pairs mined from train and val prompts, with what mining found on each."""

    train: pd.DataFrame
    val: pd.DataFrame
    reports: dict[str, MiningReport]
    settings: MiningSettings
    #: ``mined``, or the pairs file they were read from (``dpo_pairs_from``).
    source: str = "mined"

    def counts(self) -> pd.DataFrame:
        """Per split: prompts, samples, why samples were or were not rejects, pairs per class."""
        rows = []
        for split, r in self.reports.items():
            rows.append({
                "split": split,
                "prompts": r.prompts,
                "samples": r.samples,
                "samples without intent": r.samples_without_intent,
                "wrong-label samples": r.wrong_label_samples,
                "unreadable re-classifications": r.unreadable_reclassifications,
                "judge-bad samples": r.judge_bad_samples,
                "prompts without pair": r.prompts_without_pair,
                **{f"{label} pairs mined": n for label, n in r.pairs_per_class_mined.items()},
                **{f"{label} pairs kept": n for label, n in r.pairs_per_class.items()},
                "balanced": r.balanced,
            })
        return pd.DataFrame(rows)


def mine_dpo_pairs(params: dict, splits: data.Splits, sft_dir: Path, variant: str = "hard", judge_spec: str = "embedding") -> MinedPairs:
    """Sample the SFT model on train and val prompts and mine its intent errors (docs/design.md §Regimes).

    Under several processes the main one mines and the others receive its pairs: every process
    then trains on the same pairs, mined once. With ``dpo_pairs_from`` set nothing is mined: the pairs
    are read from that file (:func:`read_dpo_pairs`).
    """
    p = DPOParams.from_params(params)
    if p.dpo_pairs_from:
        return read_dpo_pairs(p.dpo_pairs_from, variant)
    return distributed.from_main(lambda: _mine_dpo_pairs(p, splits, sft_dir, variant, judge_spec))


def read_dpo_pairs(path: str | Path, variant: str = "hard") -> MinedPairs:
    """Pairs mined earlier: a DPO run's ``pairs.jsonl`` (or its run folder), split by its ``split`` column.

    Why: mining samples the SFT model k times per prompt, the slow half of DPO. Mined once, the
    same pairs can train DPO again with another β or learning rate, or on several processes.
    """
    from .training.dpo_pairs import PAIR_COLUMNS

    path = Path(path)
    file = path / "pairs.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"dpo_pairs_from={str(path)!r}: no pairs file there (a DPO run folder or its pairs.jsonl)")
    pairs = pd.DataFrame(results.read_jsonl(file))
    missing = [column for column in ("split", "prompt", "gold_label", "chosen", "rejected") if column not in pairs.columns]
    if missing:
        raise ValueError(f"{file}: not a DPO pairs file (no {', '.join(missing)} column)")
    train, val = (pairs[pairs["split"] == split].reset_index(drop=True) for split in ("train", "val"))
    if train.empty:
        raise ValueError(f"{file}: no pair from the train split to learn from")
    columns = [column for column in PAIR_COLUMNS if column in pairs.columns]
    return MinedPairs(train[columns], val[columns], {}, MiningSettings(variant=variant), source=str(file))


def _mine_dpo_pairs(p: DPOParams, splits: data.Splits, sft_dir: Path, variant: str, judge_spec: str) -> MinedPairs:
    from transformers import set_seed

    from .judges import make_judge

    settings = MiningSettings(k=p.dpo_k, temperature=p.dpo_temperature, max_new_tokens=p.max_new_tokens, variant=variant,
                              min_class_share=p.dpo_min_class_share, seed=p.seed)
    judge = make_judge(judge_spec) if variant == "judge" else None
    model, tokenizer = load_for_inference(sft_dir)
    generator = model_generator(model, tokenizer, batch_size=p.eval_batch_size)
    mined, reports = {}, {}
    # Validation pairs only measure the DPO loss for early stopping: a quarter as many prompts.
    limits = {"train": p.dpo_max_prompts, "val": max(16, p.dpo_max_prompts // 4) if p.dpo_max_prompts else 0}
    for split in ("train", "val"):
        set_seed(settings.seed)
        frame = data.balanced_sample(getattr(splits, split), limits[split], settings.seed)
        mined[split], reports[split] = mine_pairs(frame, generator, settings, judge=judge)
    return MinedPairs(mined["train"], mined["val"], reports, settings)


def dpo_run(params: dict, splits: data.Splits, sft_dir: Path, mined: MinedPairs, out_dir: Path) -> Path | None:
    """Train DPO from the SFT adapter on mined pairs into a new run folder; evaluate on the test split.

    Returns ``None`` (and says why) when mining found no training pair: an SFT model that never
    errs, or one too weak to write an ``Intent:`` field (the smoke profile), leaves DPO nothing
    to learn from.
    """
    from .training.dpo import DpoSettings, save_pairs, train_dpo

    if mined.train.empty:
        print(
            "No DPO run: mining found no training pair "
            f"({mined.reports['train'].samples_without_intent} of {mined.reports['train'].samples} samples had no intent). "
            "Train the SFT model longer or raise dpo_k."
        )
        return None

    p = DPOParams.from_params(params)
    settings = train_settings(
        replace(p, learning_rate=p.dpo_learning_rate or PAPER_DPO_LR, epochs=p.dpo_epochs, max_steps=p.dpo_max_steps), "intent_label"
    )
    dpo = DpoSettings(beta=p.dpo_beta)
    variant = mined.settings.variant
    config = run_config(
        p, "dpo", "intent_label", settings,
        variant=variant,
        parent_run=results.read_run_config(sft_dir)["run_id"],
        dpo=dpo.to_dict(),
        mining=mined.settings.to_dict(),
        mining_report={split: report.to_dict() for split, report in mined.reports.items()},
        pairs_from=mined.source,
    )
    run_dir = results.create_run(out_dir, f"dpo-{variant}", config)
    if distributed.is_main_process():
        save_pairs(run_dir, pd.concat([mined.train, mined.val], ignore_index=True))
    train_dpo(sft_dir, mined.train, mined.val, settings=settings, dpo=dpo, run_dir=run_dir)
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def distill_traces(params: dict, splits: data.Splits, trace_conditions: list[str], teacher_spec: str = "file", out_dir: Path | None = None):
    """Screened teacher traces per condition on the shared train/val rows; see :func:`collect_traces`.

    A traces file without ``synthetic_intent`` (the shipped one) gets it from
    :class:`aims_kit.teachers.SelfIntentTeacher`: the same reasoning with the intent written by
    the newest SFT intent → label run in ``out_dir``, so all three conditions run offline.
    Returns ``(trace_sets, skipped, teacher name)``; ``skipped`` says why a condition is absent.
    Under several processes the main one asks the teacher and the others receive its traces.
    """
    return distributed.from_main(lambda: _distill_traces(params, splits, trace_conditions, teacher_spec, out_dir))


def _distill_traces(params: dict, splits: data.Splits, trace_conditions: list[str], teacher_spec: str, out_dir: Path | None):
    from .teachers import SelfIntentTeacher, TracesFileTeacher, make_teacher, sft_intent_writer
    from .training.distill import collect_traces

    teacher = make_teacher(teacher_spec)
    p = DistillParams.from_params(params)
    if ("synthetic_intent" in trace_conditions and isinstance(teacher, TracesFileTeacher)
            and "synthetic_intent" not in teacher.trace_conditions() and out_dir is not None
            and results.find_runs(out_dir, regime="sft", condition="intent_label")):
        sft = find_sft_run(out_dir)
        teacher = SelfIntentTeacher(teacher, sft_intent_writer(sft, batch_size=p.eval_batch_size, max_new_tokens=p.max_new_tokens),
                                    source=f"SFT run {sft.name}")
    # A seeded sample, never a head (see data.balanced_sample): students trained on the first
    # rows per label collapsed.
    limit = p.distill_max_rows
    train = data.stratified_sample(splits.train, limit, seed=p.seed)
    val = data.stratified_sample(splits.val, max(8, limit // 4) if limit else 0, seed=p.seed)
    trace_sets, skipped = collect_traces(teacher, train, val, trace_conditions)
    return trace_sets, skipped, teacher.name


def distill_run(params: dict, splits: data.Splits, trace_set, teacher: str, out_dir: Path) -> Path:
    """Train one distillation student (LoRA r=32, α=64) into a new run folder; evaluate on the test split."""
    from .teachers import output_condition
    from .training.distill import DISTILL_LORA, train_student

    p = DistillParams.from_params(params)
    condition = output_condition(trace_set.trace_condition)
    student_steps = p.max_steps if p.distill_max_steps is None else p.distill_max_steps
    settings = train_settings(replace(p, max_steps=student_steps), condition, lora=DISTILL_LORA)
    config = run_config(
        p, "distill", condition, settings,
        variant=trace_set.trace_condition,
        teacher=teacher,
        rows={"train": len(trace_set.train), "val": len(trace_set.val)},
    )
    run_dir = results.create_run(out_dir, f"distill-{trace_set.trace_condition}", config)
    train_student(p.model, trace_set, settings=settings, run_dir=run_dir)
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def evaluate_run(run_dir: Path, frame: pd.DataFrame, dataset: str, params: Mapping | RunParams) -> dict | None:
    """Load the run's adapter fresh from disk (proving it was saved and is applied) and score it.

    The adapter is merged and, on a CPU with native bf16, the weights cast to bf16
    (:func:`aims_kit.models.prepare_for_inference`); the record states the compute dtype.

    With ``backend`` "auto" (default) generation uses vLLM when it is installed and CUDA is
    present, after checking that vLLM really applies the adapter; "transformers" forces
    transformers. The kernel's one vLLM engine is reused across runs on the same base model
    (``gpu_memory_utilization`` sets its share; see :mod:`aims_kit.vllm_backend`).
    """
    from . import vllm_backend

    if not distributed.is_main_process():  # under a multi-process launcher rank 0 evaluates alone
        return None
    p = params if isinstance(params, RunParams) else RunParams.from_params(params)
    config = results.read_run_config(run_dir)
    model, tokenizer = load_for_inference(run_dir)
    frame = data.balanced_head(frame, p.eval_limit)
    budget = p.answer_budget(config["condition"])
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


def comparison_table(out_dir: Path, dataset: str = "aims_test") -> pd.DataFrame:
    """F1 and friends per run on one dataset, trivial baselines beside them."""
    from .report import results_table

    records = results.load_records(out_dir)
    if records.empty:
        return records
    return results_table(records[records["dataset"] == dataset])


def notebook_params(namespace: dict) -> dict:
    """The notebook's parameters from its globals (every name :data:`aims_kit.settings.KNOWN` lists).

    Kept a plain dict, as papermill and the profiles write it; each regime function reads it
    through its typed settings (:mod:`aims_kit.settings`).
    """
    return {name: namespace[name] for name in KNOWN if name in namespace}


def predictions_frame(run_dir: Path, dataset: str) -> pd.DataFrame:
    """A run's saved predictions on ``dataset``: prompt, gold, predicted label and intent, raw output."""
    rows = results.read_jsonl(Path(run_dir) / "predictions" / f"{dataset}.jsonl")
    return pd.DataFrame(rows)[["id", "gold", "pred", "parsed", "intent", "prompt", "output"]]
