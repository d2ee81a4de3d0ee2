"""Run every notebook in order through papermill into a new run folder, then write the report.

While a notebook runs, its kernel's progress bars append status events to ``progress.jsonl`` in
the run folder (:mod:`aims_kit.core.progress`); :class:`LiveStatus` tails that file and redraws one
terminal line, so the terminal shows which step runs, how far it is and the latest loss.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aims_kit.core.params import UnknownParameterError, check_names
from aims_kit.core.paths import NOTEBOOKS_DIR, outputs_dir
from aims_kit.core.profiles import profile_parameters
from aims_kit.core.progress import (
    PLAIN_ENV,
    STATUS_ENV,
    format_duration,
    read_status,
    status_line,
)
from aims_kit.core.results import (
    RESUME_ENV,
    atomic_write_json,
    atomic_write_text,
    new_folder,
    read_json,
)
from aims_kit.core.threads import THREADS_ENV, describe, plan_threads
from aims_kit.notebook import doctor


class ParameterError(ValueError):
    """A run parameter the runner itself reads is invalid (named in the message)."""


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


def kernel_options() -> dict:
    """papermill / nbclient options for the kernels the runner starts.

    On POSIX systems kernels talk over IPC (Unix sockets in Jupyter's runtime folder) instead of
    TCP on localhost: ipykernel then has no reason to print its "Kernel is running over TCP
    without encryption" warning. (Over TCP the warning is about other local users being able to
    connect to the kernel's ports; it is not a sign that anything was sent off the machine.)
    Windows has no IPC transport and keeps TCP.
    """
    from traitlets.config import Config

    options: dict = {"kernel_manager_class": _runner_kernel_manager()}
    if os.name == "posix":
        options["config"] = Config({"KernelManager": {"transport": "ipc"}})
    return options


def _runner_kernel_manager():
    from jupyter_client.manager import AsyncKernelManager

    class RunnerKernelManager(AsyncKernelManager):
        """A kernel manager that does not interrupt a kernel it is shutting down.

        jupyter_client sends SIGINT before every shutdown request; when it lands while ipykernel
        waits idle, ipykernel logs "KeyboardInterrupt caught in kernel" at ERROR level, a false
        alarm in the terminal after a notebook that finished. The runner only shuts a kernel
        down once its notebook has finished or failed, so there is nothing to interrupt.
        """

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return RunnerKernelManager


#: Parameters the runner applies itself (to every kernel, or by repeating notebooks), so no
#: notebook needs to declare them.
RUNNER_PARAMETERS = ("threads", "seeds")
#: The notebooks ``seeds`` repeats, once per further seed: claim 1's SFT pair and claim 2's DPO
#: run (each DPO run continues the SFT run of its own seed). Later notebooks score every run.
SEEDED_NOTEBOOKS = ("02_sft", "03_dpo")


def seed_passes(notebook: Path, parameters: dict) -> list[tuple[str, dict]]:
    """The executions of ``notebook``: once with ``parameters``, and for a seeded notebook once more
    per further seed of ``seeds`` (its executed copy named ``NN_name-seedS.ipynb``).

    Why: one training seed per arm lets an interval cover prompt noise only; with several seeds
    the scoreboard resamples seeds and prompts (a two-level bootstrap). The seed also redraws
    the split, so each seed's runs are compared on their own test prompts.
    """
    passes = [(notebook.name, parameters)]
    if notebook.stem in SEEDED_NOTEBOOKS:
        for seed in parameters.get("seeds") or ():
            if seed != parameters.get("seed"):
                passes.append((f"{notebook.stem}-seed{seed}.ipynb", {**parameters, "seed": seed}))
    return passes


def check_overrides(overrides: dict, selected: list[Path]) -> None:
    """Refuse an override that no selected notebook declares, naming the notebooks that would take it.

    Why: papermill hands a notebook only the names its ``parameters`` cell declares, so an
    override that no selected notebook declares (``-p report_to=tensorboard`` with ``--only 07``)
    would be dropped without a word and the run would look like it used it.
    """
    import papermill as pm

    declared = {nb.name: set(pm.inspect_notebook(str(nb))) for nb in selected}
    unused = [name for name in overrides if name not in RUNNER_PARAMETERS and not any(name in names for names in declared.values())]
    if unused:
        takers = {name: [nb.stem for nb in notebooks(selected[0].parent) if name in pm.inspect_notebook(str(nb))] for name in unused}
        detail = "; ".join(f"{name}: {', '.join(who) if who else 'no notebook declares it'}" for name, who in takers.items())
        raise ParameterError(
            f"no selected notebook ({', '.join(nb.stem for nb in selected)}) uses {', '.join(unused)}, so the override "
            f"would be ignored. Notebooks that take it: {detail}"
        )


def selected_notebooks(only: list[str] | None, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``--only`` selects (every one without it), in order; a key that selects none is an error."""
    found = notebooks(notebooks_dir)
    selected = [nb for nb in found if not only or any(key in nb.name for key in only)]
    if not selected:
        raise ParameterError(f"--only {' '.join(only or [])} selects no notebook (there are: {', '.join(nb.stem for nb in found)})")
    return selected


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
            **kernel_options(),
        )
    except pm.PapermillExecutionError as err:
        raise NotebookFailure(notebook.name, err.cell_index, f"{err.ename}: {err.evalue}") from None
    except Exception as err:  # kernel died, timeout, bad notebook file
        raise NotebookFailure(notebook.name, None, f"{type(err).__name__}: {err}") from None


#: A saved widget model larger than this is dropped from the executed copy (see :func:`slim_widget_state`).
WIDGET_STATE_LIMIT = 100_000


def slim_widget_state(nb) -> int:
    """Drop saved widget models over :data:`WIDGET_STATE_LIMIT` bytes; returns how many were dropped.

    Why: a plotly ``FigureWidget`` saves the whole plotly.js bundle (about 5 MB) in its widget
    state, so the executed playground grew to megabytes, slow to open and too big for a code host
    to render. The state only replays widgets without a kernel; run live, every widget is rebuilt.
    """
    import json

    store = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = store.get("state", {})
    heavy = [key for key, model in state.items() if len(json.dumps(model)) > WIDGET_STATE_LIMIT]
    for key in heavy:
        del state[key]
    return len(heavy)


#: Terminal colour and cursor codes (a library's coloured load report), never wanted in a saved notebook.
ANSI_CODES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: A saved cell with more stream outputs than this has them merged per stream (stdout, then stderr).
MAX_STREAM_OUTPUTS = 10


def _final_state(text: str) -> str:
    """``text`` as a terminal would leave it: on each line only what the last carriage return left."""
    lines = []
    for line in text.split("\n"):
        shown = [part for part in line.split("\r") if part]
        lines.append(shown[-1] if shown else "")
    return "\n".join(lines)


def tidy_streams(nb) -> None:
    """Saved outputs as a reader needs them: each progress bar once, at its end, and no ANSI codes.

    Why: under papermill every refresh of a progress bar is saved as its own output (a training
    cell kept 60–80), and a coloured load report kept its escape codes. Run live, the notebook
    still shows the moving bars; only the executed copy is tidied.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = ANSI_CODES.sub("", out["text"])
                if merged and merged[-1].get("output_type") == "stream" and merged[-1]["name"] == out["name"]:
                    merged[-1]["text"] += out["text"]
                    continue
            merged.append(out)
        streams = [out for out in merged if out.get("output_type") == "stream"]
        if len(streams) > MAX_STREAM_OUTPUTS:
            others = [out for out in merged if out.get("output_type") != "stream"]
            by_name: dict = {}
            for out in streams:
                by_name.setdefault(out["name"], []).append(out["text"])
            merged = [_stream(name, "".join(texts)) for name, texts in by_name.items()] + others
        for out in merged:
            if out.get("output_type") == "stream":
                out["text"] = _final_state(out["text"])
        cell["outputs"] = merged


#: A progress bar's text as tqdm prints it: ``desc:  40%|####      | 4/10 [...]``.
PROGRESS_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d+")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def settle_progress_widgets(nb) -> int:
    """Replace each saved progress-bar widget by one text line of its final state; returns how many.

    Why: a library bar shown as a widget (``tqdm.auto``; the GGUF conversion's) is saved with the
    text it had when first displayed, "0% 0/272", which every viewer without a live kernel shows
    though the step finished. The widget's saved state holds where it ended; that line replaces
    the output. A bar whose state was not saved is dropped: it can only show its start.
    """
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    settled = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data and PROGRESS_TEXT.search(str(data.get("text/plain", ""))):
                settled += 1
                line = _widget_bar_text(state, data[WIDGET_VIEW].get("model_id", ""))
                if line:
                    kept.append(_stream("stderr", line + "\n"))
                continue
            kept.append(out)
        cell["outputs"] = kept
    return settled


def _widget_bar_text(state: dict, model_id: str) -> str:
    """``desc 100% 272/272 [...]`` from a tqdm widget's saved models (an HBox of label, bar and counter); '' if absent."""
    import html

    children = state.get(model_id, {}).get("state", {}).get("children", [])
    models = [state.get(str(child).removeprefix("IPY_MODEL_"), {}).get("state", {}) for child in children]
    bars = [m for m in models if "max" in m and "value" in m]
    if len(models) != 3 or not bars:
        return ""
    # tqdm writes figure spaces (U+2007) and HTML escapes into the labels; the left one ends with the percentage
    left, right = (" ".join(html.unescape(str(models[i].get("value", ""))).replace("\u2007", " ").split()) for i in (0, 2))
    if "%" not in left:
        share = bars[0]["value"] / bars[0]["max"] if bars[0]["max"] else 1.0
        left = f"{left} {share:.0%}".strip()
    return " ".join(part for part in (left, right) if part)


def _stream(name: str, text: str):
    """A new stream output."""
    import nbformat

    return nbformat.v4.new_output("stream", name=name, text=text)


def stamp_duration(executed: Path, seconds: float, profile: str) -> None:
    """End the executed notebook with a line that says how long it took; widget state slimmed and
    stream outputs tidied (atomic rewrite)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    settle_progress_widgets(nb)
    slim_widget_state(nb)
    tidy_streams(nb)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"*This notebook ran in {format_duration(seconds)} (profile `{profile}`, `python -m aims_kit run`).*"
    ))
    atomic_write_text(executed, nbformat.writes(nb))


class LiveStatus:
    """While a notebook runs, redraw one terminal line from the latest status event.

    On a terminal the line is rewritten in place twice a second (``\\r``); in a log file or a pipe
    a plain line is written when there is news, at most every ``plain_interval`` seconds (and
    at least once a minute, so a long silent step still shows the run is alive).
    """

    def __init__(self, status_path: Path, prefix: str, stream: TextIO, *, tty: bool | None = None,
                 plain_interval: float = 10.0):
        self.status_path = status_path
        self.prefix = prefix
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.plain_interval = plain_interval
        self.latest: dict | None = None
        self._open: dict[str, dict] = {}
        self._offset = status_path.stat().st_size if status_path.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aims-kit-live-status", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> LiveStatus:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def poll(self) -> bool:
        """Read new events; returns whether there were any.

        Bars nest (GRPO's training bar stays open while validation bars open and close), so the
        line shows the newest bar still open, and a "done" only once no bar is open.
        """
        events, self._offset = read_status(self.status_path, self._offset)
        for event in events:
            self._open.pop(event["desc"], None)
            if not event.get("done"):
                self._open[event["desc"]] = event
            self.latest = event
        if self._open:
            self.latest = list(self._open.values())[-1]
        return bool(events)

    def line(self) -> str:
        width = shutil.get_terminal_size((100, 20)).columns - 1 if self.tty else 160
        return status_line(self.latest, prefix=self.prefix, elapsed=time.monotonic() - self._started, width=width)

    def _loop(self) -> None:
        news, last_plain = False, time.monotonic()
        while not self._stop.wait(0.5):
            news = self.poll() or news
            if self.tty:
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
                continue
            quiet_for = time.monotonic() - last_plain
            if (news and quiet_for >= self.plain_interval) or quiet_for >= max(60.0, self.plain_interval):
                self.stream.write(self.line() + "\n")
                self.stream.flush()
                news, last_plain = False, time.monotonic()


def run_all(
    profile: str = "cpu",
    overrides: dict | None = None,
    out: Path | None = None,
    *,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    resume: Path | None = None,
    log=print,
    live: TextIO | None = None,
) -> Path:
    """Run the notebooks into ``<out>/run-<profile>-<time>-<rand>/`` and write ``report.html`` there.

    ``resume`` names an earlier run folder: its parameters are reused, notebooks that completed
    are skipped, and an interrupted training continues from its last checkpoint. ``live`` is the
    stream for the live progress line (the command line passes stdout; ``None``: no live line).
    Ends by logging the summary table of the run's results and the report's path.
    """
    if resume is not None:
        # Absolute: kernels run in the notebooks' folder, where a relative path names nothing.
        session = Path(resume).resolve()
        parameters = read_json(session / "parameters.json")
        requested = _threads_parameter(parameters)
    else:
        check_names(overrides or {})  # a misspelt name: the closest known one is named
        check_overrides(overrides or {}, selected_notebooks(only, notebooks_dir))
        parameters = profile_parameters(profile, overrides)
        requested = _threads_parameter(parameters)
        session = new_folder(Path(out).resolve() if out else outputs_dir(), f"run-{profile}")
        parameters["out_dir"] = str(session)
        atomic_write_json(session / "parameters.json", parameters)
    # Each kernel applies the parameter when it imports aims_kit (aims_kit.core.threads).
    kernel_env = {
        PLAIN_ENV: "1",
        STATUS_ENV: str(session / "progress.jsonl"),
        THREADS_ENV: str(requested),
        **({RESUME_ENV: "1"} if resume is not None else {}),
    }
    log(describe(plan_threads(requested), requested))
    with _environment(kernel_env):
        _run_notebooks(session, parameters, only, notebooks_dir, log, live)
    from aims_kit.notebook.report import run_summary, write_report

    report = write_report(session, parameters)
    log(run_summary(session))
    log(f"Report: {report}")
    return session


def _threads_parameter(parameters: dict) -> int:
    """The ``threads`` parameter (0 or absent: automatic); anything but a whole number >= 0 is an error."""
    value = parameters.get("threads", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"parameter threads={value!r}: give a whole number of threads, or 0 for automatic")
    return value


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


def _run_notebooks(session: Path, parameters: dict, only: list[str] | None, notebooks_dir: Path, log,
                   live: TextIO | None) -> None:
    status_path = session / "status.json"
    status = read_json(status_path) if status_path.exists() else {}
    completed: list[str] = status.get("completed", [])
    #: Seconds per executed notebook, kept for the results page (``report --markdown``).
    durations: dict[str, float] = status.get("seconds", {})
    # The machine those seconds were measured on (a resumed run keeps the first one's and adds its own).
    machines: list[str] = list(dict.fromkeys([*status.get("machines", []), doctor.machine()]))
    #: The machine's matmul GFLOP/s before each notebook (:func:`doctor.machine_speed`): the speed its time was taken at.
    speeds: dict[str, float] = status.get("matmul_gflops", {})
    selected = selected_notebooks(only, notebooks_dir)
    log(f"AIMS Kit: {len(selected)} notebooks, profile {parameters['profile']!r}, writing to {session}")
    started = time.perf_counter()
    passes = [(notebook, name, values) for notebook in selected for name, values in seed_passes(notebook, parameters)]
    for index, (notebook, name, values) in enumerate(passes, start=1):
        tag = f"[{index}/{len(passes)}] {name}"
        if name in completed:
            log(f"{tag} completed earlier, skipped")
            continue
        speed = doctor.machine_speed()
        t0 = time.perf_counter()
        log(f"{tag} ..." + (f" (matmul {speed:,.0f} GFLOP/s)" if speed else ""))
        output = session / "notebooks" / name
        with LiveStatus(session / "progress.jsonl", tag, live) if live else contextlib.nullcontext():
            execute(notebook, output, values)
        seconds = time.perf_counter() - t0
        stamp_duration(output, seconds, parameters["profile"])
        completed.append(name)
        durations[name] = round(seconds, 1)
        if speed:
            speeds[name] = speed
        atomic_write_json(status_path, {"completed": completed, "seconds": durations, "machines": machines, "matmul_gflops": speeds})
        log(f"{tag} done in {format_duration(seconds)}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log(f"Notebooks finished in {format_duration(time.perf_counter() - started)}; "
        f"peak memory of a notebook kernel {peak_mb:.0f} MB")


def main_run(profile: str, overrides: dict, out: Path | None, only: list[str] | None, resume: Path | None = None) -> int:
    """``python -m aims_kit run``: 0 when every notebook ran and the report was written, 1 on a failure."""
    if resume is not None and not (Path(resume) / "parameters.json").exists():
        print(f"error: {resume} is not a run folder (no parameters.json)", file=sys.stderr)
        return 2
    try:
        run_all(profile, overrides, out, only=only, resume=resume, log=_log_line, live=sys.stdout)
    except NotebookFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except (ParameterError, UnknownParameterError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _log_line(text: str) -> None:
    print(text, flush=True)
