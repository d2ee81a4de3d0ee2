"""Results are data: run folders, tidy records, atomic writes, one loader for all of them.

Layout of one run folder (never reused: every run gets a new one)::

    <out_dir>/runs/<name>-<YYYYmmdd-HHMMSS>-<rand>/
        config.json                everything needed to rerun it (model, regime, seed, params, commit)
        adapter/                   the LoRA adapter (safetensors)
        predictions/<dataset>.jsonl  one line per evaluated prompt
        results/<dataset>.json     one tidy record per (run, dataset)

Any plot can be rebuilt from the records alone (:func:`load_records`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from aims_kit.core import distributed
from aims_kit.core.paths import REPO_DIR, outputs_dir


def share_like_umask(path: str | Path) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would have under this process's umask;
    a folder, with everything under it.

    Why: ``tempfile`` creates files 0600 and folders 0700 (private by design), so a file written
    atomically through a temporary one, or a folder built in a staging one, would stay unreadable
    to the rest of a class sharing a run folder, whatever their umask says. safetensors writes
    weights the same way: every ``adapter_model.safetensors`` (final adapter and checkpoints) and
    ``model.safetensors`` (the encoder, a merged export, the tiny model) lands 0600. So after the
    libraries have written a run, the trainers pass its whole folder here.

    Under a folder, links are left alone, and an entry that vanished meanwhile (a checkpoint
    rotated out) or that belongs to another account (not this process's to change) is skipped.
    """
    mask = _umask()
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path):
            for name in (*folders, *files):
                _chmod_like_umask(Path(root) / name, mask)


def _umask() -> int:
    """This process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_like_umask(path: Path, mask: int) -> None:
    """One entry under a folder given to :func:`share_like_umask` (links, vanished and foreign entries skipped)."""
    if path.is_symlink():
        return
    try:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    except (FileNotFoundError, PermissionError):
        pass


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of one (mode from the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        share_like_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a results file")


def resolve_out_dir(out_dir: str | Path | None) -> Path:
    """A notebook's ``out_dir`` parameter: empty means ``outputs/lab`` (the JupyterLab workspace)."""
    path = Path(out_dir) if out_dir else outputs_dir() / "lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_folder(parent: Path, name: str) -> Path:
    """Create ``parent/<name>-<timestamp>-<random>``; never returns a folder that already existed."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        path = parent / f"{name}-{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` if files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


#: Set by ``python -m aims_kit run --resume``: :func:`create_run` then reuses an earlier run folder
#: with the same config, so an interrupted training continues from its last checkpoint.
RESUME_ENV = "AIMS_KIT_RESUME"


def create_run(out_dir: Path, name: str, config: dict) -> Path:
    """A new run folder with its ``config.json`` (commit, creation time and process count added).

    When resuming (``$AIMS_KIT_RESUME``), the newest run under ``out_dir`` whose config matches
    ``config`` is returned instead, so its checkpoints and finished evaluations are reused.
    Under a multi-process launcher only the main process creates it; every process gets its path.
    """
    return distributed.from_main(lambda: _create_run(out_dir, name, config))


def _create_run(out_dir: Path, name: str, config: dict) -> Path:
    if os.environ.get(RESUME_ENV):
        wanted = json.loads(json.dumps(config, default=_json_default))
        matches = find_runs(out_dir, **wanted)
        if matches:
            return matches[-1]
    run_dir = new_folder(Path(out_dir) / "runs", name)
    full = {
        **config,
        "run_id": run_dir.name,
        "world_size": distributed.world_size(),
        "git_commit": git_commit(),
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }
    _check_no_secrets(full)
    atomic_write_json(run_dir / "config.json", full)
    return run_dir


def read_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def is_evaluated(run_dir: Path, dataset: str) -> bool:
    """Whether ``run_dir`` already holds a results record for ``dataset`` (a resumed run skips it)."""
    return (Path(run_dir) / "results" / f"{dataset}.json").exists()


def write_record(run_dir: Path, dataset: str, metrics: dict, predictions: list[dict]) -> dict:
    """Save predictions and the tidy record for (run, dataset); returns the record.

    Re-evaluating a run on the same dataset keeps one current record (the tidy table stays one
    row per run and dataset) and moves the earlier record and predictions to ``history/``, so
    nothing is lost. Under a multi-process launcher only the main process writes.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    choice = selected_checkpoint(run_dir)
    record = {
        "run_id": config["run_id"],
        "run_dir": str(run_dir),
        "regime": config.get("regime"),
        "condition": config.get("condition"),
        "variant": config.get("variant"),
        "model": config.get("model"),
        "profile": config.get("profile"),
        "seed": config.get("seed"),
        "git_commit": config.get("git_commit"),
        "dataset": dataset,
        **metrics,
        "selected_checkpoint": choice,
        "checkpoint_step": choice["best_step"] if choice else None,
        "config": config,
    }
    if distributed.is_main_process():
        _archive_previous(run_dir, dataset)
        atomic_write_jsonl(run_dir / "predictions" / f"{dataset}.jsonl", predictions)
        atomic_write_json(run_dir / "results" / f"{dataset}.json", record)
    return record


def selected_checkpoint(run_dir: Path) -> dict | None:
    """The step a trained run's adapter is from and the validation curve it was chosen from
    (its ``val_selection.json``; ``None`` for a run that trained nothing here, such as a served one)."""
    path = Path(run_dir) / "val_selection.json"
    if not path.exists():
        return None
    choice = read_json(path)
    return {key: choice.get(key) for key in ("best_step", "metric", "rule", "history")}


def _archive_previous(run_dir: Path, dataset: str) -> None:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    for folder, suffix in (("results", ".json"), ("predictions", ".jsonl")):
        previous = run_dir / folder / f"{dataset}{suffix}"
        if previous.exists():
            target = run_dir / "history" / f"{folder}-{dataset}-{stamp}{suffix}"
            target.parent.mkdir(exist_ok=True)
            os.replace(previous, target)


def find_runs(out_dir: str | Path, **match: Any) -> list[Path]:
    """Run folders under ``out_dir`` whose config matches every ``key=value``, oldest first."""
    runs = []
    for config_path in sorted(Path(out_dir).glob("runs/*/config.json")):
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if all(config.get(k) == v for k, v in match.items()):
            runs.append((config.get("created", ""), config_path.parent))
    return [path for _, path in sorted(runs)]


def latest_run(out_dir: str | Path, **match: Any) -> Path:
    runs = find_runs(out_dir, **match)
    if not runs:
        wanted = ", ".join(f"{k}={v!r}" for k, v in match.items())
        raise FileNotFoundError(f"no run with {wanted} under {out_dir}; run the notebook that trains it first")
    return runs[-1]


def load_records(out_dir: str | Path) -> pd.DataFrame:
    """Every (run, dataset) record under ``out_dir`` as one tidy DataFrame.

    A corrupted or partial record (a killed process, a hand edit) is reported with its path
    and skipped, so one bad file never hides every other result.
    """
    records = []
    for path in sorted(Path(out_dir).glob("**/runs/*/results/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or "run_id" not in record or "f1" not in record:
                raise ValueError("not a results record (no run_id or f1)")
            records.append(record)
        except (OSError, ValueError) as err:
            warnings.warn(f"skipping unreadable results record {path}: {err}", stacklevel=2)
    return pd.DataFrame(records)


def _check_no_secrets(config: dict) -> None:
    """Refuse to save anything that looks like an API key: results files get shared."""
    for key, value in _walk(config):
        leaf = key.rsplit(".", 1)[-1].lower()
        if value and leaf.endswith(("api_key", "apikey", "_token", "secret", "password")):
            raise ValueError(f"refusing to save {key!r} in a run config: secrets come from the environment")


def _walk(data: Any, prefix: str = ""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, f"{prefix}{key}.")
            yield f"{prefix}{key}", value if not isinstance(value, (dict, list)) else None


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
