"""DPO preference pairs mined from the SFT model's own intent errors (docs/design.md §Regimes).

The paper's recipe, step by step, for every prompt:

1. sample ``k`` completions from the SFT intent → label model at temperature ``T``;
2. keep each sample's intent (parsed by the one parser) and drop its label;
3. re-classify that intent alone, greedily, with the same model
   (:func:`aims_kit.datasets.formats.intent_reclassify_messages`);
4. **chosen** = the gold ``Intent: …; Harm: …``; **rejected** = the longest sample whose
   re-classified label is wrong (the ``hard`` variant). The rejected completion is that
   sample's intent with the label the model gives it, so the pair contrasts an intent that
   leads to the right label with one that leads to the wrong label.

The ``judge`` variant adds a second source of rejects: samples whose label is right but whose
intent an intent-match judge (:func:`aims_kit.scoring.judges.make_judge`) grades ``bad`` against the gold
intent. A wrong-label sample is still preferred when a prompt has both (it is the stronger
error); only prompts without one fall back to a judge reject.

Generation is injected (:class:`Generator`), so the mining logic runs on a handcrafted stub
in the tests exactly as it runs on a real model (:func:`model_generator`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np
import pandas as pd

from aims_kit.core import results
from aims_kit.datasets import formats

Variant = Literal["hard", "judge"]
VARIANTS: tuple[Variant, ...] = ("hard", "judge")
Balance = Literal["undersample", "none"]

#: Why a sample became the rejected answer (a pair's ``source``): its intent, classified alone by
#: the model, gets the wrong label; or (``judge`` variant, a prompt with no such sample) its label
#: is right but the judge grades its intent a bad match, so the rejected row carries the gold label.
REJECT_SOURCES: tuple[str, ...] = ("wrong_label", "judge_bad")

#: Columns of a pairs frame (and of ``pairs.jsonl`` in a DPO run folder).
PAIR_COLUMNS = (
    "id", "split", "prompt", "gold_label", "gold_intent", "chosen", "rejected",
    "rejected_intent", "rejected_label", "source", "candidates",
)


class Generator(Protocol):
    """Generates for chat conversations; row ``i``'s ``k`` outputs sit at ``i*k … i*k+k-1``."""

    def __call__(
        self,
        conversations: Sequence[list[dict]],
        *,
        k: int,
        do_sample: bool,
        temperature: float,
        max_new_tokens: int,
    ) -> list[str]: ...


def model_generator(model, tokenizer, *, batch_size: int = 32) -> Generator:
    """A :class:`Generator` backed by a transformers model through :func:`aims_kit.inference.generation.generate`."""
    from aims_kit.inference.generation import generate

    def _generate(conversations, *, k, do_sample, temperature, max_new_tokens):
        was_training = model.training
        model.eval()
        try:
            out = generate(
                model, tokenizer, conversations,
                max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample,
                temperature=temperature, num_return_sequences=k,
                desc="sampling" if do_sample else "re-classifying",
            )
        finally:
            if was_training:
                model.train()
        return out.texts

    return _generate


@dataclass
class MiningSettings:
    """How pairs are mined. Defaults are the paper's (k=10 samples at T=0.8, hard variant)."""

    k: int = 10
    temperature: float = 0.8
    #: Token budget of each sampled completion.
    max_new_tokens: int = 64
    #: Token budget of the greedy re-classification. A model that answers with the bare label
    #: stops after a token or two; an SFT model that echoes its whole ``Intent: …; Harm: …``
    #: format needs room to reach the label, so this defaults to the sampling budget.
    reclassify_max_new_tokens: int | None = None
    variant: Variant = "hard"
    #: ``undersample``: drop pairs of the larger class (seeded) until both classes have as many
    #: pairs as the smaller one, so DPO does not learn a label prior. When one class yields no
    #: pair at all, undersampling would leave nothing to train on: then every pair is kept and
    #: the report says the set is unbalanced. ``none`` keeps every pair.
    balance: Balance = "undersample"
    #: With ``undersample``: the share of the kept pairs the smaller class must make up (0.5:
    #: equal counts). An SFT model that under-flags yields a pair from most harmful prompts but
    #: from few safe ones; 0.3 keeps up to 7 harmful pairs per 3 safe ones, so more of the mined
    #: pairs train while the label prior stays bounded.
    min_class_share: float = 0.5
    seed: int = 22

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown DPO variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.balance not in ("undersample", "none"):
            raise ValueError(f"unknown balance {self.balance!r}; choose undersample or none")
        if not 0 < self.min_class_share <= 0.5:
            raise ValueError(f"min_class_share must be in (0, 0.5], got {self.min_class_share}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MiningReport:
    """What mining found: counts a student reads before trusting the pairs."""

    prompts: int = 0
    samples: int = 0
    #: Samples with no ``Intent:`` field: nothing to re-classify, so never a reject.
    samples_without_intent: int = 0
    #: Samples whose intent the model re-classifies with the wrong label.
    wrong_label_samples: int = 0
    #: Samples whose re-classification the parser could not read: neither right nor wrong, so
    #: never a reject (and never a judge reject either).
    unreadable_reclassifications: int = 0
    #: Right-label samples the judge graded ``bad`` (judge variant only).
    judge_bad_samples: int = 0
    #: Prompts where no sample qualified as rejected.
    prompts_without_pair: int = 0
    pairs_per_class_mined: dict[str, int] = field(default_factory=dict)
    pairs_per_class: dict[str, int] = field(default_factory=dict)
    balanced: bool = False
    judge: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def mine_pairs(
    frame: pd.DataFrame,
    generator: Generator,
    settings: MiningSettings | None = None,
    *,
    judge=None,
) -> tuple[pd.DataFrame, MiningReport]:
    """Mine one (chosen, rejected) pair per prompt of ``frame`` where the model errs.

    ``frame`` holds AIMS rows (``Prompt``, ``Intent``, ``label``, ``ID``, ``split``); ``judge``
    (a :class:`aims_kit.scoring.judges.CachedJudge`) is required for the ``judge`` variant. Returns the
    pairs (columns :data:`PAIR_COLUMNS`) and a :class:`MiningReport`.
    """
    settings = settings or MiningSettings()
    if settings.variant == "judge" and judge is None:
        raise ValueError("the judge variant needs a judge: pass judge=aims_kit.scoring.judges.make_judge(...)")
    start = time.perf_counter()
    k = settings.k
    report = MiningReport(prompts=len(frame), samples=len(frame) * k, judge=getattr(judge, "name", None))
    conversations = [formats.prompt_messages(p, "intent_label") for p in frame["Prompt"]]
    texts = generator(
        conversations, k=k, do_sample=True, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens
    )
    if len(texts) != len(frame) * k:
        raise ValueError(f"the generator returned {len(texts)} texts for {len(frame)} prompts × k={k}")
    intents = [formats.parse_output(t).intent for t in texts]
    report.samples_without_intent = sum(i is None for i in intents)
    labels = reclassify(generator, intents, settings)
    report.unreadable_reclassifications = sum(i is not None and label is None for i, label in zip(intents, labels))

    gold_labels = frame["label"].tolist()
    gold_intents = frame["Intent"].tolist()
    wrong = [labels[j] is not None and labels[j] != gold_labels[j // k] for j in range(len(texts))]
    report.wrong_label_samples = sum(wrong)
    bad = [False] * len(texts)
    if settings.variant == "judge":
        right = [j for j in range(len(texts)) if labels[j] is not None and not wrong[j]]
        grades = judge.grade([(gold_intents[j // k], intents[j]) for j in right])
        for j, grade in zip(right, grades):
            bad[j] = grade == "bad"
        report.judge_bad_samples = sum(bad)

    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        span = range(i * k, i * k + k)
        candidates = [j for j in span if wrong[j]]
        source = REJECT_SOURCES[0]
        if not candidates:
            candidates, source = [j for j in span if bad[j]], REJECT_SOURCES[1]
        if not candidates:
            report.prompts_without_pair += 1
            continue
        chosen_j = max(candidates, key=lambda j: (len(intents[j]), -j))  # longest; first on ties
        rows.append({
            "id": str(row.ID),
            "split": getattr(row, "split", ""),
            "prompt": row.Prompt,
            "gold_label": row.label,
            "gold_intent": row.Intent,
            "chosen": formats.format_target("intent_label", row.label, intent=row.Intent),
            "rejected": formats.format_target("intent_label", labels[chosen_j], intent=intents[chosen_j]),
            "rejected_intent": intents[chosen_j],
            "rejected_label": labels[chosen_j],
            "source": source,
            "candidates": len(candidates),
        })
    pairs = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    report.pairs_per_class_mined = _class_counts(pairs)
    pairs, report.balanced = balance_pairs(pairs, settings.balance, settings.seed, settings.min_class_share)
    report.pairs_per_class = _class_counts(pairs)
    report.seconds = time.perf_counter() - start
    return pairs, report


def reclassify(generator: Generator, intents: Sequence[str | None], settings: MiningSettings) -> list[str | None]:
    """The label the model gives each intent on its own (greedy); ``None`` where there is no intent
    or the answer is unreadable.

    The prompt ends in ``Harm: ``, so the answer is read as ``Harm: <answer>`` by the one
    parser. An unreadable answer is *not* given the evaluation's parse-failure rule: that would
    make it "safe", and every unreadable answer to a harmful prompt a mined "error".
    :func:`mine_pairs` counts them in :attr:`MiningReport.unreadable_reclassifications`.
    """
    todo = [j for j, intent in enumerate(intents) if intent]
    labels: list[str | None] = [None] * len(intents)
    if not todo:
        return labels
    budget = settings.reclassify_max_new_tokens or settings.max_new_tokens
    answers = generator(
        [formats.intent_reclassify_messages(intents[j]) for j in todo],
        k=1, do_sample=False, temperature=1.0, max_new_tokens=budget,
    )
    for j, answer in zip(todo, answers):
        labels[j] = formats.parse_output(f"Harm: {answer}").label
    return labels


def balance_pairs(pairs: pd.DataFrame, balance: Balance, seed: int, min_class_share: float = 0.5) -> tuple[pd.DataFrame, bool]:
    """Undersample the larger class until the smaller one makes up ``min_class_share`` of the pairs.

    Returns the pairs and whether the classes are within that share (``True`` for equal counts
    at 0.5). A class with no pair at all leaves nothing to balance against: every pair is kept.
    """
    counts = _class_counts(pairs)
    smallest = min(counts.values())
    cap = int(smallest * (1 - min_class_share) / min_class_share + 1e-9)
    if balance == "none" or smallest == 0:
        return pairs, smallest > 0 and max(counts.values()) <= cap
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in formats.LABELS:
        index = pairs.index[pairs["gold_label"] == label].to_numpy()
        keep.extend(rng.choice(index, size=min(cap, len(index)), replace=False).tolist())
    return pairs.loc[sorted(keep)].reset_index(drop=True), True


def dpo_records(pairs: pd.DataFrame) -> list[dict]:
    """TRL conversational preference records: the classification prompt, chosen and rejected turns.

    With :data:`aims_kit.datasets.formats.CHAT_TEMPLATE_KWARGS`, so a thinking template's empty think
    block sits in the prompt and chosen and rejected differ only in the answer.
    """
    return [
        {
            "prompt": formats.prompt_messages(prompt, "intent_label"),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "chat_template_kwargs": formats.CHAT_TEMPLATE_KWARGS,
        }
        for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])
    ]


def pairs_table(pairs: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """Chosen vs rejected intents side by side: what an "intent error" looks like."""
    shown = pairs.head(limit) if limit else pairs
    return shown[["id", "gold_label", "gold_intent", "rejected_intent", "rejected_label", "source"]].rename(
        columns={"gold_intent": "chosen intent (gold)", "rejected_intent": "rejected intent (sampled)"}
    )


def _class_counts(pairs: pd.DataFrame) -> dict[str, int]:
    return {label: int((pairs["gold_label"] == label).sum()) for label in formats.LABELS}


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


def read_dpo_pairs(path: str | Path, variant: str = "hard") -> MinedPairs:
    """Pairs mined earlier: a DPO run's ``pairs.jsonl`` (or its run folder), split by its ``split`` column.

    Why: mining samples the SFT model k times per prompt, the slow half of DPO. Mined once, the
    same pairs can train DPO again with another β or learning rate, or on several processes.
    """
    from aims_kit.training.dpo_pairs import PAIR_COLUMNS

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
