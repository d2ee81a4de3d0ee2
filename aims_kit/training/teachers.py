"""Reasoning teachers for distillation: one interface, three backends (docs/design.md §Regimes).

A teacher sees a prompt, its gold label and (in the intent conditions) the gold intent, and
writes a justification *without saying it was given the answer*. Three conditions:

- ``no_intent`` — reasoning, then the label;
- ``human_intent`` — reasoning, the human (gold) intent, then the label;
- ``synthetic_intent`` — reasoning, an intent the teacher writes itself, then the label.

Backends, all returning :class:`Trace` records in the schema of the shipped
``reference_traces.jsonl`` (``id, condition, teacher, reasoning, intent, label, completion,
prompt_sha256``):

- :class:`TracesFileTeacher` — reads a traces file (the shipped one serves offline). A file may
  lack a condition; it then raises :class:`TraceConditionUnavailable` instead of inventing traces.
- :class:`ChatTeacher` — an OpenAI-compatible chat endpoint (key from an environment variable).
- :class:`HubTeacher` — a local folder or hub causal LM through transformers.

Live teachers' traces go through :func:`aims_kit.training.distill.screen_traces` (leakage and
label checks) like the file's do, and :func:`save_traces` writes them in the same schema.

A trace belongs to one prompt, not just one ID: ``prompt_sha256`` is
:func:`aims_kit.datasets.aims.prompt_sha256` of the prompt it was written for (the loaded row's
``Prompt``, line endings unified and surrounding whitespace stripped). Every teacher writes it,
and :class:`TracesFileTeacher` serves a trace only to the row whose ID *and* prompt hash match:
hub rows whose IDs coincide with the teaching sample's never get the sample's reasoning.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Protocol

import pandas as pd

from aims_kit.core.results import atomic_write_jsonl
from aims_kit.datasets import formats
from aims_kit.datasets.aims import TRACES_PATH, AimsDataError, iter_jsonl, prompt_sha256
from aims_kit.inference.endpoints import EndpointError, chat_completion

TraceCondition = Literal["no_intent", "synthetic_intent", "human_intent"]
TRACE_CONDITIONS: tuple[TraceCondition, ...] = ("no_intent", "synthetic_intent", "human_intent")
TRACE_FIELDS = ("id", "condition", "teacher", "reasoning", "intent", "label", "completion", "prompt_sha256")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class TraceConditionUnavailable(LookupError):
    """This teacher cannot produce traces for the condition (e.g. a traces file lacks it)."""


class TeacherError(RuntimeError):
    """A live teacher could not be reached or answered something unusable."""


def output_condition(trace_condition: TraceCondition) -> formats.Condition:
    """The student's output format for a distillation condition."""
    _check(trace_condition)
    return "reasoning_label" if trace_condition == "no_intent" else "reasoning_intent_label"


@dataclass(frozen=True)
class Trace:
    """One teacher trace, in the shipped file's schema.

    ``prompt_sha256`` (:func:`aims_kit.datasets.aims.prompt_sha256`) ties it to the prompt it
    was written for; every teacher sets it, and :func:`save_traces` refuses a trace without it.
    """

    id: str
    condition: TraceCondition
    teacher: str
    reasoning: str
    intent: str | None
    label: formats.Label
    completion: str
    prompt_sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Teacher(Protocol):
    name: str

    def traces(self, frame: pd.DataFrame, trace_condition: TraceCondition) -> list[Trace]:
        """Traces for the rows of ``frame`` it can cover (rows it cannot are simply absent)."""
        ...


def teacher_messages(prompt: str, label: formats.Label, trace_condition: TraceCondition, intent: str | None = None) -> list[dict]:
    """The teacher's instruction: justify the given label without revealing it was given."""
    _check(trace_condition)
    if trace_condition == "human_intent" and not intent:
        raise ValueError("the human_intent condition needs the gold intent")
    lines = [
        "You write the reasoning a careful safety classifier would give for a user prompt.",
        f"The correct classification of the prompt is: {label}.",
    ]
    if trace_condition == "human_intent":
        lines.append("The user's intent is: " + " ".join(intent.split()))
    lines.append(
        "Write 2 to 5 sentences of reasoning that lead to that classification from the prompt itself. "
        "Never mention that you were given the classification or the intent, and never refer to a label, "
        "an annotation or instructions."
    )
    if trace_condition == "synthetic_intent":
        lines.append("Then state in one sentence what the user intends.")
        answer = "Reasoning: <your reasoning>\nIntent: <one sentence>\nPrompt harm: <harmful|safe>"
    else:
        answer = "Reasoning: <your reasoning>\nPrompt harm: <harmful|safe>"
    lines.append(f"Answer exactly as:\n{answer}")
    return [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": prompt}]


def trace_from_answer(row, answer: str, trace_condition: TraceCondition, teacher: str) -> Trace:
    """Turn a teacher's raw answer into a :class:`Trace` (parsed by the one parser).

    The completion is rebuilt in the student's format from the parsed parts; its label is the
    teacher's own (so :func:`~aims_kit.training.distill.screen_traces` can drop disagreements),
    and the intent is the gold one in ``human_intent`` and the teacher's in ``synthetic_intent``.
    A missing reasoning or intent leaves the completion empty: the screen drops it.
    """
    parsed = formats.parse_output(answer)
    intent = row.Intent if trace_condition == "human_intent" else parsed.intent if trace_condition == "synthetic_intent" else None
    label = parsed.label
    completion = ""
    if label and parsed.reasoning and (intent or trace_condition == "no_intent"):
        completion = formats.format_target(output_condition(trace_condition), label, intent=intent, reasoning=parsed.reasoning)
    return Trace(
        id=str(row.ID), condition=trace_condition, teacher=teacher, reasoning=parsed.reasoning or answer.strip(),
        intent=intent, label=label or "", completion=completion, prompt_sha256=prompt_sha256(row.Prompt),
    )


@dataclass
class TracesFileTeacher:
    """Traces read from a JSONL file in the shipped schema (default: the kit's reference traces).

    A trace is served only to the row with its ID *and* its prompt (``prompt_sha256``). When no
    row of the frame matches both — a file written for other prompts, such as the shipped one
    against the hub data, whose IDs can coincide with the teaching sample's — the condition is
    :class:`TraceConditionUnavailable` (reported *not tested*, never trained on another
    prompt's reasoning). When some rows match and others share an ID but not the prompt, the
    file is inconsistent with the data: an :class:`AimsDataError` naming the file, the first
    such row ID and the field ``prompt_sha256``.
    """

    path: Path = TRACES_PATH
    name: str = ""
    _by_condition: dict[str, dict[str, Trace]] = field(default_factory=dict, init=False, repr=False)
    _lines: dict[tuple[str, str], int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = self.name or f"file:{self.path.name}"
        self._by_condition, self._lines = _read_traces(self.path)

    def trace_conditions(self) -> list[str]:
        return sorted(self._by_condition)

    def traces(self, frame: pd.DataFrame, trace_condition: TraceCondition) -> list[Trace]:
        _check(trace_condition)
        if trace_condition not in self._by_condition:
            raise TraceConditionUnavailable(
                f"{self.path} has no {trace_condition!r} traces (it has: {', '.join(self.trace_conditions()) or 'none'}); "
                "generate them with a chat or hub teacher"
            )
        available = self._by_condition[trace_condition]
        if frame.empty:
            return []
        served: list[Trace] = []
        other_prompt: list[Trace] = []
        for row_id, prompt in zip(frame["ID"].astype(str), frame["Prompt"]):
            trace = available.get(row_id)
            if trace is not None:
                (served if trace.prompt_sha256 == prompt_sha256(prompt) else other_prompt).append(trace)
        if not served:
            written_for = "the kit's teaching sample" if self.path.resolve() == TRACES_PATH.resolve() else "other prompts"
            shared = f"; {len(other_prompt)} share an id with a trace written for a different prompt" if other_prompt else ""
            raise TraceConditionUnavailable(
                f"{self.path.name} was written for {written_for}, not these prompts "
                f"(0 of {len(frame)} rows match by id and prompt{shared}); "
                "generate traces with a chat or hub teacher (teacher=chat:MODEL@URL or hub:MODEL)"
            )
        if other_prompt:
            first = other_prompt[0]
            ids = ", ".join(repr(t.id) for t in other_prompt[:5]) + (" …" if len(other_prompt) > 5 else "")
            raise AimsDataError(
                str(self.path),
                f"the {trace_condition} trace for row id {first.id!r} was written for another prompt: its prompt_sha256 "
                f"is not the hash of that row's prompt ({len(other_prompt)} of {len(served) + len(other_prompt)} rows "
                f"matched by id differ: {ids}). Regenerate the traces for this data, or correct those rows",
                row=self._lines.get((trace_condition, first.id)),
                field="prompt_sha256",
            )
        return served


@dataclass
class SelfIntentTeacher:
    """``synthetic_intent`` without a live teacher: another teacher's reasoning, the kit's own model's intent.

    Offline the shipped traces hold ``no_intent`` and ``human_intent`` (the same hand-written
    reasoning; the latter adds the human intent line). For ``synthetic_intent`` this teacher
    takes the ``human_intent`` trace's reasoning and replaces the human intent with the one
    ``write_intents`` gives for the prompt — the kit's SFT intent → label model, greedy
    (:func:`sft_intent_writer`). So the three students differ *only* in the intent line:
    none, the model's own, the human's. (The paper's teacher wrote its own reasoning per
    condition.) A prompt the model writes no intent for gets an empty completion, which the
    screen drops and counts. Every other condition comes from ``base`` unchanged.
    """

    base: Teacher
    write_intents: Callable[[list[str]], list[str | None]]
    source: str = "sft"
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.base.name} + intents by {self.source}"

    def traces(self, frame: pd.DataFrame, trace_condition: TraceCondition) -> list[Trace]:
        _check(trace_condition)
        if trace_condition != "synthetic_intent":
            return self.base.traces(frame, trace_condition)
        donors = self.base.traces(frame, "human_intent")
        prompts = frame.set_index(frame["ID"].astype(str))["Prompt"]
        intents = self.write_intents([prompts[t.id] for t in donors])
        return [
            Trace(
                id=t.id, condition="synthetic_intent", teacher=self.name, reasoning=t.reasoning, intent=intent, label=t.label,
                completion=formats.format_target("reasoning_intent_label", t.label, intent=intent, reasoning=t.reasoning) if intent else "",
                prompt_sha256=t.prompt_sha256,
            )
            for t, intent in zip(donors, intents)
        ]


def sft_intent_writer(sft_run: Path, *, batch_size: int = 32, max_new_tokens: int = 48) -> Callable[[list[str]], list[str | None]]:
    """Intents written by a trained intent → label run (greedy, the evaluation path), for :class:`SelfIntentTeacher`."""

    loaded: list = []  # the model, loaded on first use and kept: collect_traces asks once per split

    def write(prompts: list[str]) -> list[str | None]:
        from aims_kit.inference.generation import (
            TransformersEngine,
            classifier_inputs,
            generate_answers,
        )
        from aims_kit.models.loading import load_for_inference

        if not loaded:
            loaded.extend(load_for_inference(sft_run))
        model, tokenizer = loaded
        _, conversations, _ = classifier_inputs(model, tokenizer, prompts, "intent_label", max_new_tokens)
        gen = generate_answers(TransformersEngine(model, tokenizer, batch_size), conversations, condition="intent_label",
                               max_new_tokens=max_new_tokens, desc="writing intents")
        return [formats.parse_output(text).intent for text in gen.texts]

    return write


def read_traces(path: Path) -> dict[str, dict[str, Trace]]:
    """Traces by condition and row id; a malformed line is an :class:`AimsDataError` naming it.

    Every line needs every field of :data:`TRACE_FIELDS`, ``prompt_sha256`` included: a file
    written before traces carried it (or by another tool) is an error naming the file, the line
    and the field, never traces applied to whatever row shares their ID.
    """
    return _read_traces(path)[0]


def _read_traces(path: Path) -> tuple[dict[str, dict[str, Trace]], dict[tuple[str, str], int]]:
    """:func:`read_traces`, and the line each (condition, id) was read from (for error messages)."""
    by_condition: dict[str, dict[str, Trace]] = {}
    lines: dict[tuple[str, str], int] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, row in iter_jsonl(handle, str(path)):
            missing = [f for f in TRACE_FIELDS if f not in row]
            if missing == ["prompt_sha256"]:
                raise AimsDataError(
                    str(path),
                    "missing trace field: each trace needs the sha256 of the prompt it was written for "
                    "(aims_kit.datasets.aims.prompt_sha256 of the loaded row's Prompt), so that it is never applied to "
                    "another dataset's row with the same id; a file written before the field existed must be regenerated "
                    "or given it",
                    row=line_no, field="prompt_sha256",
                )
            if missing:
                raise AimsDataError(str(path), "missing trace field", row=line_no, field=missing[0])
            if row["condition"] not in TRACE_CONDITIONS:
                raise AimsDataError(str(path), f"unknown condition {row['condition']!r}", row=line_no, field="condition")
            if not isinstance(row["completion"], str) or not row["completion"].strip():
                raise AimsDataError(str(path), "empty completion", row=line_no, field="completion")
            if not isinstance(row["prompt_sha256"], str) or not _SHA256_HEX.fullmatch(row["prompt_sha256"]):
                raise AimsDataError(str(path), f"not a lowercase sha256 hex digest: {row['prompt_sha256']!r}",
                                    row=line_no, field="prompt_sha256")
            trace = Trace(**{f: row[f] for f in TRACE_FIELDS} | {"id": str(row["id"])})
            by_condition.setdefault(trace.condition, {})[trace.id] = trace
            lines[(trace.condition, trace.id)] = line_no
    return by_condition, lines


@dataclass
class ChatTeacher:
    """An OpenAI-compatible chat endpoint as teacher (``base_url`` ending in ``/v1``).

    The key is read from ``$<api_key_env>`` on each call and never kept on the object.
    """

    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_tokens: int = 300
    temperature: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"chat:{self.model}"

    def traces(self, frame: pd.DataFrame, trace_condition: TraceCondition) -> list[Trace]:
        out = []
        for row in frame.itertuples(index=False):
            messages = teacher_messages(row.Prompt, row.label, trace_condition, row.Intent)
            try:
                answer = chat_completion(
                    self.base_url, self.model, messages, api_key_env=self.api_key_env,
                    timeout=self.timeout, max_tokens=self.max_tokens, temperature=self.temperature,
                )
            except EndpointError as err:
                raise TeacherError(f"{self.name}, row {row.ID}: {err}") from None
            out.append(trace_from_answer(row, answer, trace_condition, self.name))
        return out


@dataclass
class HubTeacher:
    """A local folder or hub causal LM as teacher, greedy, batched through :func:`aims_kit.inference.generation.generate`."""

    model_id: str
    batch_size: int = 8
    max_new_tokens: int = 300
    name: str = ""
    _loaded: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"hub:{self.model_id}"

    def traces(self, frame: pd.DataFrame, trace_condition: TraceCondition) -> list[Trace]:
        from aims_kit.inference.generation import generate
        from aims_kit.models.loading import load_model

        if self._loaded is None:
            self._loaded = load_model(self.model_id)
        model, tokenizer = self._loaded
        conversations = [teacher_messages(r.Prompt, r.label, trace_condition, r.Intent) for r in frame.itertuples(index=False)]
        out = generate(model, tokenizer, conversations, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, desc=f"teacher {trace_condition}")
        return [trace_from_answer(row, text, trace_condition, self.name) for row, text in zip(frame.itertuples(index=False), out.texts)]


def make_teacher(spec: str = "file", *, timeout: float = 60.0) -> Teacher:
    """Build a teacher from a notebook parameter.

    - ``"file"`` — the shipped reference traces; ``"file:<path>"`` — another traces file;
    - ``"chat:<model>@<base_url>"`` — OpenAI-compatible endpoint (key from ``$OPENAI_API_KEY``);
    - ``"hub:<model id or folder>"`` — a causal LM through transformers.
    """
    kind, _, rest = spec.partition(":")
    if kind == "file":
        return TracesFileTeacher(Path(rest)) if rest else TracesFileTeacher()
    if kind == "chat" and rest:
        model, _, url = rest.partition("@")
        return ChatTeacher(model=model, base_url=url or ChatTeacher.base_url, timeout=timeout)
    if kind == "hub" and rest:
        return HubTeacher(rest)
    raise ValueError(f"unknown teacher {spec!r}; use 'file', 'file:<path>', 'chat:<model>@<base_url>' or 'hub:<model>'")


def save_traces(path: Path, traces: list[Trace]) -> Path:
    """Write traces as JSONL in the shipped file's schema (readable by :class:`TracesFileTeacher`).

    Every trace must carry its ``prompt_sha256`` (every teacher sets it); one without is a
    ``ValueError`` naming its row id, as the file would be unreadable.
    """
    unbound = [t.id for t in traces if not t.prompt_sha256]
    if unbound:
        raise ValueError(f"trace for row id {unbound[0]!r} has no prompt_sha256 ({len(unbound)} such); "
                         "set it with aims_kit.datasets.aims.prompt_sha256(prompt) before saving")
    atomic_write_jsonl(Path(path), [t.to_dict() for t in traces])
    return Path(path)


def _check(trace_condition: str) -> None:
    if trace_condition not in TRACE_CONDITIONS:
        raise ValueError(f"unknown distillation condition {trace_condition!r}; choose one of {', '.join(TRACE_CONDITIONS)}")
