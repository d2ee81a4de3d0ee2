"""Serving an exported guard on this machine: ``transformers serve`` as a child process, checked healthy.

The client side (an :class:`aims_kit.inference.engines.EndpointEngine` talking to any
OpenAI-compatible endpoint) lives in :mod:`aims_kit.inference`; this module only starts, checks
and stops a server process.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aims_kit.inference.engines import served_folder
from aims_kit.models.precision import serving_dtype

#: What ``transformers serve`` needs beyond transformers, pinned as in requirements.txt.
SERVING_PACKAGES = ("fastapi==0.165.0", "uvicorn==0.55.0", "openai==3.63.0")


def missing_serving_packages() -> list[str]:
    """Pinned requirements of ``transformers serve`` that are not installed here."""
    return [spec for spec in SERVING_PACKAGES if importlib.util.find_spec(spec.split("==")[0]) is None]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def health_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """Does ``GET /health`` answer 200 now?"""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class GuardServer:
    """A running ``transformers serve`` of one folder; stop it with :meth:`stop` (or use it as a context manager)."""

    folder: Path
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    #: The dtype its weights were loaded in (:func:`aims_kit.models.precision.serving_dtype`).
    dtype: str
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``…/v1``) to give ``eval --endpoint`` and clients."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def served_model(self) -> str:
        """The name requests must carry: the server is pinned to the folder's path."""
        return str(self.folder)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for an error message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 3.0) -> int | None:
        """Stop the server: Ctrl-C, a second Ctrl-C after ``grace_s``, then SIGKILL. Its exit code.

        Idle, ``transformers serve`` exits in about 3 s on Ctrl-C; after it has answered requests
        its graceful shutdown can wait on its generation threads for good, and uvicorn's answer to
        a second Ctrl-C is to quit at once.
        """
        if not self._stopped:
            self._stopped = True
            for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGINT, grace_s), (signal.SIGKILL, grace_s)):
                if self.process.poll() is not None:
                    break
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout=wait_s)
                except subprocess.TimeoutExpired:
                    continue
        return self.process.poll()

    def __enter__(self) -> "GuardServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(folder: str | Path, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 180.0,
                 continuous_batching: bool = False, log_path: Path | None = None) -> GuardServer:
    """Start ``transformers serve`` pinned to ``folder`` and wait until ``GET /health`` answers.

    ``port`` 0 picks a free one. The server stays in the caller's process group, so whatever
    stops the caller's group (a Ctrl-C in its terminal, a kill of the group) stops the server too;
    it runs offline (the folder is local: no hub, no update check) and without ``HF_TOKEN``, with
    its weights in the dtype local evaluation computes in (:func:`aims_kit.models.precision.serving_dtype`). Its output goes to ``log_path`` (a
    temporary file by default). A server that exits or does not answer in ``startup_timeout``
    seconds is stopped and reported with its log's end.
    """
    folder = Path(folder).resolve()
    if served_folder(str(folder)) is None:
        raise FileNotFoundError(f"{folder}: not a model folder (no config.json and tokenizer); export a run first")
    missing = missing_serving_packages()
    if missing:
        raise RuntimeError(f"transformers serve needs {', '.join(s.split('==')[0] for s in missing)}: pip install {' '.join(missing)}")
    port = port or free_port(host)
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="aims-serve-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    dtype = serving_dtype()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", host, "--port", str(port),
               "--dtype", dtype]
    if continuous_batching:
        command.append("--continuous-batching")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_UPDATE_CHECK="1", TRANSFORMERS_VERBOSITY="error")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = GuardServer(folder, host, port, process, log_path, dtype)
    deadline = time.monotonic() + startup_timeout
    try:
        while not health_ok(host, port):
            if process.poll() is not None or time.monotonic() > deadline:
                why = f"exited with code {process.returncode}" if process.poll() is not None else f"did not answer in {startup_timeout:.0f} s"
                raise RuntimeError(f"transformers serve {folder} on {host}:{port} {why}; its log ({log_path}) ends:\n{server.log_tail()}")
            time.sleep(0.25)
    except BaseException:  # a failed start, or a Ctrl-C while waiting: never leave the server behind
        server.stop()
        raise
    return server
