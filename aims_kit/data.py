"""The AIMS data: load from the hub or a local file, validate, map labels, split.

Everything a notebook trains or evaluates on passes through :func:`load_aims`, so a bad file
fails here, once, with the file, row and field named — never deep inside a trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

HUB_ID = "Jazhyc/aims-safety-intents"
SAMPLE_PATH = Path(__file__).parent / "data" / "sample" / "aims_sample.csv"
TRACES_PATH = Path(__file__).parent / "data" / "sample" / "reference_traces.jsonl"

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


@dataclass(frozen=True)
class Splits:
    """Train / val / test frames. Only ``train`` and ``val`` may drive training decisions."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def load_aims(source: str | Path | None = None, *, hub_split: str = "train") -> pd.DataFrame:
    """Load AIMS rows, validated, with flagged rows dropped and a binary ``label`` column added.

    ``source`` is ``None`` (the sample shipped with the kit), a local ``.csv`` / ``.parquet`` /
    ``.jsonl`` / ``.json`` file, or a Hugging Face dataset id such as ``Jazhyc/aims-safety-intents``.
    The number of dropped flagged rows is kept in ``df.attrs["n_flagged"]``.
    """
    raw, name = read_table(source, hub_split=hub_split)
    df = validate(raw, name)
    return df


def read_table(source: str | Path | None, *, hub_split: str = "train") -> tuple[pd.DataFrame, str]:
    """Read a table from a local file or the hub without validating it; returns it and its name."""
    if source is None:
        source = SAMPLE_PATH
    path = Path(source)
    if path.exists():
        return _read_local(path), str(path)
    if isinstance(source, Path) or path.suffix.lower() in _READERS or "/" not in str(source):
        raise AimsDataError(str(source), "no such file (and it does not look like a hub dataset id)")
    return _read_hub(str(source), hub_split), f"{source} [{hub_split}]"


def iter_jsonl(lines: Iterable[str], source: str, error: type[AimsDataError] = AimsDataError) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty JSONL line.

    A line that is not a JSON object (a truncated download, a hand edit) is an ``error`` naming
    the file and the line, never a stack trace from the JSON parser.
    """
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(source, f"line {line_no} is not valid JSON ({err.msg}); truncated file?", row=line_no) from None
        if not isinstance(row, dict):
            raise error(source, f"line {line_no} is not a JSON object", row=line_no)
        yield line_no, row


def _read_jsonl(path: Path) -> pd.DataFrame:
    with path.open(encoding="utf-8") as handle:
        return pd.DataFrame([row for _, row in iter_jsonl(handle, str(path))])


_READERS = {
    ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
    ".parquet": pd.read_parquet,
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
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


def _read_hub(dataset_id: str, split: str) -> pd.DataFrame:
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split).to_pandas()
    except Exception as err:
        raise AimsDataError(
            dataset_id,
            f"could not load from the Hugging Face hub ({type(err).__name__}: {err}). "
            "Offline? Download the dataset and pass the local file path instead.",
        ) from None


def validate(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns and every row; return clean rows with a binary ``label`` column.

    Rows are numbered from 1 as in a spreadsheet's data rows (the header is not counted).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise AimsDataError(source, f"missing column(s) {missing}; found {list(raw.columns)}", field=missing[0])
    df = raw.copy()
    for column in ("Prompt", "Intent", "Annotator Harm"):
        df[column] = df[column].map(lambda v: "" if is_missing(v) else str(v))
    seen_ids: dict[str, int] = {}
    for position, row in enumerate(df.itertuples(index=False), start=1):
        values = dict(zip(df.columns, row))
        row_id = str(values["ID"])
        if is_missing(values["ID"]) or not row_id.strip():
            raise AimsDataError(source, "empty ID", row=position, field="ID")
        if row_id in seen_ids:
            raise AimsDataError(source, f"duplicate ID {row_id!r} (first at row {seen_ids[row_id]})", row=position, field="ID")
        seen_ids[row_id] = position
        harm = values["Annotator Harm"].strip()
        if harm not in HARM_MAP and harm != FLAG:
            allowed = ", ".join([*HARM_MAP, FLAG])
            raise AimsDataError(source, f"unknown label {harm!r}; expected one of: {allowed}", row=position, field="Annotator Harm")
        if harm == FLAG:
            continue
        if not values["Prompt"].strip():
            raise AimsDataError(source, "empty prompt", row=position, field="Prompt")
        if not values["Intent"].strip():
            raise AimsDataError(source, "empty intent", row=position, field="Intent")
        if _as_bool(values["Adversarial"]) is None:
            raise AimsDataError(source, f"not a boolean: {values['Adversarial']!r}", row=position, field="Adversarial")
    df["Annotator Harm"] = df["Annotator Harm"].str.strip()
    df["row"] = np.arange(1, len(df) + 1)
    flagged = df["Annotator Harm"] == FLAG
    df = df.loc[~flagged].reset_index(drop=True)
    df["label"] = df["Annotator Harm"].map(HARM_MAP)
    df["Adversarial"] = df["Adversarial"].map(_as_bool)
    df["ID"] = df["ID"].astype(str)
    df["Duplicate ID"] = df["Duplicate ID"].map(lambda v: "" if is_missing(v) else str(v).strip())
    df.attrs["n_flagged"] = int(flagged.sum())
    df.attrs["source"] = source
    return df


def split_aims(df: pd.DataFrame, *, seed: int = 22, val_frac: float = 0.1, test_frac: float = 0.1) -> Splits:
    """Split with the paper's policy.

    Every row whose prompt occurs more than once (a ``Duplicate ID`` group, or the same prompt
    text) goes to train, so no prompt is ever in two splits. Val and test are drawn from the
    unique prompts, stratified on the binary label, with a seeded shuffle.
    """
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


def summary(df: pd.DataFrame) -> dict:
    """Counts a user wants to see before training: labels, adversarial share, intent lengths."""
    out = {
        "source": df.attrs.get("source", "?"),
        "rows": int(len(df)),
        "flagged_dropped": int(df.attrs.get("n_flagged", 0)),
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
