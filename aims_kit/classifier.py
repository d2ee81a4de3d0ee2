"""Use a trained classifier outside the notebooks: ``Classifier.from_run(run_dir).classify(prompts)``.

A run folder is loaded the way evaluation loads it (:func:`aims_kit.benchmark_runs.load_run`:
base + verified LoRA adapter, a zero-shot model, the encoder baseline or a served endpoint) and
prompts go through the same generation path and the same parser as every evaluation, so a
verdict from this API is the verdict the run's records were computed from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from . import evaluation, formats
from .benchmark_runs import LoadedRun, load_run
from .profiles import PROFILES


@dataclass(frozen=True)
class Classification:
    """One prompt's verdict.

    ``intent`` is set for formats that write one; ``p_harmful`` for label-only generative runs
    (first-token logit score, as evaluation records it); ``parsed`` False means the output was
    unreadable and ``label`` is the single parse-failure rule. ``ms`` is the call's wall clock
    divided by its prompts (throughput; one prompt per call gives single-request latency).
    """

    prompt: str
    label: formats.Label
    intent: str | None
    p_harmful: float | None
    parsed: bool
    output: str
    tokens: int
    ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def answer_budget(config: dict) -> int:
    """The answer budget the run was evaluated with: its profile's (defaults for a custom profile)."""
    return evaluation.answer_budget(PROFILES.get(config.get("profile", ""), {}), config.get("condition", "label_only"))


class Classifier:
    """A loaded run that labels prompts in batches. Build it with :meth:`from_run`."""

    def __init__(self, run: LoadedRun, *, batch_size: int = 32, max_new_tokens: int | None = None):
        self.run = run
        self.condition: formats.Condition = run.config.get("condition", "label_only")
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or answer_budget(run.config)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, batch_size: int = 32, max_new_tokens: int | None = None) -> "Classifier":
        """Load a run folder (adapter, encoder, zero-shot or served run) once, for many calls."""
        return cls(load_run(run_dir), batch_size=batch_size, max_new_tokens=max_new_tokens)

    @property
    def name(self) -> str:
        return self.run.run_dir.name

    def classify(self, prompts: Sequence[str], *, desc: str = "classifying") -> list[Classification]:
        """One :class:`Classification` per prompt, in input order (``desc``: progress bar title, "" for none)."""
        prompts = list(prompts)
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"prompt {i}: expected non-empty text, got {prompt!r}")
        if not prompts:
            return []
        if self.run.is_encoder:
            return self._classify_encoder(prompts)
        return self._classify_generative(prompts, desc)

    def _classify_generative(self, prompts: list[str], desc: str) -> list[Classification]:
        model, tokenizer, engine = self.run.model, self.run.tokenizer, self.run.engine
        sent, conversations, _ = evaluation.classifier_inputs(model, tokenizer, prompts, self.condition, self.max_new_tokens)
        gen = evaluation.generate_answers(
            model, tokenizer, conversations, condition=self.condition, max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size, engine=engine, desc=desc,
        )
        p_harmful: list[float | None] = [None] * len(prompts)
        if self.condition == "label_only" and model is not None:
            try:
                p_harmful = list(evaluation.score_labels(model, tokenizer, sent, batch_size=self.batch_size)[0])
            except ValueError:  # the tokenizer cannot tell the labels apart by their first token
                pass
        ms = 1000 * gen.seconds / len(prompts)
        out = []
        for prompt, text, tokens, p in zip(prompts, gen.texts, gen.new_tokens, p_harmful):
            parsed = formats.parse_output(text)
            out.append(Classification(prompt, parsed.label_or_rule(), parsed.intent, p, parsed.ok, text, tokens, ms))
        return out

    def _classify_encoder(self, prompts: list[str]) -> list[Classification]:
        from .encoder import classify

        start = time.perf_counter()
        labels = classify(self.run.model, self.run.tokenizer, prompts, batch_size=self.batch_size)
        ms = 1000 * (time.perf_counter() - start) / len(prompts)
        return [Classification(prompt, label, None, None, True, label, 0, ms) for prompt, label in zip(prompts, labels)]
