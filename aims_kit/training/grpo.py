"""GRPO: reinforcement learning on the intent → label format, rewarded for faithful intents.

TRL's ``GRPOTrainer`` samples ``num_generations`` completions per train prompt, scores each
with a :class:`~aims_kit.training.rewards.RewardSet`, and pushes the policy towards the
completions that beat their group's mean. Two starting points:

- ``start="sft"`` (the paper's best runs): the SFT intent → label adapter is loaded trainable
  and passed to the trainer *without* a ``peft_config``. TRL then copies it into a frozen
  second adapter named ``"ref"`` and computes the KL term against that copy, so β keeps the
  policy near the SFT model rather than near the base model. Only the ``"default"`` adapter
  is saved with the run.
- ``start="base"``: a fresh LoRA adapter on the base model (``peft_config``); the reference
  is then the base model with the adapter disabled.

Rollouts use vLLM (colocated in this process, its share of the GPU the ``gpu_memory_utilization``
parameter, its context cut to what a rollout needs) when it is installed, a CUDA GPU is present
and the policy is not 4-bit: pushing a LoRA policy to vLLM means merging the adapter into the
base, and into packed NF4 weights that merge fails or rounds (open TRL issues), so a QLoRA policy
rolls out through transformers' ``generate``, as everything does on a CPU.
The checkpoint kept is the snapshot with the best **validation** F1 (never test): every
``eval_steps`` steps the policy is evaluated greedily on the val split and the adapter is
saved when it beats every earlier snapshot.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from aims_kit.core import distributed
from aims_kit.core.results import atomic_write_json, atomic_write_jsonl, share_like_umask
from aims_kit.datasets import aims as data
from aims_kit.datasets import formats
from aims_kit.datasets.aims import require_split
from aims_kit.inference.vllm import MAX_MODEL_LEN
from aims_kit.models.loading import load_model, load_trained
from aims_kit.models.lora import LoraSettings
from aims_kit.models.precision import has_cuda, inference_copy, uses_4bit
from aims_kit.scoring import evaluate as evaluation
from aims_kit.scoring.judges import OnFailure, make_judge
from aims_kit.training.common import TrainSettings, attach_progress, fit, trainer_kwargs
from aims_kit.training.rewards import REWARD_SETS, RewardSet, make_reward_set

#: GRPO trains the intent → label output (the reasoning variant also earns the format reward).
CONDITION: formats.Condition = "intent_label"


@dataclass
class GRPOSettings:
    """GRPO hyper-parameters. Defaults are the paper's (docs/design.md §Regimes) where it gives them."""

    #: Which reward to maximise: ``label_intent`` (format × label × length × faithfulness) or
    #: ``label_only`` (format × label, the paper's ablation).
    reward_set: str = "label_intent"
    #: ``sft``: continue the SFT intent → label adapter; ``base``: a fresh LoRA on the base model.
    start: Literal["sft", "base"] = "sft"
    #: Rollouts per prompt (paper: 8–16). GRPO needs at least 2 to compare within a group.
    num_generations: int = 8
    #: Prompts per optimiser step; the step's batch is ``prompts_per_step × num_generations``.
    prompts_per_step: int = 4
    #: Sampling temperature of the rollouts (paper: 1.2).
    temperature: float = 1.2
    #: KL coefficient towards the reference (paper: 0.001).
    beta: float = 0.001
    #: Paper: 1e-6 (on 8B models; a tiny model from scratch needs far more to move).
    learning_rate: float = 1e-6
    #: Optimiser steps.
    steps: int = 200
    #: Evaluate on val and snapshot the adapter every this many steps (and at the last step).
    eval_steps: int = 50
    #: Longest rollout, in tokens.
    max_completion_length: int = 64
    #: Judge for the faithfulness reward (see :func:`aims_kit.scoring.judges.make_judge`).
    judge: str = "embedding"
    #: What to do when the judge is unreachable: ``raise`` or ``fallback`` (offline embedding judge).
    judge_on_failure: OnFailure = "raise"
    #: Validation rows used for checkpoint selection (``0``: all), balanced over labels.
    val_limit: int = 0
    eval_batch_size: int = 32
    seed: int = 22
    report_to: str = "none"
    #: 4-bit NF4 base (QLoRA), as :attr:`aims_kit.training.common.TrainSettings.quantize`.
    quantize: bool | None = None
    #: Share of the GPU a colocated vLLM rollout engine may take (where :func:`rollout_engine` picks vLLM).
    gpu_memory_utilization: float = 0.3
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.reward_set not in REWARD_SETS:
            raise ValueError(f"unknown reward set {self.reward_set!r}; choose one of {', '.join(REWARD_SETS)}")
        if self.start not in ("sft", "base"):
            raise ValueError(f"start must be 'sft' or 'base', got {self.start!r}")
        if self.num_generations < 2:
            raise ValueError("GRPO compares rollouts within a group: num_generations must be at least 2")

    def train_settings(self) -> TrainSettings:
        """The shared optimiser settings; one step consumes ``prompts_per_step`` whole groups."""
        return TrainSettings(
            learning_rate=self.learning_rate,
            max_steps=self.steps,
            batch_size=self.prompts_per_step * self.num_generations,
            eval_steps=self.eval_steps,
            seed=self.seed,
            report_to=self.report_to,
            quantize=self.quantize,
            lora=self.lora,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def grpo_records(frame: pd.DataFrame) -> list[dict]:
    """Chat prompts plus the columns the rewards read (``label`` and ``intent``, gold)."""
    return [
        {"prompt": formats.prompt_messages(prompt, CONDITION), "label": label, "intent": intent}
        for prompt, label, intent in zip(frame["Prompt"], frame["label"], frame["Intent"])
    ]


def rollout_engine(quantize: bool | None) -> tuple[bool, str]:
    """Whether rollouts go through vLLM, and why (the reason is written to the run's config).

    vLLM where it can run (installed, CUDA) and the policy is not 4-bit; transformers otherwise.
    """
    if not (has_cuda() and importlib.util.find_spec("vllm") is not None):
        return False, "transformers: vLLM needs a CUDA GPU and the vllm package"
    if uses_4bit(quantize):
        return False, "transformers: the policy is 4-bit, and merging a LoRA into NF4 weights for vLLM is unreliable"
    return True, "vllm (colocated)"


def shared_rollout_groups(prompt_ids: list[list[int]], k: int) -> list[list[int]] | None:
    """The distinct prompts of a rollout batch whose prompts come in runs of ``k`` copies (TRL's
    sampler repeats each prompt ``num_generations`` times in a row); ``None`` for any other layout."""
    if k < 1 or len(prompt_ids) % k:
        return None
    groups = [prompt_ids[i:i + k] for i in range(0, len(prompt_ids), k)]
    if any(any(ids != group[0] for ids in group) for group in groups):
        return None
    return [list(group[0]) for group in groups]


def shared_prompt_trainer(base: type) -> type:
    """TRL's GRPO trainer whose transformers rollouts run each prompt's pass once for its
    ``num_generations`` samples (:func:`aims_kit.inference.generation.decode_batch`).

    Why: TRL's transformers path calls ``model.generate`` on every copy of every prompt, so the
    prompt pass, most of a short rollout's arithmetic, ran ``num_generations`` times, and finished
    rollouts stayed in the batch to the budget's end. The samples come from the same
    distribution (temperature, TRL's ``top_k``; the same seed draws the same tokens while no row
    has finished: tests/test_shared_sampling.py). vLLM, continuous batching, images, and samplers
    the kit does not apply (top-p, min-p, repetition penalty) keep TRL's own path.
    """
    import torch
    from trl.models import unwrap_model_for_generation

    from aims_kit.inference.generation import decode_batch

    class SharedPromptGRPOTrainer(base):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            unique = shared_rollout_groups(prompt_ids, num_generations)
            plain = self.top_p in (None, 1.0) and not self.min_p and self.repetition_penalty in (None, 1.0)
            if (unique is None or not plain or self.use_vllm or self.use_transformers_continuous_batching or images
                    or multimodal_fields or self.args.generation_kwargs):
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
            with (
                unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                            gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                            generation_kwargs=self.generation_kwargs,
                                            gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as model,
                torch.no_grad(),
            ):
                completions = decode_batch(model, self._tokenizer, unique, self._tokenizer.pad_token_id, list(self.eos_token_ids),
                                           (), self.max_completion_length, k=num_generations, temperature=self.temperature,
                                           top_k=self.top_k or 0)
            return completions, None

    return SharedPromptGRPOTrainer


def length_grouped(base: type) -> type:
    """TRL's GRPO trainer whose generation batches hold prompts of about the same length
    (:mod:`aims_kit.training.length_groups`).

    Why: a step's rollouts are padded to its longest prompt, and one long prompt among four made
    up to 37% of the policy update's positions padding (perf/bench_train.py ``--regimes grpo``).
    TRL's repeat sampler still repeats each prompt for its ``num_generations`` rollouts; it walks
    the rows in order (``shuffle_dataset=False``, set by :func:`train_grpo`) and the kit's grouped,
    shuffled order says which row each position is.
    """
    from aims_kit.inference.generation import chat_inputs
    from aims_kit.training.length_groups import LengthGroupedOrder, Reordered

    class LengthGroupedGRPOTrainer(base):
        def _get_train_sampler(self, dataset=None):
            dataset = self.train_dataset if dataset is None else dataset
            if self.shuffle_dataset:
                raise ValueError("length-grouped GRPO reads TRL's repeat sampler in order: set shuffle_dataset=False")
            lengths = [len(ids) for ids in chat_inputs(self.processing_class, dataset["prompt"])]
            prompts = self.args.generation_batch_size // self.num_generations
            return Reordered(super()._get_train_sampler(dataset), LengthGroupedOrder(lengths, prompts, self.args.seed))

    return LengthGroupedGRPOTrainer


def train_grpo(
    model_name: str,
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    settings: GRPOSettings,
    run_dir: Path,
    sft_run: Path | None = None,
):
    """Train with GRPO into ``run_dir``; returns the trainer.

    Writes ``adapter/`` (the best-on-val snapshot), ``reward_log.jsonl`` (per-step reward
    components), ``val_selection.json`` (val F1 per snapshot, the step kept) and
    ``train_log.json`` (TRL's log history).
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    require_split(train, "train", "GRPO rollouts")
    require_split(val, "val", "GRPO checkpoint selection")
    judge = make_judge(settings.judge, on_failure=settings.judge_on_failure) if "faithfulness" in REWARD_SETS[settings.reward_set] else None
    reward = make_reward_set(settings.reward_set, judge)
    if settings.start == "sft":
        if sft_run is None:
            raise ValueError("start='sft' needs the SFT intent_label run folder (sft_run)")
        model, tokenizer = load_trained(sft_run, trainable=True, quantize=uses_4bit(settings.quantize))
        peft_config = None  # TRL keeps a frozen "ref" copy of this adapter for the KL term
    else:
        model, tokenizer = load_model(model_name, quantize=settings.quantize, trainable=True)
        peft_config = settings.lora.to_peft(model)
    kwargs = trainer_kwargs(settings.train_settings(), run_dir, with_eval=False)
    # Log every step (the reward curves), no trainer checkpoints (the val snapshots replace them),
    # gradient checkpointing only where memory is scarce: on CPU it only costs time.
    kwargs.update(logging_steps=1, save_strategy="no")
    vllm_rollouts, why = rollout_engine(settings.quantize)
    atomic_write_json(run_dir / "rollouts.json", {"engine": why, "max_completion_length": settings.max_completion_length})
    config = GRPOConfig(
        **kwargs,
        num_generations=settings.num_generations,
        temperature=settings.temperature,
        beta=settings.beta,
        max_completion_length=settings.max_completion_length,
        use_vllm=vllm_rollouts,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=settings.gpu_memory_utilization,
        # A rollout is an AIMS prompt and a short answer: the model's own context (131,072
        # tokens for Llama-3.1) would size vLLM's KV cache for nothing.
        vllm_max_model_length=MAX_MODEL_LEN,
        chat_template_kwargs=formats.CHAT_TEMPLATE_KWARGS,  # rollouts start at the answer, not in a think block
        shuffle_dataset=False,  # the prompts' order is drawn by length_grouped (shuffled, in groups of similar length)
    )
    selection = _ValSelection(val, tokenizer, run_dir, settings)
    trainer = length_grouped(shared_prompt_trainer(GRPOTrainer))(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=Dataset.from_list(grpo_records(train)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[selection.callback()],
    )
    attach_progress(trainer, f"GRPO {settings.reward_set}")
    fit(trainer)
    _save_logs(trainer, reward, selection, run_dir, judge)
    return trainer


class _ValSelection:
    """Evaluate the policy on val every ``eval_steps`` steps; keep the adapter with the best F1.

    Under several processes the main one alone evaluates and saves (the others wait for it at
    the next gradient exchange): one snapshot history, one adapter.
    """

    def __init__(self, val: pd.DataFrame, tokenizer, run_dir: Path, settings: GRPOSettings):
        self.val = data.balanced_head(val, settings.val_limit)
        self.tokenizer = tokenizer
        self.adapter_dir = run_dir / "adapter"
        self.settings = settings
        self.history: list[dict] = []
        self.best: dict | None = None

    def evaluate(self, model, step: int) -> None:
        metrics, _ = evaluation.evaluate(
            inference_copy(model),  # the saved run's arithmetic; merges the trained adapter, not "ref"
            self.tokenizer,
            self.val,
            condition=CONDITION,
            dataset="aims_val",
            batch_size=self.settings.eval_batch_size,
            max_new_tokens=self.settings.max_completion_length,
            # Selection reads F1 alone: no single-request timing, no bootstrap (on a CPU the
            # timing alone cost as much as the snapshot itself).
            latency_sample=0,
            n_boot=0,
        )
        point = {"step": step, "val_f1": metrics["f1"], "val_parse_failure_rate": metrics["parse_failure_rate"]}
        self.history.append(point)
        if self.best is None or point["val_f1"] > self.best["val_f1"]:
            self.best = point
            # Only the trained adapter: the frozen "ref" copy is a training device, not a result.
            model.save_pretrained(str(self.adapter_dir), selected_adapters=["default"], safe_serialization=True)

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                step = state.global_step
                if not state.is_world_process_zero:
                    return
                if step % outer.settings.eval_steps == 0 or step >= state.max_steps:
                    outer.evaluate(model, step)

        return _Callback()


def _save_logs(trainer, reward: RewardSet, selection: _ValSelection, run_dir: Path, judge) -> None:
    """Write the run's logs from the main process; the reward log averages every process's rollouts.

    Each process scores only its own share of a step's rollouts, so their per-step rows are
    averaged (each process holds the same number of rollouts per step).
    """
    gathered = distributed.gather_on_main((reward.log, judge.fallbacks if judge else 0))
    if gathered is None:
        return
    logs, fallbacks = zip(*gathered)
    atomic_write_jsonl(run_dir / "reward_log.jsonl", [_mean_row(rows) for rows in zip(*logs)])
    atomic_write_json(run_dir / "train_log.json", trainer.state.log_history)
    atomic_write_json(
        run_dir / "val_selection.json",
        {
            "split": "val",
            "metric": "f1",
            "history": selection.history,
            "best_step": selection.best["step"] if selection.best else None,
            "rule": "the highest validation F1, ties to the earlier step",
            "judge": judge.name if judge else None,
            "judge_fallbacks": sum(fallbacks),
        },
    )
    share_like_umask(run_dir)  # the adapter's weights are written private by the library


def _mean_row(rows: tuple[dict, ...]) -> dict:
    """One step's reward-log row from every process's row of that step (``step`` is the same in all)."""
    return {key: rows[0][key] if key == "step" else sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def reward_set_comparison(runs: dict[str, Path], dataset: str = "aims_test") -> pd.DataFrame:
    """Did the two reward sets end up different models? One row per reward set, from the run folders.

    Identical outputs on ``dataset`` and the mean reward of the first and last steps say whether
    a few GRPO steps moved the policy at all; without movement the F1 comparison of claim 4
    cannot come out either way, whatever the reward.
    """
    from aims_kit.core.results import read_json, read_jsonl

    outputs = {name: {p["id"]: p for p in read_jsonl(Path(run) / "predictions" / f"{dataset}.jsonl")} for name, run in runs.items()}
    rows = []
    for name, run in runs.items():
        others = [o for other, o in outputs.items() if other != name]
        mine = outputs[name]
        log = read_jsonl(Path(run) / "reward_log.jsonl")
        selection = read_json(Path(run) / "val_selection.json")
        rows.append({
            "reward set": name,
            "steps": len(log),
            "mean reward, first step": log[0]["reward"] if log else None,
            "mean reward, last step": log[-1]["reward"] if log else None,
            "step kept (val F1)": selection.get("best_step"),
            f"{dataset} outputs identical to the other set": sum(mine[i]["output"] == o[i]["output"] for o in others for i in mine if i in o),
            f"{dataset} labels differing": sum(mine[i]["pred"] != o[i]["pred"] for o in others for i in mine if i in o),
            "prompts": len(mine),
        })
    return pd.DataFrame(rows)
