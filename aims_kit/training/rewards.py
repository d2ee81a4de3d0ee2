"""GRPO rewards: is the output in format, is the label right, is the stated intent faithful?

Each reward is a separate function with TRL's reward signature
``fn(completions, **columns) -> list[float]``: ``completions`` are strings or conversational
lists of message dicts (TRL passes the latter for chat prompts), and ``columns`` are the
dataset columns, here ``label`` (gold harm label) and ``intent`` (gold human intent). Every
reward reads the model output through the one parser, :func:`aims_kit.datasets.formats.parse_output`.

The paper multiplies the components (docs/design.md §Regimes), so a wrong format or a wrong label zeroes
the whole reward and the intent terms only shape correct answers. :class:`RewardSet` offers
that product under two names, ``label_intent`` (format × label × length × faithfulness) and
the paper's ablation ``label_only`` (format × label), and keeps every component per step so a
notebook can plot how the policy changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from aims_kit.datasets import formats
from aims_kit.scoring.judges import GRADE_SCORE, CachedJudge
from aims_kit.scoring.metrics import POSITIVE

Completion = str | list[dict]
RewardFn = Callable[..., list[float]]

#: Format reward by what follows the label: nothing 1.0, under 20 characters 0.5, more 0.1.
FORMAT_CLEAN, FORMAT_SHORT_TAIL, FORMAT_LONG_TAIL = 1.0, 0.5, 0.1
SHORT_TAIL_CHARS = 20
#: Intent length reward: 0.5 outside [0.5×, 1.5×] the gold intent's length in characters.
LENGTH_BOUNDS = (0.5, 1.5)

# The shape of the condition's output: an optional ``<reasoning>…</reasoning>`` block (the
# paper's GRPO variant), then ``Intent: <one line>; Harm: <label>``. This only checks the
# *shape* of the text up to the label; label, intent and trailing text come from the parser.
# The intent may not itself hold a ``Harm:`` field (a doubled answer is not the format).
_SHAPE = re.compile(
    r"(?:<reasoning>.*?</reasoning>\s*)?"
    r"intent[ \t]*:(?P<intent>(?:(?!harm\s*:)[^\n])*?);[ \t]*harm[ \t]*:[ \t]*[a-z][a-z ]*",
    re.IGNORECASE | re.DOTALL,
)


def completion_text(completion: Completion) -> str:
    """The text of one completion (a plain string, or its assistant message(s)) without think blocks.

    Every reward reads this, so a ``<think>…</think>`` block a thinking template or the policy
    put in front of the answer never costs the format reward (see
    :data:`aims_kit.datasets.formats.CHAT_TEMPLATE_KWARGS`).
    """
    if isinstance(completion, str):
        return formats.strip_think(completion)
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        return formats.strip_think(
            "".join(str(m.get("content") or "") for m in completion if m.get("role", "assistant") == "assistant")
        )
    raise TypeError(f"a completion must be a string or a list of message dicts, got {type(completion).__name__}")


def format_reward(completions: Sequence[Completion], **_) -> list[float]:
    """1.0 / 0.5 / 0.1 for an output in format with nothing / under 20 characters / more after
    the label; 0.0 when the output is not ``[<reasoning>…</reasoning>] Intent: …; Harm: <label>``.

    Text after the label is what a policy learns to pad with (explanations, a second answer),
    so the reward tapers instead of ignoring it; whitespace does not count.
    """
    return [_format_score(completion_text(c)) for c in completions]


def _format_score(text: str) -> float:
    body = text.strip()
    parsed = formats.parse_output(body)
    if not parsed.ok or not parsed.intent:
        return 0.0
    trailing = parsed.trailing.strip()
    head = body[: len(body) - len(parsed.trailing)]
    shape = _SHAPE.fullmatch(head)
    if not shape or not shape.group("intent").strip():
        return 0.0
    if not trailing:
        return FORMAT_CLEAN
    return FORMAT_SHORT_TAIL if len(trailing) < SHORT_TAIL_CHARS else FORMAT_LONG_TAIL


def label_reward(completions: Sequence[Completion], label: Sequence[str], **_) -> list[float]:
    """1.0 when the parsed label equals the gold ``label``, else 0.0.

    An unparseable output earns 0 here (not the evaluation's parse-failure rule): a reward must
    never pay a policy for writing something the parser cannot read.
    """
    _same_length(completions, label, "label")
    return [float(formats.parse_output(completion_text(c)).label == gold) for c, gold in zip(completions, label)]


def intent_length_reward(completions: Sequence[Completion], intent: Sequence[str], **_) -> list[float]:
    """0.5 when the stated intent is over 1.5× or under 0.5× the gold intent's length, else 1.0.

    Lengths are in characters. It stops the policy from gaming the judge with long intents
    that mention everything, or with a two-word intent. A missing intent has length 0.
    """
    _same_length(completions, intent, "intent")
    low, high = LENGTH_BOUNDS
    scores = []
    for completion, gold in zip(completions, intent):
        predicted = formats.parse_output(completion_text(completion)).intent or ""
        ratio = len(predicted) / max(1, len(gold.strip()))
        scores.append(1.0 if low <= ratio <= high else 0.5)
    return scores


def make_faithfulness_reward(judge: CachedJudge) -> RewardFn:
    """The faithfulness reward for ``judge``: grade good / decent / bad → 1.0 / 0.5 / 0.1.

    All pairs of one call go to the judge as one batch; the judge caches per (gold, predicted)
    pair, so GRPO's repeated rollouts are graded once. A completion with no intent is graded
    bad without asking the judge. If the judge is unreachable, its failure policy applies
    (``raise`` stops training; ``fallback`` grades with the offline embedding judge).
    """

    def faithfulness_reward(completions: Sequence[Completion], intent: Sequence[str], **_) -> list[float]:
        _same_length(completions, intent, "intent")
        predicted = [formats.parse_output(completion_text(c)).intent for c in completions]
        asked = [i for i, p in enumerate(predicted) if p]
        scores = [GRADE_SCORE["bad"]] * len(predicted)
        for i, score in zip(asked, judge.scores([(intent[i], predicted[i]) for i in asked])):
            scores[i] = score
        return scores

    return faithfulness_reward


#: The named reward sets (docs/design.md §Regimes): the paper's product, and its label-only ablation.
REWARD_SETS: dict[str, tuple[str, ...]] = {
    "label_intent": ("format", "label", "intent_length", "faithfulness"),
    "label_only": ("format", "label"),
}


@dataclass
class RewardSet:
    """The product of named components, usable directly as a TRL reward function.

    Each call also appends one row to :attr:`log` (the step, the mean of every component and
    of the total, the fraction in correct format, the mean completion length) and forwards the
    means to TRL's ``log_metric`` when the trainer provides it, so they land in the trainer's
    log history as well.
    """

    name: str
    components: dict[str, RewardFn]
    log: list[dict] = field(default_factory=list)

    @property
    def __name__(self) -> str:  # TRL names a reward function's metrics after it
        return self.name

    def component_values(self, completions: Sequence[Completion], **columns) -> dict[str, list[float]]:
        """Every component's reward per completion, by component name."""
        return {name: fn(completions, **columns) for name, fn in self.components.items()}

    def __call__(self, completions: Sequence[Completion], **columns) -> list[float]:
        values = self.component_values(completions, **columns)
        totals = [1.0] * len(completions)
        for scores in values.values():
            totals = [t * s for t, s in zip(totals, scores)]
        self._record(completions, values, totals, columns)
        return totals

    def _record(self, completions, values: dict[str, list[float]], totals: list[float], columns: dict) -> None:
        n = max(1, len(completions))
        state = columns.get("trainer_state")
        formats_ok = values["format"] if "format" in values else format_reward(completions)
        ids = columns.get("completion_ids")
        row = {
            "step": getattr(state, "global_step", len(self.log)),
            "reward": sum(totals) / n,
            **{name: sum(scores) / n for name, scores in values.items()},
            "frac_format": sum(s > 0 for s in formats_ok) / n,
            "completion_chars": sum(len(completion_text(c)) for c in completions) / n,
        }
        if ids is not None:
            row["completion_tokens"] = sum(len(x) for x in ids) / n
        labels = columns.get("label")
        if labels is not None:
            # Each step draws new prompts: their mix moves the mean reward as much as the policy does
            # (prose.reward_reading says which moved it).
            row["harmful_share"] = sum(label == POSITIVE for label in labels) / n
        self.log.append(row)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for key, value in row.items():
                if key != "step":
                    log_metric(f"components/{key}", value)


def make_reward_set(name: str, judge: CachedJudge | None = None) -> RewardSet:
    """Build the named reward set; ``label_intent`` needs a judge (see :func:`aims_kit.scoring.judges.make_judge`)."""
    if name not in REWARD_SETS:
        raise ValueError(f"unknown reward set {name!r}; choose one of {', '.join(REWARD_SETS)}")
    wanted = REWARD_SETS[name]
    if "faithfulness" in wanted and judge is None:
        raise ValueError(f"reward set {name!r} grades intents and needs a judge")
    available: dict[str, RewardFn] = {
        "format": format_reward,
        "label": label_reward,
        "intent_length": intent_length_reward,
    }
    if judge is not None:
        available["faithfulness"] = make_faithfulness_reward(judge)
    return RewardSet(name, {component: available[component] for component in wanted})


def _same_length(completions: Sequence, column: Sequence, name: str) -> None:
    if len(completions) != len(column):
        raise ValueError(f"{len(completions)} completions but {len(column)} values in column {name!r}")


def reward_table(completions: Sequence[Completion], *, label: str, intent: str, judge: CachedJudge):
    """Every component and both reward sets for ``completions`` against one gold row, as a table.

    For teaching: shows what each answer would earn before any training happens.
    """
    import pandas as pd

    columns = {"label": [label] * len(completions), "intent": [intent] * len(completions)}
    full = make_reward_set("label_intent", judge)
    table = pd.DataFrame(full.component_values(completions, **columns))
    table.insert(0, "completion", [completion_text(c) for c in completions])
    for name in REWARD_SETS:
        table[f"reward · {name}"] = table[list(REWARD_SETS[name])].prod(axis=1)
    return table
