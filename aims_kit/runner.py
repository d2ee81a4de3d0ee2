"""Run every notebook in order through papermill into a new run folder, then write the report."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import NOTEBOOKS_DIR, outputs_dir
from .profiles import profile_parameters
from .progress import PLAIN_ENV
from .results import RESUME_ENV, atomic_write_json, new_folder, read_json


@dataclass
class NotebookFailure(Exception):
    notebook: str
    cell: int | None
    error: str

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "an unknown cell"
        return f"{self.notebook} failed in {where}: {self.error}"


def notebooks(directory: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The story's notebooks, in order: ``NN_name.ipynb``."""
    found = sorted(directory.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks named NN_*.ipynb in {directory}")
    return found


def execute(notebook: Path, output: Path, parameters: dict, *, timeout: int | None = None) -> None:
    """Execute one notebook; raise :class:`NotebookFailure` naming the cell and error."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    if "out_dir" not in declared:
        raise NotebookFailure(notebook.name, None, "its parameters cell does not declare out_dir (results would go astray)")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters={k: v for k, v in parameters.items() if k in declared},
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as err:
        raise NotebookFailure(notebook.name, err.cell_index, f"{err.ename}: {err.evalue}") from None
    except Exception as err:  # kernel died, timeout, bad notebook file
        raise NotebookFailure(notebook.name, None, f"{type(err).__name__}: {err}") from None


def run_all(
    profile: str = "cpu",
    overrides: dict | None = None,
    out: Path | None = None,
    *,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    resume: Path | None = None,
    log=print,
) -> Path:
    """Run the notebooks into ``<out>/run-<profile>-<time>-<rand>/`` and write ``report.html`` there.

    ``resume`` names an earlier run folder: its parameters are reused, notebooks that completed
    are skipped, and an interrupted training continues from its last checkpoint.
    """
    if resume is not None:
        session = Path(resume)
        parameters = read_json(session / "parameters.json")
    else:
        parameters = profile_parameters(profile, overrides)
        session = new_folder(Path(out) if out else outputs_dir(), f"run-{profile}")
        parameters["out_dir"] = str(session)
        atomic_write_json(session / "parameters.json", parameters)
    kernel_env = {PLAIN_ENV: "1", **({RESUME_ENV: "1"} if resume is not None else {})}
    with _environment(kernel_env):
        _run_notebooks(session, parameters, only, notebooks_dir, log)
    from .report import write_report

    report = write_report(session, parameters)
    log(f"Report: {report}")
    return session


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set variables the notebook kernels inherit, and restore the caller's afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _run_notebooks(session: Path, parameters: dict, only: list[str] | None, notebooks_dir: Path, log) -> None:
    status_path = session / "status.json"
    completed: list[str] = read_json(status_path)["completed"] if status_path.exists() else []
    selected = [nb for nb in notebooks(notebooks_dir) if not only or any(key in nb.name for key in only)]
    log(f"AIMS Kit: {len(selected)} notebooks, profile {parameters['profile']!r}, writing to {session}")
    started = time.perf_counter()
    for index, notebook in enumerate(selected, start=1):
        if notebook.name in completed:
            log(f"[{index}/{len(selected)}] {notebook.name} completed earlier, skipped")
            continue
        t0 = time.perf_counter()
        log(f"[{index}/{len(selected)}] {notebook.name} ...")
        execute(notebook, session / "notebooks" / notebook.name, parameters)
        completed.append(notebook.name)
        atomic_write_json(status_path, {"completed": completed})
        log(f"[{index}/{len(selected)}] {notebook.name} done in {time.perf_counter() - t0:.0f}s")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log(f"Notebooks finished in {time.perf_counter() - started:.0f}s; peak memory of a notebook kernel {peak_mb:.0f} MB")


def main_run(profile: str, overrides: dict, out: Path | None, only: list[str] | None, resume: Path | None = None) -> int:
    if resume is not None and not (Path(resume) / "parameters.json").exists():
        print(f"error: {resume} is not a run folder (no parameters.json)", file=sys.stderr)
        return 2
    try:
        run_all(profile, overrides, out, only=only, resume=resume)
    except NotebookFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0
