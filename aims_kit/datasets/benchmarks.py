"""External benchmarks: found locally, on the hub or as a fixture, read and normalised.

What each benchmark is (source, columns, label mapping) lives in its registry entry
(:mod:`aims_kit.datasets.registry`); this module sniffs files, reads the hub, normalises
rows and discovers where each benchmark can be loaded from.

Every loaded benchmark becomes the same frame as the AIMS splits (``ID``, ``Prompt``, ``label``
harmful/safe) plus slice columns where the benchmark has them (``type``, ``Adversarial``,
``Category``), and ``split = "benchmark:<name>"`` so :func:`aims_kit.datasets.aims.require_split`
refuses it for any training decision.

Label policy, the same for every benchmark:

- a label value outside the entry's mapping is an error naming the file, row and field;
- an *empty* label (missing in the file) is **unknown**: the row is skipped, counted in
  ``frame.attrs["n_unknown"]`` and reported with every result (``n_unknown_skipped``).
- flag-style benchmarks (OpenAI Moderation) follow their entry's ``missing_flags`` reading.

The kit ships tiny fixture files in each upstream format (``aims_kit/data/fixtures``, its own
harmless text) so tests and the smoke profile exercise every loader offline. Fixture numbers are
not benchmark numbers and are always named ``fixture:<name>``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aims_kit.core import hub
from aims_kit.core.paths import DATA_DIR, outputs_dir
from aims_kit.datasets.aims import AimsDataError, is_missing, iter_jsonl
from aims_kit.datasets.registry import REGISTRY, VARIANTS, Benchmark, get

FIXTURES_DIR = DATA_DIR / "fixtures"
#: Environment variable with extra benchmark folders (``os.pathsep``-separated).
PATHS_ENV = "AIMS_KIT_BENCHMARKS"
#: The kit's own folder for downloaded benchmark files (e.g. ``outputs/benchmarks/xstest/xstest_prompts.csv``).
LOCAL_DIR = outputs_dir() / "benchmarks"
#: Real benchmark files whose licence lets them ship inside the kit (XSTest, CC-BY-4.0; licence and
#: attribution beside each file), searched last so a user's own download wins.
SHIPPED_DIR = DATA_DIR / "benchmarks"
SOURCES = ("local", "hub", "fixture")


class BenchmarkError(AimsDataError):
    """A benchmark file or hub dataset that cannot be read as the registry entry says it should."""


class HubUnreachable(BenchmarkError):
    """The hub did not answer (offline, no route): no other benchmark will load from it either."""


# ---------------------------------------------------------------- reading files


def read_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV / TSV / parquet / JSONL / JSON file (optionally gzipped), detecting the format
    from its content first and its name second, with every failure naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(str(path), "no such file")
    raw = path.read_bytes()
    name = path.name.lower()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise BenchmarkError(str(path), f"truncated or corrupt gzip file ({err}); download it again") from None
        name = name.removesuffix(".gz")
    if raw[:4] == b"PAR1":
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except Exception as err:  # pyarrow raises several types
            raise BenchmarkError(str(path), f"could not be read as parquet ({type(err).__name__}: {err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BenchmarkError(str(path), f"not UTF-8 text, parquet or gzip (byte {err.start}); expected CSV, JSONL or parquet") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return pd.DataFrame(json.loads(text))
        except (json.JSONDecodeError, ValueError) as err:
            raise BenchmarkError(str(path), f"not a valid JSON list of rows ({err})") from None
    if stripped.startswith("{"):
        return _read_jsonl_text(text, str(path))
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep="\t" if name.endswith(".tsv") else ",")
    except Exception as err:  # pandas parser errors
        raise BenchmarkError(str(path), f"could not be read as CSV ({type(err).__name__}: {err})") from None


def _read_jsonl_text(text: str, source: str) -> pd.DataFrame:
    return pd.DataFrame([row for _, row in iter_jsonl(text.splitlines(), source, BenchmarkError)])


def read_hub(bench: Benchmark) -> pd.DataFrame:
    """Load the benchmark from the Hugging Face hub (needs network, and a login for gated sets)."""
    import datasets

    splits = (bench.split,) if isinstance(bench.split, str) else bench.split
    frames = []
    for split in splits:
        try:
            frame = datasets.load_dataset(bench.hub_id, bench.config, split=split).to_pandas()
        except Exception as err:
            error = HubUnreachable if isinstance(err, ConnectionError) else BenchmarkError
            raise error(
                bench.hub_id,
                f"could not load from the hub ({type(err).__name__}: {err}). {bench.gating}. "
                f"Offline? Download it ({bench.upstream}) and pass the local path.",
            ) from None
        if len(splits) > 1:
            frame["split"] = split
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- normalising


def normalise(raw: pd.DataFrame, bench: Benchmark, source: str) -> pd.DataFrame:
    """Validate ``raw`` against ``bench`` and return the kit's benchmark frame.

    Rows are numbered from 1 as data rows (the header is not counted).
    """
    prompt_col = _pick(raw, bench.prompt_columns, source, "prompt")
    flags = [c for c in bench.flag_columns if c in raw.columns]
    label_col = _pick(raw, bench.label_columns, source, "label", required=False) if bench.label_columns else None
    if bench.fixed_label is None and label_col is None and not flags:
        wanted = [*bench.label_columns, *(["/".join(bench.flag_columns)] if bench.flag_columns else [])]
        raise BenchmarkError(source, f"no label column; expected one of {wanted} ({bench.upstream}); found {list(raw.columns)}")
    labels: list[str | None] = []
    for position, row in enumerate(raw.to_dict("records"), start=1):
        prompt = row[prompt_col]
        if is_missing(prompt) or not str(prompt).strip():
            raise BenchmarkError(source, "empty prompt", row=position, field=prompt_col)
        if bench.fixed_label is not None:
            labels.append(bench.fixed_label)
        elif label_col is not None:
            labels.append(_map_label(row[label_col], bench, source, position, label_col))
        else:
            labels.append(_flag_label(row, flags, bench, source, position))
    known = np.array([label is not None for label in labels], dtype=bool)
    out = pd.DataFrame({
        "ID": _ids(raw, bench),
        "Prompt": raw[prompt_col].astype(str),
        "label": labels,
    })
    for std, alternatives in bench.slices.items():
        column = next((c for c in alternatives if c in raw.columns), None)
        if column is not None:
            values = raw[column]
            out[std] = values.map(_as_flag) if std == "Adversarial" else values.map(_slice_text)
    out = out.loc[known].reset_index(drop=True)
    out["split"] = f"benchmark:{bench.name}"
    out.attrs.update(benchmark=bench.name, source=source, n_unknown=int((~known).sum()), n_raw=len(raw))
    if out.empty:
        raise BenchmarkError(source, "no rows with a known label")
    return out


def _pick(raw: pd.DataFrame, alternatives: tuple[str, ...], source: str, what: str, required: bool = True) -> str | None:
    for column in alternatives:
        if column in raw.columns:
            return column
    if required:
        raise BenchmarkError(source, f"missing {what} column; expected one of {list(alternatives)}; found {list(raw.columns)}",
                             field=alternatives[0])
    return None


def _map_label(value: object, bench: Benchmark, source: str, position: int, column: str) -> str | None:
    if is_missing(value) or str(value).strip() == "":
        return None
    key = str(value).strip().lower()
    if key not in bench.label_map:
        allowed = sorted(set(bench.label_map))
        raise BenchmarkError(source, f"unknown label {value!r}; expected one of {allowed}", row=position, field=column)
    return bench.label_map[key]


def _flag_label(row: dict, present: list[str], bench: Benchmark, source: str, position: int) -> str | None:
    """Harmful if any flag is 1. Otherwise safe, or unknown (None) when a flag is missing and
    ``bench.missing_flags`` is ``"unknown"``."""
    values = []
    for column in bench.flag_columns:
        value = row.get(column) if column in present else None
        if is_missing(value) or str(value).strip() == "":
            values.append(None)
            continue
        text = str(value).strip().lower()
        if text not in ("0", "1", "0.0", "1.0", "true", "false"):
            raise BenchmarkError(source, f"flag value {value!r} is not 0 or 1", row=position, field=column)
        values.append(text in ("1", "1.0", "true"))
    if any(v is True for v in values):
        return "harmful"
    return None if bench.missing_flags == "unknown" and None in values else "safe"


def _ids(raw: pd.DataFrame, bench: Benchmark) -> list[str]:
    column = next((c for c in bench.id_columns if c in raw.columns), None)
    if column is None:
        return [f"{bench.name}-{i}" for i in range(1, len(raw) + 1)]
    ids = raw[column].astype(str)
    if "split" in raw.columns and isinstance(bench.split, tuple):  # JailbreakBench numbers each split from 1
        ids = raw["split"].astype(str) + "-" + ids
    if ids.duplicated().any():  # an ID must identify a prompt for paired comparisons
        return [f"{bench.name}-{i}" for i in range(1, len(raw) + 1)]
    return ids.tolist()


def _as_flag(value: object) -> bool:
    return str(value).strip().lower() in ("1", "1.0", "true", "yes", "adversarial")


def _slice_text(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value) or "none"
    return "none" if is_missing(value) or str(value).strip() == "" else str(value).strip()


# ---------------------------------------------------------------- loading and searching


def load_benchmark(name: str, path: str | Path | None = None) -> pd.DataFrame:
    """Load ``name`` from ``path`` (an upstream file or a hub export) or, without a path, the hub."""
    bench = get(name)
    if path is not None:
        return normalise(read_file(path), bench, str(path))
    return normalise(read_hub(bench), bench, f"{bench.hub_id} [{bench.config or 'default'}]")


def load_fixture(name: str) -> pd.DataFrame:
    """The kit's own few-row file in ``name``'s upstream format (for tests and smoke runs)."""
    return load_benchmark(name, FIXTURES_DIR / get(name).fixture)


def search_dirs(benchmark_paths: str | list | tuple | None = None) -> list[Path]:
    """Folders searched for benchmark files, in order: ``benchmark_paths``, ``$AIMS_KIT_BENCHMARKS``,
    ``outputs/benchmarks`` and the real files shipped with the kit (:data:`SHIPPED_DIR`)."""
    given = benchmark_paths.split(os.pathsep) if isinstance(benchmark_paths, str) else list(benchmark_paths or [])
    env = [p for p in os.environ.get(PATHS_ENV, "").split(os.pathsep) if p]
    dirs = [Path(p).expanduser() for p in (*given, *env) if p] + [LOCAL_DIR, SHIPPED_DIR]
    return list(dict.fromkeys(dirs))


def find_local(name: str, dirs: list[Path]) -> Path | None:
    bench = get(name)
    for folder in dirs:
        for relative in bench.local_names:
            candidate = folder / relative
            if candidate.is_file():
                return candidate
    return None


@dataclass
class Found:
    """One benchmark's outcome of :func:`discover`: a frame and where it came from, or why it was skipped."""

    name: str
    kind: str  # "local", "hub", "fixture" or "skipped"
    source: str
    frame: pd.DataFrame | None
    note: str

    @property
    def dataset(self) -> str:
        """The record name: fixtures never pass for the real benchmark."""
        return f"fixture:{self.name}" if self.kind == "fixture" else f"bench:{self.name}"


def discover(
    names: list[str] | tuple[str, ...] | None = None,
    *,
    sources: list[str] | tuple[str, ...] = ("local", "hub", "fixture"),
    benchmark_paths: str | list | None = None,
    log=print,
) -> list[Found]:
    """For each benchmark, take the first source in ``sources`` that works and say why others failed.

    ``local`` searches :func:`search_dirs`; ``hub`` tries ``datasets.load_dataset``; ``fixture``
    uses the kit's own few-row file (reported as a fixture, not a benchmark). A local file that
    exists but is malformed is an error, not a skip: the user meant it to be read.

    The hub is probed once first (:func:`aims_kit.core.hub.unreachable`, seconds) and dropped for the whole
    call when it is unreachable, or when a load fails for want of a connection; ``log`` gets one
    line saying so, with the reason, and each benchmark's note says only "hub unreachable" and what
    it fell back to (the connection error once per run, not once per benchmark).
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown benchmark source(s) {unknown}; choose from {SOURCES}")
    dirs = search_dirs(benchmark_paths)
    def hub_gone(reason: str) -> str:
        log(f"benchmarks: the Hugging Face hub is unreachable ({reason}); falling back to the next source")
        return reason

    hub_down = hub.unreachable() if "hub" in sources else None
    if hub_down:
        hub_gone(hub_down)
    found = []
    for name in names or list(REGISTRY):
        bench, reasons = get(name), []
        for source in sources:
            if source == "local":
                path = find_local(name, dirs)
                if path is None:
                    reasons.append(f"no local file ({bench.local_names[0]}) in {', '.join(map(str, dirs))}")
                    continue
                shipped = path.resolve().is_relative_to(SHIPPED_DIR.resolve())
                note = "real benchmark file" + (" shipped with the kit (licence beside it)" if shipped else "")
                found.append(Found(name, "local", str(path), load_benchmark(name, path), note))
                break
            if source == "hub":
                if hub_down:
                    reasons.append("hub unreachable (said above)")
                    continue
                try:
                    frame = load_benchmark(name)
                except HubUnreachable as err:
                    hub_down = hub_gone(str(err))
                    reasons.append("hub unreachable (said above)")
                    continue
                except BenchmarkError as err:
                    reasons.append(f"hub: {err}")
                    continue
                found.append(Found(name, "hub", bench.hub_id, frame, "real benchmark from the hub"))
                break
            found.append(Found(name, "fixture", str(FIXTURES_DIR / bench.fixture), load_fixture(name),
                               "fixture (not a real benchmark); " + "; ".join(reasons)))
            break
        else:
            found.append(Found(name, "skipped", "", None, "; ".join(reasons) or "no source requested"))
    return found


def discovery_table(found: list[Found]) -> pd.DataFrame:
    """What was found, where, how many rows (and unknown-label rows skipped), and what was skipped why."""
    return pd.DataFrame([
        {
            "benchmark": f.name,
            "dataset": f.dataset if f.frame is not None else "",
            "kind": f.kind,
            "rows": 0 if f.frame is None else len(f.frame),
            "harmful": 0 if f.frame is None else int((f.frame["label"] == "harmful").sum()),
            "unknown_skipped": 0 if f.frame is None else f.frame.attrs.get("n_unknown", 0),
            "source": f.source,
            "note": f.note,
        }
        for f in found
    ])


def registry_table() -> pd.DataFrame:
    """One row per registered benchmark and variant: where it lives, its licence and gating."""
    return pd.DataFrame([
        {"name": b.name, "title": b.title, "hub": b.hub_id, "config": b.config, "split": b.split, "licence": b.licence,
         "gating": b.gating, "upstream file": b.upstream, "paper five": b.paper_five, "default set": b.name in REGISTRY}
        for b in (*REGISTRY.values(), *VARIANTS.values())
    ])
