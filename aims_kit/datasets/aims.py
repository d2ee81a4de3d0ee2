"""The AIMS data: load from the hub, a local dataset folder or a local file, validate, map labels, split.

Everything a notebook trains or evaluates on passes through :func:`load_aims`, so a bad file
fails here, once, with the file, row and field named — never deep inside a trainer.

Splits: a source that publishes its own train / validation / test splits keeps them (the hub
dataset does; they are the paper's 1,378 / 173 / 173, and its test set is only comparable if
it is the same rows). Only a single-table source is split by the kit's policy
(:func:`split_aims`).

Rows with an empty ``Annotator Harm`` or an empty ``Intent`` are skipped, as the paper's
loaders filter them — never silently: :func:`validate` warns with their count and IDs and lists
them in ``df.attrs["skipped_rows"]``. Every other bad value (an unknown label, an empty prompt,
a duplicate ID, a non-boolean ``Adversarial``) stays an :class:`AimsDataError` naming the file,
row and field.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from aims_kit.core.paths import DATA_DIR

HUB_ID = "Jazhyc/aims-safety-intents"
SAMPLE_PATH = DATA_DIR / "sample" / "aims_sample.csv"
TRACES_PATH = DATA_DIR / "sample" / "reference_traces.jsonl"

REQUIRED_COLUMNS = (
    "ID",
    "Wildguard ID",
    "Duplicate ID",
    "Prompt",
    "Intent",
    "Annotator Harm",
    "Dataset Harm",
    "Adversarial",
)
FLAG = "Flag for Removal"
HARM_MAP = {
    "Completely Harmful": "harmful",
    "Uncertain Harmful": "harmful",
    "Uncertain Safe": "safe",
    "Completely Safe": "safe",
}
SPLITS = ("train", "val", "test")
#: Column that holds the split a row had in its source, named as the kit names splits.
SOURCE_SPLIT = "source_split"
#: A source's split names → the kit's (the hub calls the validation split ``validation``).
SOURCE_SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "test": "test"}


class AimsDataError(ValueError):
    """Bad input data, with the place it was found so the user can fix the file."""

    def __init__(self, source: str, message: str, row: int | None = None, field: str | None = None):
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.source, self.row, self.field = source, row, field


class AimsDataWarning(UserWarning):
    """Rows left out of the data on purpose (empty label or intent), with their IDs."""


def prompt_sha256(prompt: object) -> str:
    """The fingerprint that ties a distillation trace to the prompt it was written for.

    SHA-256 (hex) of the prompt's UTF-8 bytes after one normalisation: line endings unified to
    ``\\n`` and surrounding whitespace stripped. Nothing else changes (case, inner spacing and
    Unicode form are kept), so two prompts that differ in any word hash differently. Hash the
    prompt as a loaded row holds it (``load_aims(...)["Prompt"]``).
    """
    text = str(prompt).replace("\r\n", "\n").replace("\r", "\n").strip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Splits:
    """Train / val / test frames. Only ``train`` and ``val`` may drive training decisions.

    ``from_source`` says whether they are the source's own splits or the kit's re-split.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    from_source: bool = False

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def load_aims(source: str | Path | None = None) -> pd.DataFrame:
    """Load AIMS rows, validated, with flagged rows dropped and a binary ``label`` column added.

    ``source`` is ``None`` (the sample shipped with the kit), a local ``.csv`` / ``.parquet`` /
    ``.jsonl`` / ``.json`` file, a local dataset folder, or a Hugging Face dataset id such as
    ``Jazhyc/aims-safety-intents``. Folders and hub ids both go through
    ``datasets.load_dataset``; when the source has train, validation and test splits, each is
    validated on its own and every row keeps its split in the :data:`SOURCE_SPLIT` column,
    which :func:`split_aims` honours. The number of dropped flagged rows is kept in
    ``df.attrs["n_flagged"]``; rows skipped for an empty ``Annotator Harm`` or ``Intent`` (the
    paper's filter) are listed in ``df.attrs["skipped_rows"]`` and announced in one
    :class:`AimsDataWarning` (see :func:`validate`).
    """
    raw, name = read_table(source)
    if SOURCE_SPLIT not in raw.columns:
        return validate(raw, name)
    parts = [
        validate(part.drop(columns=SOURCE_SPLIT).reset_index(drop=True), f"{name} [{split}]", warn=False)
        .assign(**{SOURCE_SPLIT: split})
        for split, part in raw.groupby(SOURCE_SPLIT, sort=False)
    ]
    df = pd.concat(parts, ignore_index=True)
    skipped = [entry for p in parts for entry in p.attrs["skipped_rows"]]
    df.attrs = {"n_flagged": sum(p.attrs["n_flagged"] for p in parts), "skipped_rows": skipped, "source": name}
    report_skipped(name, skipped)
    return df


def read_table(source: str | Path | None) -> tuple[pd.DataFrame, str]:
    """Read a table from a local file, a dataset folder or the hub without validating it.

    A folder or hub dataset with several splits comes back as one frame whose
    :data:`SOURCE_SPLIT` column says which split each row came from. Returns it and its name.
    """
    if source is None:
        source = SAMPLE_PATH
    path = Path(source)
    if path.is_file():
        return _read_local(path), str(path)
    if path.is_dir():
        return _read_dataset(str(path), "local dataset folder"), str(path)
    if isinstance(source, Path) or path.suffix.lower() in _READERS or "/" not in str(source):
        raise AimsDataError(str(source), "no such file (and it does not look like a hub dataset id)")
    return _read_dataset(str(source), "Hugging Face hub"), str(source)


def jsonl_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line number, object, problem)`` for each non-empty JSONL line; ``problem`` is ``None`` or why it is unreadable.

    The one line reader behind every JSONL input: callers decide whether a bad line stops the
    read (:func:`iter_jsonl`) or is reported and the rest kept (the classify CLI).
    """
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield line_no, None, f"not valid JSON ({err.msg})"
            continue
        yield (line_no, row, None) if isinstance(row, dict) else (line_no, None, "not a JSON object")


def iter_jsonl(lines: Iterable[str], source: str, error: type[AimsDataError] = AimsDataError) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty JSONL line.

    A line that is not a JSON object (a truncated download, a hand edit) is an ``error`` naming
    the file and the line, never a stack trace from the JSON parser.
    """
    for line_no, row, problem in jsonl_lines(lines):
        if problem is not None:
            hint = "; truncated file?" if problem.startswith("not valid JSON") else ""
            raise error(source, f"line {line_no} is {problem}{hint}", row=line_no)
        yield line_no, row


def _read_jsonl(path: Path) -> pd.DataFrame:
    with path.open(encoding="utf-8") as handle:
        return pd.DataFrame([row for _, row in iter_jsonl(handle, str(path))])


def _read_json(path: Path) -> pd.DataFrame:
    """A ``.json`` file: one JSON array of row objects (a pandas or ``datasets`` export), else JSON Lines."""
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise AimsDataError(str(path), f"not a valid JSON array of rows ({err.msg} at line {err.lineno}); truncated file?") from None
    for position, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise AimsDataError(str(path), f"array element {position} is not a JSON object", row=position)
    return pd.DataFrame(rows)


_READERS = {
    ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
    ".parquet": pd.read_parquet,
    ".jsonl": _read_jsonl,
    ".json": _read_json,
}


def _read_local(path: Path) -> pd.DataFrame:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise AimsDataError(str(path), f"unsupported file type {path.suffix!r}; use one of {', '.join(_READERS)}")
    try:
        return reader(path)
    except AimsDataError:
        raise
    except Exception as err:  # pandas/pyarrow raise many types; name the file, keep the reason
        raise AimsDataError(str(path), f"could not be read as {path.suffix} ({type(err).__name__}: {err})") from None


def _read_dataset(source: str, where: str) -> pd.DataFrame:
    """Every split of a hub dataset or a local dataset folder, through ``datasets.load_dataset``."""
    import datasets

    try:
        loaded = datasets.load_dataset(source)
    except Exception as err:
        raise AimsDataError(
            source,
            f"could not load from the {where} ({type(err).__name__}: {err}). "
            "Offline? Download the dataset and pass the local file or folder instead.",
        ) from None
    return _combine_splits(source, {name: split.to_pandas() for name, split in loaded.items()})


def _combine_splits(source: str, parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One split: its rows (the kit re-splits them). Train, validation and test: all rows, marked."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    kit_names = [SOURCE_SPLIT_NAMES.get(name) for name in parts]
    if sorted(n for n in kit_names if n) != sorted(SPLITS) or None in kit_names:
        raise AimsDataError(
            source,
            f"has splits {sorted(parts)}; expected one split (which the kit re-splits) or exactly train, validation and test",
        )
    return pd.concat(
        [frame.assign(**{SOURCE_SPLIT: SOURCE_SPLIT_NAMES[name]}) for name, frame in parts.items()], ignore_index=True
    )


def validate(raw: pd.DataFrame, source: str, *, warn: bool = True) -> pd.DataFrame:
    """Check columns and every row; return clean rows with a binary ``label`` column.

    Rows are numbered from 1 as in a spreadsheet's data rows (the header is not counted).
    Flagged rows are dropped (counted in ``attrs["n_flagged"]``). A row with an empty
    ``Annotator Harm`` or an empty ``Intent`` is skipped as the paper's loaders skip it, and
    reported: ``attrs["skipped_rows"]`` lists ``{source, row, id, field, reason}`` for each, and
    (unless ``warn`` is false) an :class:`AimsDataWarning` gives their count and IDs. Any other
    bad value is an :class:`AimsDataError` naming the row and field.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise AimsDataError(source, f"missing column(s) {missing}; found {list(raw.columns)}", field=missing[0])
    if raw.empty:
        raise AimsDataError(source, "no data rows (only a header?)")
    df = raw.copy()
    for column in ("Prompt", "Intent", "Annotator Harm"):
        df[column] = df[column].map(lambda v: "" if is_missing(v) else str(v))
    seen_ids: dict[str, int] = {}
    skipped: list[dict] = []
    for position, row in enumerate(df.itertuples(index=False), start=1):
        values = dict(zip(df.columns, row))
        row_id = str(values["ID"])
        if is_missing(values["ID"]) or not row_id.strip():
            raise AimsDataError(source, "empty ID", row=position, field="ID")
        if row_id in seen_ids:
            raise AimsDataError(source, f"duplicate ID {row_id!r} (first at row {seen_ids[row_id]})", row=position, field="ID")
        seen_ids[row_id] = position
        harm = values["Annotator Harm"].strip()
        if not harm:  # the paper's filter: skipped and reported, not an error
            skipped.append({"source": source, "row": position, "id": row_id, "field": "Annotator Harm", "reason": "empty label"})
            continue
        if harm not in HARM_MAP and harm != FLAG:
            allowed = ", ".join([*HARM_MAP, FLAG])
            raise AimsDataError(source, f"unknown label {harm!r}; expected one of: {allowed}", row=position, field="Annotator Harm")
        if harm == FLAG:
            continue
        if not values["Intent"].strip():  # the paper's filter too
            skipped.append({"source": source, "row": position, "id": row_id, "field": "Intent", "reason": "empty intent"})
            continue
        if not values["Prompt"].strip():
            raise AimsDataError(source, "empty prompt", row=position, field="Prompt")
        if _as_bool(values["Adversarial"]) is None:
            raise AimsDataError(source, f"not a boolean: {values['Adversarial']!r}", row=position, field="Adversarial")
    df["Annotator Harm"] = df["Annotator Harm"].str.strip()
    df["row"] = np.arange(1, len(df) + 1)
    flagged = df["Annotator Harm"] == FLAG
    dropped = flagged | df["row"].isin([entry["row"] for entry in skipped])
    df = df.loc[~dropped].reset_index(drop=True)
    df["label"] = df["Annotator Harm"].map(HARM_MAP)
    df["Adversarial"] = df["Adversarial"].map(_as_bool)
    df["ID"] = df["ID"].astype(str)
    df["Duplicate ID"] = df["Duplicate ID"].map(lambda v: "" if is_missing(v) else str(v).strip())
    df.attrs["n_flagged"] = int(flagged.sum())
    df.attrs["skipped_rows"] = skipped
    df.attrs["source"] = source
    if warn:
        report_skipped(source, skipped)
    return df


def report_skipped(source: str, skipped: list[dict], *, show: int = 20) -> str | None:
    """Warn (:class:`AimsDataWarning`) which rows were skipped for an empty label or intent; returns the message.

    The message names the count, the field and the IDs (the first ``show`` per field; all of
    them are in the frame's ``attrs["skipped_rows"]``). Nothing skipped: no warning, ``None``.
    """
    if not skipped:
        return None
    parts = []
    for field in ("Annotator Harm", "Intent"):
        entries = [e for e in skipped if e["field"] == field]
        if not entries:
            continue
        ids = [e["id"] + (f" {e['source'][len(source):].strip()}" if e["source"] != source else "") for e in entries]
        more = f" and {len(ids) - show} more" if len(ids) > show else ""
        parts.append(f"{len(entries)} with an empty {field!r} (ID{'s' if len(ids) > 1 else ''} {', '.join(ids[:show])}{more})")
    message = (f"{source}: skipped {len(skipped)} row(s), as the paper's loaders do: {'; '.join(parts)}. "
               "They are listed in the loaded frame's attrs['skipped_rows'].")
    warnings.warn(message, AimsDataWarning, stacklevel=3)
    return message


def split_aims(df: pd.DataFrame, *, seed: int = 22, val_frac: float = 0.1, test_frac: float = 0.1) -> Splits:
    """The source's own splits when it has them, else a split with the paper's policy.

    Rows loaded from a source with train / validation / test splits (a :data:`SOURCE_SPLIT`
    column) keep them, whatever ``seed`` and the fractions say: the paper reports on the
    published test split. A single-table source is split here: every row whose prompt occurs
    more than once (a ``Duplicate ID`` group, or the same prompt text) goes to train, so no
    prompt is ever in two splits; val and test are drawn from the unique prompts, stratified on
    the binary label, with a seeded shuffle.
    """
    if SOURCE_SPLIT in df.columns:
        return _source_splits(df)
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise ValueError("val_frac and test_frac must be in (0, 1) and sum to less than 1")
    normalised = df["Prompt"].map(_normalise_prompt)
    duplicated = normalised.duplicated(keep=False) | (df["Duplicate ID"] != "")
    rng = np.random.default_rng(seed)
    n_val, n_test = round(len(df) * val_frac), round(len(df) * test_frac)
    unique = df.loc[~duplicated]
    val_idx: list[int] = []
    test_idx: list[int] = []
    for _, group in unique.groupby("label", sort=True):
        order = rng.permutation(group.index.to_numpy())
        share = len(group) / len(unique)
        k_val, k_test = round(n_val * share), round(n_test * share)
        val_idx.extend(order[:k_val])
        test_idx.extend(order[k_val:k_val + k_test])
    held_out = set(val_idx) | set(test_idx)
    train_idx = [i for i in df.index if i not in held_out]
    return Splits(
        train=df.loc[train_idx].reset_index(drop=True).assign(split="train"),
        val=df.loc[sorted(val_idx)].reset_index(drop=True).assign(split="val"),
        test=df.loc[sorted(test_idx)].reset_index(drop=True).assign(split="test"),
    )


def _source_splits(df: pd.DataFrame) -> Splits:
    parts = {
        name: df[df[SOURCE_SPLIT] == name].drop(columns=SOURCE_SPLIT).reset_index(drop=True).assign(split=name)
        for name in SPLITS
    }
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise AimsDataError(df.attrs.get("source", "data"), f"the source's {empty} split(s) have no usable rows", field=SOURCE_SPLIT)
    return Splits(**parts, from_source=True)


def balanced_head(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The first ``limit // n_labels`` rows of each label (``0``: all rows), for quick runs on AIMS splits.

    Deterministic and seedless, so a smoke run, a DPO mining pass and GRPO's validation subset
    always see the same rows. Benchmarks use :func:`stratified_sample` instead.
    """
    if not limit or limit >= len(frame):
        return frame
    per_label = max(1, limit // frame["label"].nunique())
    return frame.groupby("label", group_keys=False).head(per_label).reset_index(drop=True)


def balanced_sample(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """:func:`balanced_head` of a seeded shuffle: equal rows per label, spread over the whole frame.

    The train split keeps the source file's row order, grouped by source and category, so its
    head is no sample of it.
    """
    if not limit or limit >= len(frame):
        return frame
    return balanced_head(frame.sample(frac=1.0, random_state=seed), limit)


def stratified_sample(frame: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """At most ``limit`` rows, a seeded sample stratified on the label (``0``: all rows).

    Keeps the harmful share and spreads over slices (a head would take, e.g., XSTest's first
    prompt types only), in the frame's original row order; ``attrs`` are kept, with ``limit``.
    """
    if not limit or limit >= len(frame):
        return frame
    share = limit / len(frame)
    parts = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed)
        for _, group in frame.groupby("label", sort=True)
    ]
    out = pd.concat(parts).sort_index().reset_index(drop=True)
    out.attrs.update(frame.attrs, limit=limit)
    return out


def summary(df: pd.DataFrame) -> dict:
    """Counts a user wants to see before training: labels, adversarial share, intent lengths."""
    out = {
        "source": df.attrs.get("source", "?"),
        "rows": int(len(df)),
        "flagged_dropped": int(df.attrs.get("n_flagged", 0)),
        "skipped_empty_label_or_intent": [
            {k: e[k] for k in ("id", "field", "source")} for e in df.attrs.get("skipped_rows", [])
        ],
        "labels": {k: int(v) for k, v in df["label"].value_counts().sort_index().items()},
        "annotator_harm": {k: int(v) for k, v in df["Annotator Harm"].value_counts().sort_index().items()},
        "adversarial_share": round(float(df["Adversarial"].mean()), 3),
        "duplicate_groups": int(df.loc[df["Duplicate ID"] != "", "Duplicate ID"].nunique()),
        "intent_words_median": float(df["Intent"].str.split().str.len().median()),
    }
    if "Category" in df.columns:
        out["categories"] = {k: int(v) for k, v in df["Category"].value_counts().sort_index().items()}
    return out


def _normalise_prompt(text: str) -> str:
    return " ".join(str(text).lower().split())


def is_missing(value: object) -> bool:
    """None or NaN: how pandas and pyarrow spell an empty cell."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_bool(value: object) -> bool | None:
    """``True``/``False`` from the spellings CSV, parquet and JSONL use; ``None`` if it is none."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = "" if is_missing(value) else str(value).strip().lower()
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}.get(text)


class SplitHygieneError(ValueError):
    """Raised when a frame from the wrong split would drive a training decision."""


def require_split(frame: pd.DataFrame, split: str, purpose: str) -> None:
    """Refuse ``frame`` unless every row comes from ``split``.

    Test rows and external benchmarks must never choose a checkpoint, stop training or tune
    a hyper-parameter (the paper's own pipeline did); the check lives here so no notebook can
    forget it.
    """
    if "split" not in frame.columns:
        raise SplitHygieneError(f"{purpose}: frame has no 'split' column; use aims_kit.datasets.aims.split_aims")
    found = sorted(set(frame["split"]))
    if found != [split]:
        raise SplitHygieneError(f"{purpose} may only use the {split!r} split, got rows from {found}")
