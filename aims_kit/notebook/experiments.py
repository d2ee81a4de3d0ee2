"""The glue a notebook calls: turn a regime's parameters into a trained, evaluated, recorded run.

Each function here is one lab-notebook step ("train SFT with the intent target", "evaluate
this run on the test split"), so notebook cells stay one or two calls long. Each takes its
regime's typed parameters (:mod:`aims_kit.core.params`), built once by the notebook's first
cell or by ``python -m aims_kit train``, and passes them down unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from aims_kit.core import distributed, results
from aims_kit.core.params import (
    DistillParams,
    DPOParams,
    GRPOParams,
    RunParams,
    SFTParams,
)
from aims_kit.datasets import aims as data
from aims_kit.datasets import formats
from aims_kit.evaluation.runs import evaluate_run
from aims_kit.models.loading import load_for_inference
from aims_kit.models.lora import LoraSettings
from aims_kit.training.common import TrainSettings
from aims_kit.training.dpo_pairs import (
    MinedPairs,
    MiningSettings,
    mine_pairs,
    model_generator,
    read_dpo_pairs,
)
from aims_kit.training.grpo import CONDITION as GRPO_CONDITION
from aims_kit.training.grpo import GRPOSettings, train_grpo
from aims_kit.training.sft import PAPER_LR, train_sft

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
        **p.training_basics(),
        learning_rate=p.learning_rate or PAPER_LR[condition],
        lora=replace(lora or LoraSettings(), top_layers=p.lora_layers),
    )


def run_config(p: RunParams, regime: str, condition: str, settings: TrainSettings, **extra) -> dict:
    """What a run's ``config.json`` holds: what it is, the whole regime parameters, the resolved
    trainer settings, and the answer budget it was scored with (``max_new_tokens``), which every
    later use of the run reads back (:func:`aims_kit.evaluation.runs.answer_budget`)."""
    return {
        "regime": regime,
        "condition": condition,
        "model": p.model,
        "data_source": p.data_source or "aims-kit sample",
        "profile": p.profile,
        "seed": settings.seed,
        "max_new_tokens": p.answer_budget(condition),
        "params": p.to_dict(),
        "train": settings.to_dict(),
        **settings.precision(),
        **extra,
    }


def sft_run(p: SFTParams, splits: data.Splits, condition: formats.Condition, out_dir: Path) -> Path:
    """Train one SFT condition into a new run folder and evaluate it on the test split."""
    p = replace(p, max_steps=int(p.condition_max_steps.get(condition, p.max_steps)))
    settings = train_settings(p, condition)
    run_dir = results.create_run(out_dir, f"sft-{condition}", run_config(p, "sft", condition, settings))
    if results.is_evaluated(run_dir, "aims_test"):  # finished before an interruption
        return run_dir
    train_sft(p.model, splits.train, splits.val, condition=condition, settings=settings, run_dir=run_dir,
              val_f1_tokens=p.val_f1_tokens(condition))
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
        gpu_memory_utilization=p.gpu_memory_utilization,
        lora=LoraSettings(top_layers=p.lora_layers),  # used when GRPO starts from the base model
    )


#: Where the learning-rate pilots of :func:`choose_grpo_learning_rate` write their runs: beside
#: ``runs/``, never in it, so no scoreboard or table ever picks a pilot up.
GRPO_PILOTS = "grpo-lr-pilots"


def choose_grpo_learning_rate(p: GRPOParams, splits: data.Splits, out_dir: Path) -> tuple[GRPOParams, pd.DataFrame]:
    """The GRPO learning rate chosen on validation among ``p.grpo_lr_candidates``; ``p`` unchanged without any.

    Why: the paper's 1e-6 updated every weight of an 8B model; on a LoRA the same rate barely
    moves the policy, so claim 4 would come out "not trained apart" by construction. Each
    candidate trains a pilot of ``grpo_lr_pilot_steps`` steps with the label + intent reward
    from the same SFT adapter; the highest validation F1 of its snapshots picks the rate (ties:
    the smaller rate, the paper's side). The pilots and ``grpo_lr_selection.json`` go to
    ``out_dir/grpo-lr-pilots/``. Returns the parameters with the chosen rate and the table.
    """
    candidates = [float(lr) for lr in p.grpo_lr_candidates]
    if not candidates:
        return p, pd.DataFrame([{"learning_rate": p.grpo_learning_rate, "best val F1": None,
                                 "pilot run": "none: no grpo_lr_candidates, the rate as given"}])
    if p.grpo_lr_pilot_steps < 1:
        raise ValueError("grpo_lr_candidates needs grpo_lr_pilot_steps >= 1 (steps of each pilot run)")
    pilots_dir = Path(out_dir) / GRPO_PILOTS
    steps = int(p.grpo_lr_pilot_steps)
    rows = []
    for lr in candidates:
        pilot = replace(p, grpo_learning_rate=lr, grpo_steps=steps, grpo_eval_steps=min(steps, p.grpo_eval_steps or steps),
                        sft_run=str(find_sft_run(out_dir, p.sft_run, seed=p.seed)) if p.grpo_start == "sft" else p.sft_run)
        run_dir = grpo_run(pilot, splits, "label_intent", pilots_dir, evaluate_test=False)
        history = results.read_json(run_dir / "val_selection.json")["history"]
        rows.append({"learning_rate": lr, "best val F1": max(point["val_f1"] for point in history), "pilot run": run_dir.name})
    table = pd.DataFrame(rows)
    best = table.sort_values(["best val F1", "learning_rate"], ascending=[False, True]).iloc[0]
    results.atomic_write_json(pilots_dir / "grpo_lr_selection.json", {
        "split": "val", "rule": "highest validation F1 of a pilot's snapshots; ties to the smaller rate",
        "pilot_steps": steps, "candidates": rows, "chosen": float(best["learning_rate"]),
    })
    return replace(p, grpo_learning_rate=float(best["learning_rate"])), table


def grpo_run(p: GRPOParams, splits: data.Splits, reward_set: str, out_dir: Path, *, evaluate_test: bool = True) -> Path:
    """Train GRPO with one reward set into a new run folder and evaluate it on the test split
    (not a learning-rate pilot: ``evaluate_test=False``, the test split stays unseen).

    With ``grpo_start="sft"`` (default) it continues ``p.sft_run``, or the latest SFT intent_label
    run under ``out_dir``; the run records that parent and uses the parent's base model.
    """
    settings = grpo_settings(p, reward_set)
    parent = None
    if settings.start == "sft":
        parent = find_sft_run(out_dir, p.sft_run, seed=p.seed)
        require_parent_split(parent, p)
        p = replace(p, model=results.read_run_config(parent)["model"])
    config = run_config(
        p, "grpo", GRPO_CONDITION, settings.train_settings(),
        variant=reward_set, parent_run=parent.name if parent else None, grpo=settings.to_dict(),
    )
    run_dir = results.create_run(out_dir, f"grpo-{reward_set}", config)
    train_grpo(p.model, splits.train, splits.val, settings=settings, run_dir=run_dir, sft_run=parent)
    if evaluate_test:
        evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def find_sft_run(out_dir: Path, sft_run: str = "", condition: formats.Condition = "intent_label", *,
                 seed: int | None = None) -> Path:
    """The SFT run a later regime starts from: ``sft_run`` if given, else the newest one in ``out_dir``
    (trained with ``seed`` where one is given: a folder holding several seeds pairs each DPO or
    GRPO run with the SFT run of its own seed, whose split it shares)."""
    if sft_run:
        return Path(sft_run)
    return results.latest_run(out_dir, regime="sft", condition=condition, **({} if seed is None else {"seed": seed}))


def require_parent_split(parent: Path, p: RunParams) -> None:
    """Refuse to continue ``parent`` (an SFT run) under another split than the one it trained on.

    Why: ``seed`` and ``data_source`` draw the train/val/test split. A DPO or GRPO run with
    another seed would be tested on prompts its SFT parent was trained on, and its comparison with
    that parent (claims 2 and 4) would be contaminated without a sign in any number.
    """
    config = results.read_run_config(parent)
    mine = (p.seed, p.data_source or "aims-kit sample")
    theirs = (config.get("seed"), config.get("data_source") or "aims-kit sample")
    if mine != theirs:
        raise data.SplitHygieneError(
            f"{parent.name} was trained with seed {theirs[0]} on {theirs[1]!r}; this run has seed {mine[0]} on {mine[1]!r}, "
            "so its test split would hold prompts the parent trained on. Continue it with the parent's seed and data, "
            "or train a new SFT run with these (02_sft)."
        )


def mine_dpo_pairs(p: DPOParams, splits: data.Splits, sft_dir: Path) -> MinedPairs:
    """Sample the SFT model on train and val prompts and mine its intent errors (docs/design.md §Regimes).

    ``p.dpo_variant`` picks the rejects: ``hard`` (wrong re-classified label) or ``judge``
    (``p.judge`` grades the intent too).

    Under several processes the main one mines and the others receive its pairs: every process
    then trains on the same pairs, mined once. With ``dpo_pairs_from`` set nothing is mined: the pairs
    are read from that file (:func:`read_dpo_pairs`).
    """
    require_parent_split(sft_dir, p)  # before minutes of mining, not after
    if p.dpo_pairs_from:
        return read_dpo_pairs(p.dpo_pairs_from, p.dpo_variant)
    return distributed.from_main(lambda: _mine_dpo_pairs(p, splits, sft_dir))


def _mine_dpo_pairs(p: DPOParams, splits: data.Splits, sft_dir: Path) -> MinedPairs:
    from transformers import set_seed

    from aims_kit.scoring.judges import make_judge

    settings = MiningSettings(k=p.dpo_k, temperature=p.dpo_temperature, max_new_tokens=p.max_new_tokens, variant=p.dpo_variant,
                              min_class_share=p.dpo_min_class_share, seed=p.seed)
    judge = make_judge(p.judge) if p.dpo_variant == "judge" else None
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


def dpo_run(p: DPOParams, splits: data.Splits, sft_dir: Path, mined: MinedPairs, out_dir: Path) -> Path | None:
    """Train DPO from the SFT adapter on mined pairs into a new run folder; evaluate on the test split.

    Returns ``None`` (and says why) when mining found no training pair: an SFT model that never
    errs, or one too weak to write an ``Intent:`` field (the smoke profile), leaves DPO nothing
    to learn from.
    """
    from aims_kit.training.dpo import DpoSettings, save_pairs, train_dpo

    if mined.train.empty:
        print(
            "No DPO run: mining found no training pair "
            f"({mined.reports['train'].samples_without_intent} of {mined.reports['train'].samples} samples had no intent). "
            "Train the SFT model longer or raise dpo_k."
        )
        return None

    require_parent_split(sft_dir, p)
    p = replace(p, learning_rate=p.dpo_learning_rate or PAPER_DPO_LR, epochs=p.dpo_epochs, max_steps=p.dpo_max_steps)
    settings = train_settings(p, "intent_label")
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
    train_dpo(sft_dir, mined.train, mined.val, settings=settings, dpo=dpo, run_dir=run_dir,
              val=splits.val, val_f1_tokens=p.val_f1_tokens("intent_label"))
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def distill_traces(p: DistillParams, splits: data.Splits, out_dir: Path | None = None):
    """Screened teacher traces of ``p.teacher`` per condition of ``p.distill_conditions`` on the
    shared train/val rows; see :func:`aims_kit.training.distill.collect_traces`.

    A traces file without ``synthetic_intent`` (the shipped one) gets it from
    :class:`aims_kit.training.teachers.SelfIntentTeacher`: the same reasoning with the intent written by
    the newest SFT intent → label run in ``out_dir``, so all three conditions run offline.
    Returns ``(trace_sets, skipped, teacher name)``; ``skipped`` says why a condition is absent.
    Under several processes the main one asks the teacher and the others receive its traces.
    """
    return distributed.from_main(lambda: _distill_traces(p, splits, out_dir))


def _distill_traces(p: DistillParams, splits: data.Splits, out_dir: Path | None):
    from aims_kit.training.distill import collect_traces
    from aims_kit.training.teachers import (
        SelfIntentTeacher,
        TracesFileTeacher,
        make_teacher,
        sft_intent_writer,
    )

    trace_conditions = list(p.distill_conditions)
    teacher = make_teacher(p.teacher)
    if ("synthetic_intent" in trace_conditions and isinstance(teacher, TracesFileTeacher)
            and "synthetic_intent" not in teacher.trace_conditions() and out_dir is not None
            and results.find_runs(out_dir, regime="sft", condition="intent_label", seed=p.seed)):
        sft = find_sft_run(out_dir, seed=p.seed)
        teacher = SelfIntentTeacher(teacher, sft_intent_writer(sft, batch_size=p.eval_batch_size, max_new_tokens=p.max_new_tokens),
                                    source=f"SFT run {sft.name}")
    # A seeded sample, never a head (see data.balanced_sample): students trained on the first
    # rows per label collapsed.
    limit = p.distill_max_rows
    train = data.stratified_sample(splits.train, limit, seed=p.seed)
    val = data.stratified_sample(splits.val, max(8, limit // 4) if limit else 0, seed=p.seed)
    trace_sets, skipped = collect_traces(teacher, train, val, trace_conditions)
    return trace_sets, skipped, teacher.name


def distill_run(p: DistillParams, splits: data.Splits, trace_set, teacher: str, out_dir: Path) -> Path:
    """Train one distillation student (LoRA r=32, α=64) into a new run folder; evaluate on the test split."""
    from aims_kit.training.distill import DISTILL_LORA, train_student
    from aims_kit.training.teachers import output_condition

    condition = output_condition(trace_set.trace_condition)
    p = replace(p, max_steps=p.max_steps if p.distill_max_steps is None else p.distill_max_steps)
    settings = train_settings(p, condition, lora=DISTILL_LORA)
    config = run_config(
        p, "distill", condition, settings,
        variant=trace_set.trace_condition,
        teacher=teacher,
        rows={"train": len(trace_set.train), "val": len(trace_set.val)},
    )
    run_dir = results.create_run(out_dir, f"distill-{trace_set.trace_condition}", config)
    train_student(p.model, trace_set, settings=settings, run_dir=run_dir, val_f1_tokens=p.val_f1_tokens(condition))
    evaluate_run(run_dir, splits.test, "aims_test", p)
    return run_dir


def comparison_table(out_dir: Path, dataset: str = "aims_test") -> pd.DataFrame:
    """F1 and friends per run on one dataset, trivial baselines beside them."""
    from aims_kit.notebook.report import results_table

    records = results.load_records(out_dir)
    if records.empty:
        return records
    return results_table(records[records["dataset"] == dataset])


def predictions_frame(run_dir: Path, dataset: str) -> pd.DataFrame:
    """A run's saved predictions on ``dataset``: prompt, gold, predicted label and intent, raw output."""
    rows = results.read_jsonl(Path(run_dir) / "predictions" / f"{dataset}.jsonl")
    return pd.DataFrame(rows)[["id", "gold", "pred", "parsed", "intent", "prompt", "output"]]
