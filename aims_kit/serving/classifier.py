"""Use a trained classifier outside the notebooks: ``Classifier.from_run(run_dir).classify(prompts)``.

A run folder is loaded the way evaluation loads it (:func:`aims_kit.evaluation.runs.load_run`:
base + verified LoRA adapter, a zero-shot model, the encoder baseline or a served endpoint) and
prompts go through the same generation path and the same parser as every evaluation, so a
verdict from this API is the verdict the run's records were computed from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from aims_kit.datasets import formats
from aims_kit.datasets.prompt_formats import PromptFormat
from aims_kit.evaluation.runs import LoadedRun, load_run
from aims_kit.inference import generation


@dataclass(frozen=True)
class Classification:
    """One prompt's verdict.

    ``intent`` is set for formats that write one; ``p_harmful`` for label-only generative runs
    (first-token logit score, as evaluation records it); ``parsed`` False means the output was
    unreadable and ``label`` is the single parse-failure rule. ``ms`` is the call's wall clock
    divided by its prompts (throughput; one prompt per call gives single-request latency).
    ``truncated`` says the prompt was longer than the model can read and only its start was
    classified.
    """

    prompt: str
    label: formats.Label
    intent: str | None
    p_harmful: float | None
    parsed: bool
    output: str
    tokens: int
    ms: float
    truncated: bool

    def to_dict(self) -> dict:
        return asdict(self)


class Classifier:
    """A loaded run that labels prompts in batches. Build it with :meth:`from_run`."""

    def __init__(self, run: LoadedRun, *, batch_size: int = 32, max_new_tokens: int | None = None):
        self.run = run
        self.condition: formats.Condition = run.config.get("condition", "label_only")
        #: How prompts are rendered: the run's recorded format (the kit's chat + instruction for a trained run).
        self.prompt_format = PromptFormat.from_config(run.config)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or run.max_new_tokens

    @classmethod
    def from_run(cls, run_dir: str | Path, *, batch_size: int = 32, max_new_tokens: int | None = None) -> "Classifier":
        """Load a run folder (adapter, encoder, zero-shot or served run) once, for many calls."""
        return cls(load_run(run_dir), batch_size=batch_size, max_new_tokens=max_new_tokens)

    @classmethod
    def from_endpoint(cls, base_url: str, model: str, condition: str | None = None, *, batch_size: int = 32,
                      max_new_tokens: int | None = None, prompt_format: PromptFormat | None = None) -> "Classifier":
        """A model served at ``base_url`` (OpenAI-compatible) under the name ``model``, with no run folder.

        ``condition`` defaults to the one in ``aims_kit.json`` when ``model`` is an exported folder
        (as ``python -m aims_kit serve`` serves it), else to ``label_only``. ``prompt_format``
        (default: the kit's) says how prompts are sent: a plain-text format goes to the server's
        ``/completions`` route.
        """
        from aims_kit.inference.engines import (
            EndpointEngine,
            served_condition,
            served_tokenizer,
        )

        condition = condition or served_condition(model) or "label_only"
        if condition not in formats.CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(formats.CONDITIONS)}")
        prompt_format = prompt_format or PromptFormat()
        prompt_format.check(condition)
        config = {"regime": "served", "condition": condition, "model": model, "endpoint": base_url, **prompt_format.to_config()}
        run = LoadedRun(Path(model), config, None, served_tokenizer(model), engine=EndpointEngine(base_url, model))
        return cls(run, batch_size=batch_size, max_new_tokens=max_new_tokens)

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
        model, tokenizer = self.run.model, self.run.tokenizer
        engine = self.run.engine or generation.TransformersEngine(model, tokenizer, self.batch_size)
        sent, conversations, _ = generation.classifier_inputs(model, tokenizer, prompts, self.condition, self.max_new_tokens,
                                                              self.prompt_format)
        gen = generation.generate_answers(engine, conversations, condition=self.condition, max_new_tokens=self.max_new_tokens, desc=desc)
        p_harmful: list[float | None] = gen.p_harmful if gen.p_harmful is not None else [None] * len(prompts)
        ms = 1000 * gen.seconds / len(prompts)
        out = []
        for prompt, read, text, tokens, p in zip(prompts, sent, gen.texts, gen.new_tokens, p_harmful):
            parsed = formats.parse_output(text)
            out.append(Classification(prompt, parsed.label_or_rule(), parsed.intent, p, parsed.ok, text, tokens, ms, read != prompt))
        return out

    def _classify_encoder(self, prompts: list[str]) -> list[Classification]:
        from aims_kit.training.encoder import MAX_LENGTH, classify_scored

        start = time.perf_counter()
        labels, probs = classify_scored(self.run.model, self.run.tokenizer, prompts, batch_size=self.batch_size)
        ms = 1000 * (time.perf_counter() - start) / len(prompts)
        lengths = [len(ids) for ids in self.run.tokenizer(prompts)["input_ids"]]
        return [Classification(prompt, label, None, p, True, label, 0, ms, n > MAX_LENGTH)
                for prompt, label, p, n in zip(prompts, labels, probs, lengths)]


# --- files of prompts -----------------------------------------------------------------------


@dataclass(frozen=True)
class InputRow:
    """One row of a prompts file: its line, its prompt (and ``id`` if it has one), or why it is unusable."""

    line: int
    prompt: str | None = None
    row_id: str | None = None
    error: str | None = None


def read_prompt_rows(path: str | Path, column: str = "prompt") -> list[InputRow]:
    """Every row of a ``.jsonl`` or ``.csv`` file; a bad row is kept with its line and the reason.

    A missing file, an unknown extension or a CSV without ``column`` fails as a whole; a row that
    is not JSON, is not valid UTF-8, lacks the field or holds no text is returned with ``error``
    set, never dropped, so one bad byte costs one row, not the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path, column)
    if suffix == ".csv":
        return _csv_rows(path, column)
    raise ValueError(f"{path}: expected a .jsonl or .csv file")


def _undecodable(text: str) -> str | None:
    """Where ``text`` (read with ``errors="surrogateescape"``) is not UTF-8: its first bad byte; ``None`` if it is."""
    for column, char in enumerate(text, start=1):
        if "\udc80" <= char <= "\udcff":
            return f"not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at character {column})"
    return None


def _row(line: int, record: dict, column: str) -> InputRow:
    row_id = record.get("id", record.get("ID"))
    row_id = None if row_id in (None, "") else str(row_id)
    if column not in record:
        return InputRow(line, row_id=row_id, error=f"no {column!r} field")
    prompt = record[column]
    if not isinstance(prompt, str) or not prompt.strip():
        return InputRow(line, row_id=row_id, error=f"field {column!r} holds no text ({prompt!r})")
    return InputRow(line, prompt, row_id)


def _jsonl_rows(path: Path, column: str) -> list[InputRow]:
    from aims_kit.datasets.aims import jsonl_lines

    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        lines = list(handle)
    bad = {n: problem for n, line in enumerate(lines, start=1) if (problem := _undecodable(line))}
    readable = ["" if n in bad else line for n, line in enumerate(lines, start=1)]  # blank lines are skipped
    rows = [InputRow(n, error=problem) for n, problem in bad.items()] + [
        InputRow(line_no, error=problem) if problem is not None else _row(line_no, record, column)
        for line_no, record, problem in jsonl_lines(readable)
    ]
    return sorted(rows, key=lambda row: row.line)


def _csv_rows(path: Path, column: str) -> list[InputRow]:
    import csv

    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or []) or 'none'})")
        rows, end = [], 1  # line 1 is the header; a quoted field may span lines
        for record in reader:
            problem = next((f"field {k!r} is {p}" for k, v in record.items() if isinstance(v, str) and (p := _undecodable(v))), None)
            rows.append(InputRow(end + 1, error=problem) if problem else _row(end + 1, record, column))
            end = reader.line_num
    return rows


def classify_rows(classifier: Classifier, rows: list[InputRow], *, chunk: int = 256) -> list[dict]:
    """Output records in input order: ``line`` (and ``id``) plus the verdict, or the row's ``error``.

    Usable prompts go through the classifier ``chunk`` at a time under one progress bar.
    """
    from aims_kit.core.progress import progress_bar

    good = [row for row in rows if row.error is None]
    verdicts: dict[int, Classification] = {}
    bar = progress_bar(len(good), desc="classify", unit="prompt")
    for start in range(0, len(good), chunk):
        part = good[start:start + chunk]
        for row, verdict in zip(part, classifier.classify([r.prompt for r in part], desc="")):
            verdicts[row.line] = verdict
        bar.update(len(part))
    bar.close()
    out = []
    for row in rows:
        head = {"line": row.line, **({"id": row.row_id} if row.row_id is not None else {})}
        out.append({**head, **verdicts[row.line].to_dict()} if row.error is None else {**head, "error": row.error})
    return out
