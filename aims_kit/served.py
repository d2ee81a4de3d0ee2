"""A served model (``transformers serve``, vLLM, or any OpenAI-compatible endpoint) as an evaluation engine.

:class:`EndpointEngine` has the generation interface evaluation uses for vLLM, so a served guard
is scored by :func:`aims_kit.evaluation.evaluate` into the same record, intervals and latency
columns as a local run. Requests go through the kit's one chat client
(:func:`aims_kit.endpoints.chat_reply`), greedy, ``max_tokens`` = the answer budget.

Stop strings are not sent: OpenAI-compatible servers cut the stop text out of the reply, which
would remove the very label the parser reads. A trained guard ends its answer at end-of-turn.

:func:`start_server` serves an exported folder (:mod:`aims_kit.export`) on this machine with
``transformers serve``; the served name is then the folder's path, so the client finds the
folder's tokenizer and context and cuts an over-long prompt before sending it (counted, as
locally). The server itself has no input limit: one 200,000-character prompt keeps a CPU busy for
minutes and every request behind it waits.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from .endpoints import EndpointError, chat_reply

#: What ``transformers serve`` needs beyond transformers, pinned as in requirements.txt.
SERVING_PACKAGES = ("fastapi==0.165.0", "uvicorn==0.55.0", "openai==3.63.0")


class EndpointEngine:
    """Generates through ``<base_url>/chat/completions`` with ``concurrency`` requests in flight.

    Throughput (``Generation.seconds``) is the wall clock of the whole set sent concurrently, as
    a batched local run measures it; one conversation per call gives single-request latency and
    goes from the calling thread, over its kept-alive connection. Token counts come from the
    server's ``usage`` (0 where it reports none).
    """

    backend = "endpoint"

    def __init__(self, base_url: str, model: str, *, concurrency: int = 16, timeout: float = 120.0, api_key_env: str = "OPENAI_API_KEY"):
        self.base_url, self.model = base_url, model
        self.concurrency, self.timeout, self.api_key_env = max(1, concurrency), timeout, api_key_env
        self._pool: ThreadPoolExecutor | None = None  # kept, so its threads keep their connections

    def _one(self, indexed: tuple[int, list[dict]], max_new_tokens: int):
        i, conversation = indexed
        try:
            return chat_reply(self.base_url, self.model, conversation, api_key_env=self.api_key_env,
                              timeout=self.timeout, max_tokens=max_new_tokens, temperature=0.0)
        except EndpointError as err:
            raise EndpointError(f"prompt {i}: {err}") from None

    def generate(self, conversations: Sequence[list[dict]], *, max_new_tokens: int, stop_strings: Sequence[str] = ()):
        """A :class:`aims_kit.generation.Generation` of the replies (imported here: serving alone needs no torch)."""
        from .generation import Generation

        start = time.perf_counter()
        if len(conversations) == 1:
            replies = [self._one((0, conversations[0]), max_new_tokens)]
        else:
            self._pool = self._pool or ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="endpoint")
            replies = list(self._pool.map(lambda item: self._one(item, max_new_tokens), enumerate(conversations)))
        return Generation(
            texts=[r.text.strip() for r in replies],
            new_tokens=[r.completion_tokens or 0 for r in replies],
            seconds=time.perf_counter() - start,
        )

    def device_info(self) -> dict:
        """Where latency was measured: the server (its hardware is not visible from here)."""
        return {"device": f"endpoint:{urlparse(self.base_url).netloc}", "dtype": "served", "torch_threads": None}


def served_folder(model: str) -> Path | None:
    """The local model folder a served name points to (``transformers serve`` / ``vllm serve`` of a folder), if any."""
    folder = Path(model).expanduser()
    return folder if (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file() else None


def served_tokenizer(model: str):
    """The served folder's tokenizer, with ``model_max_length`` set to the model's context; ``None`` for a remote name.

    With it, :func:`aims_kit.generation.classifier_inputs` cuts over-long prompts before they are
    sent (counted, as for a local run) instead of handing the server a prompt it cannot hold.
    """
    folder = served_folder(model)
    if folder is None:
        return None
    from .models import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    context = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    if isinstance(context, int) and context > 0:
        tokenizer.model_max_length = context
    return tokenizer


def served_condition(model: str) -> str | None:
    """The output format an exported folder was trained on (its ``aims_kit.json``), if the served name is one."""
    folder = served_folder(model)
    usage = folder / "aims_kit.json" if folder else None
    return json.loads(usage.read_text())["condition"] if usage and usage.is_file() else None


# --- serving an exported folder on this machine ---------------------------------------------


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
    it runs offline (the folder is local: no hub, no update check) and without ``HF_TOKEN``. Its output goes to ``log_path`` (a
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
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", host, "--port", str(port)]
    if continuous_batching:
        command.append("--continuous-batching")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_UPDATE_CHECK="1", TRANSFORMERS_VERBOSITY="error")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = GuardServer(folder, host, port, process, log_path)
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
