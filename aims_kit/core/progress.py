"""Progress that reads well in JupyterLab, a terminal and a papermill log alike.

Under ``python -m aims_kit run`` a notebook kernel's output is only seen once the notebook has
finished. So the kit's bars there do two things: they write sparse plain text into the executed
notebook, and they append compact status events (one JSON object per line) to a file the runner
names in :data:`STATUS_ENV`. The runner tails that file and redraws one terminal line from the
latest event (:func:`status_line`): which step runs, a step counter with rate and ETA, the loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

#: Set by ``python -m aims_kit run`` so executed notebooks hold a few text lines, not widget floods.
PLAIN_ENV = "AIMS_KIT_PLAIN_PROGRESS"
#: Set by ``python -m aims_kit run``: the file the kit's bars append status events to.
STATUS_ENV = "AIMS_KIT_STATUS_FILE"
#: Seconds between two status events of one bar (its first and last event are always written).
STATUS_INTERVAL_S = 1.0


def progress_bar(total: int, *, desc: str, unit: str = "it"):
    """A tqdm bar to ``update(n)``: a widget in JupyterLab, sparse plain text (every 30 s) under the runner.

    Under the runner the bar also reports to the runner's terminal line (see the module docstring).
    An empty ``desc`` means no bar (timed single requests would otherwise print one each).
    """
    if not desc:
        return tqdm(total=total, disable=True)
    if not os.environ.get(PLAIN_ENV):
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(total=total, desc=desc, unit=unit)
    # ``delay``: a plain bar first prints after 30 s, so a saved notebook keeps no "0%" line from a
    # bar that was about to move (a short one prints nothing; the runner's line still shows it).
    status = os.environ.get(STATUS_ENV)
    if status:
        return ReportingBar(Path(status), total=total, desc=desc, unit=unit, mininterval=30, delay=30, ascii=True)
    return tqdm(total=total, desc=desc, unit=unit, mininterval=30, delay=30, ascii=True)


class ReportingBar(tqdm):
    """A plain tqdm whose updates, postfix and close also become status events (at most one a second)."""

    def __init__(self, status_path: Path, **kwargs):
        self.status_path = status_path
        self._reported_at = -math.inf
        self._postfix_values: dict | str = {}
        super().__init__(**kwargs)
        self.report(force=True)

    def update(self, n=1):
        shown = super().update(n)
        self.report()
        return shown

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        self._postfix_values = {**(ordered_dict or {}), **kwargs}
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)
        self.report()

    def set_postfix_str(self, s="", refresh=True):
        self._postfix_values = str(s)
        super().set_postfix_str(s, refresh=refresh)
        self.report()

    def close(self):
        if not self.disable:
            self.report(force=True, done=True)
        super().close()

    def report(self, *, force: bool = False, done: bool = False) -> None:
        """Write a status event unless one went out less than :data:`STATUS_INTERVAL_S` ago."""
        now = time.monotonic()
        if not force and now - self._reported_at < STATUS_INTERVAL_S:
            return
        self._reported_at = now
        elapsed = self._time() - self.start_t
        write_status(self.status_path, {
            "desc": self.desc.rstrip(": "), "n": self.n, "total": self.total, "unit": self.unit,
            "rate": self.n / elapsed if self.n and elapsed > 0 else None, "postfix": self._postfix_values, "done": done,
        })


def write_status(path: Path, event: dict) -> None:
    """Append one status event as a JSON line.

    One ``write`` of one short line to a file opened for appending: the runner never reads half
    an event from a kernel (it also skips a line it cannot parse yet). A failure to report must
    never fail the notebook, so it only warns.
    """
    line = json.dumps({"t": time.time(), **event}, default=str) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError as err:
        warnings.warn(f"cannot write progress status to {path}: {err}", stacklevel=2)


def read_status(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events appended to ``path`` since byte ``offset``; returns them and the next offset.

    A trailing line without its newline is left for the next call (its writer is mid-line).
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = []
    for raw in chunk[:end].splitlines():
        try:
            events.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return events, offset + end


def format_duration(seconds: float) -> str:
    """``42s``, ``3:05`` or ``1:02:03``: short enough for a status line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _postfix_text(postfix: dict | str) -> str:
    """The latest losses / rewards, short: ``loss 0.512 eval_loss 0.61``."""
    if isinstance(postfix, str):
        return postfix
    parts = []
    for key, value in postfix.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


def status_line(event: dict | None, *, prefix: str, elapsed: float, width: int = 100) -> str:
    """One terminal line for the latest status event: ``prefix · desc n/total unit rate ETA loss (elapsed)``.

    With no event yet (kernel starting, data loading) the line says the notebook is running.
    """
    if event is None:
        return f"{prefix}  running ({format_duration(elapsed)})"[:width]
    if event.get("done"):
        return f"{prefix}  {event['desc']} done ({format_duration(elapsed)})"[:width]
    n, total, unit, rate = event.get("n", 0), event.get("total"), event.get("unit", "it"), event.get("rate")
    counter = f"{n}/{total} {unit}" if total else f"{n} {unit}"
    parts = [f"{prefix}  {event['desc']}", counter]
    if rate:
        parts.append(f"{rate:.2f} {unit}/s" if rate < 10 else f"{rate:.0f} {unit}/s")
        if total and total > n:
            parts.append(f"ETA {format_duration((total - n) / rate)}")
    post = _postfix_text(event.get("postfix") or {})
    if post:
        parts.append(post)
    parts.append(f"({format_duration(elapsed)})")
    text = "  ".join(parts)
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


#: Known, harmless messages of the pinned stack, by logger: why each may be dropped.
_HARMLESS_LOGS = {
    # bitsandbytes looks for an optional CPU 4-bit kernel on import; the kit never quantises on CPU.
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",
    # Checkpoints are then ordered by step number, which is what resuming needs anyway.
    "transformers.trainer_utils": "mtime may not be reliable",
}
#: Deprecations raised inside the pinned libraries themselves (not by kit code), by message.
_LIBRARY_DEPRECATIONS = [
    # transformers 5.24 renamed the property; peft/trl still read the old name on every model load.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
]


class _DropMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_libraries() -> None:
    """Silence library chatter in the kit's runs; keep the kit's own bars, tables and figures.

    Drops the ``datasets`` map bars ("Tokenizing train dataset: 0%"), transformers' own bars
    ("Loading weights", "Writing model shards"; hub download bars are left alone), the known
    deprecation warnings the pinned libraries raise against themselves, and a few known harmless
    log lines. Idempotent; the package calls it where models train and, under the runner, when
    a kernel first imports ``aims_kit``.
    """
    for category, message in _LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, start in _HARMLESS_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(start))
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when datasets is imported
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    from transformers.utils import logging as hf_logging

    hf_logging.set_tqdm_hook(_no_bar)


def _no_bar(factory, args, kwargs):
    """transformers' tqdm hook: every bar it makes is created disabled."""
    return factory(*args, **{**kwargs, "disable": True})
