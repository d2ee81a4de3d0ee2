"""Typed parameters: one frozen dataclass per regime, built once where a run starts, defaults documented once.

A notebook's ``parameters`` cell (what papermill and ``python -m aims_kit run -p`` override)
becomes its regime's dataclass in the notebook's first code cell
(``SFTParams.from_notebook(globals())``), and ``python -m aims_kit train`` builds the same one
from the profile and ``-p`` overrides. From there the typed object is passed down unchanged, the
way TRL passes ``SFTConfig`` / ``DPOConfig`` / ``GRPOConfig``: no function below parses a dict
again, and no setting arrives both inside it and as a separate argument. Every run writes the
whole object into its ``config.json`` (``params``), so anything that uses the run later
(:class:`aims_kit.Classifier`, export, ``eval``, ``serve``) reads its budgets back from there.

A name no dataclass declares is an :class:`UnknownParameterError` naming it (with the closest
known name), so a misspelt ``-p n_bot=50`` fails at once instead of being dropped. Names other
regimes declare are allowed and ignored: one profile feeds every notebook.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Mapping, TypeVar

P = TypeVar("P", bound="RunParams")

#: What a zero-shot run may ask to be loaded in (``eval --model --precision``): ``auto`` (unquantized,
#: in the device policy's dtype, :func:`aims_kit.models.precision.compute_dtype`), a named 16- or
#: 32-bit dtype, or QLoRA's 4-bit NF4 base (:func:`aims_kit.models.precision.load_precision`).
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32", "4bit")


class UnknownParameterError(ValueError):
    """A parameter name that no notebook or regime declares (usually a typo)."""


@dataclass(frozen=True)
class TrainingBasics:
    """The training fields a notebook sets and a trainer takes, declared once.

    :class:`RunParams` (what a notebook sets) and
    :class:`aims_kit.training.common.TrainSettings` (what every trainer takes) both extend it.
    """

    seed: int = 22
    #: Training steps (-1: run ``epochs``).
    max_steps: int = -1
    epochs: float = 3.0
    batch_size: int = 32
    #: Batches whose gradients add up before each optimiser step: the effective batch is
    #: ``batch_size × gradient_accumulation_steps`` (a 16 GB GPU keeps the paper's 32 as 8 × 4).
    gradient_accumulation_steps: int = 1
    #: Evaluate on validation every this many steps; early stopping and the kept checkpoint
    #: are chosen on validation alone.
    eval_steps: int = 20
    #: Experiment tracker(s) for training curves, passed to every trainer as TrainingArguments'
    #: ``report_to``: ``none``, ``tensorboard`` (event files under the run's ``checkpoints/runs/``),
    #: ``wandb``, ``mlflow``, ``trackio``, or several joined by commas (docs/tracking.md).
    report_to: str = "none"
    #: 4-bit NF4 QLoRA base: ``True`` on any device (on a CPU it checks the QLoRA path a GPU
    #: runs; docs/qlora.md), ``None`` on a CUDA GPU only, ``False`` never.
    quantize: bool | None = None

    def training_basics(self) -> dict:
        """The shared fields alone, to build a trainer's settings from a notebook's parameters."""
        return {f.name: getattr(self, f.name) for f in fields(TrainingBasics)}


@dataclass(frozen=True)
class RunParams(TrainingBasics):
    """What every regime reads: the model and data, training basics and how runs are evaluated."""

    #: Base model: a hub id, a local folder, or the tiny random test model.
    model: str = ""
    #: AIMS data: a hub id, folder or file; empty for the shipped sample.
    data_source: str = ""
    #: Profile the values came from (recorded in each run's config); ``custom`` without one.
    profile: str = "custom"
    #: Where run folders go; empty for ``outputs/lab``.
    out_dir: str = ""
    #: Torch threads per process for ``python -m aims_kit run`` (0: the runner's choice).
    threads: int = 0
    #: Further training seeds for ``python -m aims_kit run``: 02 and 03 run once more per seed
    #: (``aims_kit.notebook.runner.SEEDED_NOTEBOOKS``), so claims 1 and 2 have several seeds per arm.
    seeds: tuple[int, ...] = ()
    #: 0 picks the paper's rate for the output condition (``aims_kit.training.sft.PAPER_LR``).
    learning_rate: float = 0.0
    #: LoRA on the top N decoder layers only (0: all layers).
    lora_layers: int = 0
    #: Evaluate on at most this many test rows, balanced over labels (0: all).
    eval_limit: int = 0
    #: Rows per evaluation batch, within a padded-token cap (:data:`aims_kit.inference.generation.BATCH_TOKENS`
    #: for scoring, :data:`aims_kit.inference.generation.GENERATE_BATCH_TOKENS` for generation).
    eval_batch_size: int = 64
    #: Answer budget of a non-reasoning output condition.
    max_new_tokens: int = 64
    #: Answer budget of a reasoning output condition (and the distillation teacher's).
    distill_max_new_tokens: int = 256
    #: Prompts timed one at a time for p50 / p95 latency on the AIMS test split (0: skip).
    latency_sample: int = 16
    #: Bootstrap resamples for the 95% intervals (0: skip).
    n_boot: int = 1000
    #: Generation backend: ``auto`` (vLLM when installed with CUDA), ``transformers`` or ``vllm``.
    backend: str = "auto"
    #: Share of GPU memory the shared vLLM engine may take.
    gpu_memory_utilization: float = 0.5
    #: Classify the validation split at every validation pass, log its F1 (the curve 02 draws)
    #: and keep the checkpoint with the best one (SFT, DPO, distillation students; GRPO always
    #: does). Off: the validation loss chooses. Costs one validation generation per pass.
    val_f1_curve: bool = True

    def val_f1_tokens(self, condition: str) -> int:
        """The answer budget a validation pass classifies with (0: no F1 pass, the loss chooses)."""
        return self.answer_budget(condition) if self.val_f1_curve else 0

    @classmethod
    def from_params(cls: type[P], params: Mapping) -> P:
        """This regime's settings from a notebook's parameters; an unknown name is an error naming it."""
        check_names(params)
        own = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in params.items() if name in own})

    @classmethod
    def from_notebook(cls: type[P], namespace: Mapping) -> P:
        """This regime's parameters from a notebook's globals: every name :data:`KNOWN` lists, once.

        The notebook's first code cell calls it; what it returns is passed down unchanged.
        """
        return cls.from_params({name: namespace[name] for name in KNOWN if name in namespace})

    def to_dict(self) -> dict:
        """Every field, as the run's ``config.json`` records it (``params``)."""
        return asdict(self)

    #: Parameters this regime replaces with one of its own: ``{name: replacing parameter}``. Where
    #: :meth:`replaced_by` names one, setting ``name`` changes nothing in this notebook.
    REPLACED_BY: ClassVar[dict[str, str]] = {}

    def replaced_by(self, name: str) -> str | None:
        """The parameter that, with these values, takes the place of ``name`` here (``None``: ``name`` is used).

        ``profile`` only records which profile the values came from: setting it sets no value, so it
        is "replaced" by ``python -m aims_kit run --profile``, which does.

        Why: a suggestion such as ``-p max_steps=400`` for the intent condition is silently
        ignored where ``condition_max_steps`` sets that condition's steps; the notebooks' own
        suggestions are checked against this (tests/test_notebook_prose.py). The rules mirror where
        each regime substitutes its own field (:mod:`aims_kit.notebook.experiments`,
        :mod:`aims_kit.training.encoder`).
        """
        if name == "profile":  # a record of where the values came from; it sets none of them
            return "--profile"
        return self.REPLACED_BY.get(name)

    def answer_budget(self, condition: str) -> int:
        """Tokens an answer may take: reasoning answers get the (longer) distillation budget.

        One rule for every place a run is evaluated, so a reasoning model is never cut off before
        its label on one dataset and given room on another.
        """
        return int(self.distill_max_new_tokens if condition.startswith("reasoning") else self.max_new_tokens)


@dataclass(frozen=True)
class SFTParams(RunParams):
    """``02_sft``: one run per output condition."""

    conditions: tuple[str, ...] = ("label_only", "intent_label")
    #: Training steps per output condition where it differs from ``max_steps`` (an intent
    #: target learns its label later than a one-word target; see ``aims_kit/core/profiles.py``).
    condition_max_steps: dict = field(default_factory=dict)

    def replaced_by(self, name: str) -> str | None:
        """``max_steps`` is ignored for every condition ``condition_max_steps`` lists (``experiments.sft_run``)."""
        if name == "max_steps" and any(c in self.condition_max_steps for c in self.conditions):
            return "condition_max_steps"
        return super().replaced_by(name)


@dataclass(frozen=True)
class DPOParams(RunParams):
    """``03_dpo``: mine the SFT model's intent errors, then DPO from its adapter."""

    #: SFT run to start from (empty: the latest intent_label run).
    sft_run: str = ""
    #: Samples per prompt when mining.
    dpo_k: int = 10
    dpo_temperature: float = 0.8
    #: Prompts mined per split, balanced over labels (0: all).
    dpo_max_prompts: int = 0
    #: The share of the kept pairs the smaller class must make up (0.5: as many safe as harmful
    #: pairs; see :class:`aims_kit.training.dpo_pairs.MiningSettings`).
    dpo_min_class_share: float = 0.5
    #: 0 picks the paper's DPO rate (``aims_kit.notebook.experiments.PAPER_DPO_LR``).
    dpo_learning_rate: float = 0.0
    dpo_epochs: float = 3.0
    dpo_max_steps: int = -1
    dpo_beta: float = 0.3
    #: ``hard`` (label errors) or ``judge`` (intent graded by ``judge``).
    dpo_variant: str = "hard"
    #: Pairs mined earlier (a DPO run folder or its ``pairs.jsonl``) to train on instead of mining.
    dpo_pairs_from: str = ""
    judge: str = "embedding"

    #: DPO trains with its own rate, epochs and steps (``dpo_run``); the SFT ones are not read.
    REPLACED_BY: ClassVar[dict[str, str]] = {"learning_rate": "dpo_learning_rate", "epochs": "dpo_epochs",
                                             "max_steps": "dpo_max_steps"}


@dataclass(frozen=True)
class DistillParams(RunParams):
    """``04_distill``: teacher traces per trace condition, one student each."""

    #: Training rows, a seeded sample keeping the label shares (0: all); validation gets a quarter.
    distill_max_rows: int = 0
    #: Student steps; ``None`` uses ``max_steps``.
    distill_max_steps: int | None = None
    #: ``file``, ``file:PATH``, ``chat:MODEL@URL`` or ``hub:MODEL``.
    teacher: str = "file"
    distill_conditions: tuple[str, ...] = ("no_intent", "synthetic_intent", "human_intent")

    def replaced_by(self, name: str) -> str | None:
        """``max_steps`` counts only while ``distill_max_steps`` is ``None`` (``distill_run``)."""
        if name == "max_steps" and self.distill_max_steps is not None:
            return "distill_max_steps"
        return super().replaced_by(name)


@dataclass(frozen=True)
class GRPOParams(RunParams):
    """``05_grpo``. A ``None`` field takes :class:`aims_kit.training.grpo.GRPOSettings`' default (the paper's)."""

    reward_sets: tuple[str, ...] = ("label_intent", "label_only")
    sft_run: str = ""
    grpo_start: str | None = None
    grpo_steps: int | None = None
    grpo_num_generations: int | None = None
    grpo_prompts_per_step: int | None = None
    grpo_temperature: float | None = None
    grpo_beta: float | None = None
    grpo_learning_rate: float | None = None
    #: Learning rates tried first, each in a pilot of ``grpo_lr_pilot_steps`` steps with the
    #: label + intent reward; the best validation F1 picks the rate both reward sets train with
    #: (empty: ``grpo_learning_rate`` as given). Validation only: never test, never a benchmark.
    grpo_lr_candidates: tuple[float, ...] = ()
    grpo_lr_pilot_steps: int = 0
    grpo_eval_steps: int | None = None
    #: Validation rows of each checkpoint-selection snapshot, balanced over labels (``None``:
    #: ``eval_limit``). On a CPU a snapshot of the whole val split costs as much as a few steps.
    grpo_val_limit: int | None = None
    judge: str | None = None
    judge_on_failure: str | None = None

    def replaced_by(self, name: str) -> str | None:
        """Started from an SFT run (the default), GRPO uses that run's base ``model`` (``grpo_run``)."""
        if name == "model" and self.grpo_start in (None, "sft"):
            return "grpo_start"
        return super().replaced_by(name)


@dataclass(frozen=True)
class BenchmarkParams(RunParams):
    """``06_benchmarks``: every run on the external benchmarks, and the encoder baseline."""

    benchmark_names: tuple[str, ...] = ()
    benchmark_sources: tuple[str, ...] = ("local", "hub", "fixture")
    benchmark_paths: tuple[str, ...] = ()
    #: Rows per benchmark, a seeded sample keeping the label share (0: all).
    benchmark_limit: int = 0
    #: Rows of a named benchmark where it differs from ``benchmark_limit`` (name → rows; 0: all).
    benchmark_limits: dict = field(default_factory=dict)
    #: Prompts timed one at a time per (run, benchmark) (``None``: ``latency_sample``). On a CPU
    #: every run times every benchmark, so the cpu profile times fewer here than on AIMS test.
    benchmark_latency_sample: int | None = None
    train_encoder: bool = True
    #: 0 picks 5e-5, the usual BERT fine-tuning rate.
    encoder_learning_rate: float = 0.0
    encoder_epochs: float = 3.0
    encoder_max_steps: int = -1
    encoder_batch_size: int = 16

    #: The encoder baseline, the one thing 06 trains, has its own schedule (``encoder_run``).
    REPLACED_BY: ClassVar[dict[str, str]] = {"learning_rate": "encoder_learning_rate", "epochs": "encoder_epochs",
                                             "max_steps": "encoder_max_steps", "batch_size": "encoder_batch_size"}


@dataclass(frozen=True)
class ReportParams(RunParams):
    """``07_pareto``: which datasets the plots show (empty: all), and claim 5's controlled timing."""

    datasets: tuple[str, ...] = ()
    #: Prompts per dataset that every run is timed on, in one process (:mod:`aims_kit.evaluation.latency`).
    latency_prompts: int = 16
    #: Timed passes per run and dataset (0: no controlled measurement; claim 5 reads each run's own).
    latency_repeats: int = 3
    #: Where every claim's headline test lies: "" each claim's own (AIMS test for 1–3), or
    #: "external mean" (the paper's own headline; the ``study`` profile), named before any verdict.
    headline_dataset: str = ""


@dataclass(frozen=True)
class ReleasedParams(BenchmarkParams):
    """``09_released_checkpoints``: the paper's released checkpoints, evaluated zero-shot as the paper prompted them."""

    #: Which released checkpoints to evaluate (``sft``, ``dpo``, ``distill``, ``grpo``; empty: none).
    #: Each is an 8B model: a GPU job (docs/released.md). The smoke profile evaluates stand-ins.
    released_roles: tuple[str, ...] = ()
    #: How they load (:data:`PRECISIONS`): ``auto`` is unquantized in the device policy's dtype (bf16
    #: on a modern GPU, as the paper evaluated); ``4bit`` fits a 16 GB card but departs from the paper.
    released_precision: str = "auto"
    #: Answer budget of every checkpoint (0: each one's own, 256 for intent answers and 2,048 for
    #: reasoning ones, as the paper evaluated them).
    released_max_new_tokens: int = 0


REGIMES: tuple[type[RunParams], ...] = (SFTParams, DPOParams, DistillParams, GRPOParams, BenchmarkParams, ReportParams,
                                        ReleasedParams)
#: Every parameter name a notebook or profile may set, in declaration order.
KNOWN: tuple[str, ...] = tuple(dict.fromkeys(f.name for regime in REGIMES for f in fields(regime)))


def check_names(params: Mapping) -> None:
    """Raise :class:`UnknownParameterError` for the first name no regime declares."""
    for name in params:
        if name not in KNOWN:
            close = difflib.get_close_matches(str(name), KNOWN, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownParameterError(f"unknown parameter {name!r}{hint} (known: {', '.join(KNOWN)})")
