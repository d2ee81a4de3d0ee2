"""Engines: the one interface every classification generates through, and the HTTP endpoint backend.

An :class:`Engine` writes answers for rendered inputs (``generate``): chat conversations, or
plain text for the prompt formats that use no chat template
(:mod:`aims_kit.datasets.prompt_formats`). Where the backend can, it reads a label-only answer from
one forward pass (``score``). Three backends implement it,
chosen explicitly by whoever builds one, never guessed from an object's attributes:
:class:`aims_kit.inference.generation.TransformersEngine` (a local model),
:class:`aims_kit.inference.vllm.VllmEngine` (vLLM on a CUDA GPU) and :class:`EndpointEngine`
(any OpenAI-compatible server). lm-evaluation-harness's ``LM`` class plays the same part there.

:class:`EndpointEngine` gives a served guard the same interface as a local run, so it is scored by :func:`aims_kit.scoring.evaluate.evaluate` into the same record, intervals and latency
columns as a local run. Requests go through the kit's one client, greedy, ``max_tokens`` = the
answer budget: a conversation to ``/chat/completions`` (:func:`aims_kit.inference.endpoints.chat_reply`),
plain text to ``/completions`` (:func:`aims_kit.inference.endpoints.completion_reply`; a server that
serves chat only refuses it with a message that says so).

Stop strings are not sent: OpenAI-compatible servers cut the stop text out of the reply, which
would remove the very label the parser reads. A trained guard ends its answer at end-of-turn.

:func:`start_server` serves an exported folder (:mod:`aims_kit.serving.export`) on this machine with
``transformers serve``; the served name is then the folder's path, so the client finds the
folder's tokenizer and context and cuts an over-long prompt before sending it (counted, as
locally). The server itself has no input limit: one 200,000-character prompt keeps a CPU busy for
minutes and every request behind it waits.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence
from urllib.parse import urlparse

from aims_kit.datasets.prompt_formats import ModelInput
from aims_kit.inference.endpoints import EndpointError, chat_reply, completion_reply



@dataclass
class Generation:
    """What every engine returns for a batch of conversations: the answers, their cost and, where
    the engine can read it, P(harmful). Defined beside :class:`Engine` (not with the transformers
    backend), so the endpoint backend and serving import no torch."""

    texts: list[str]
    new_tokens: list[int]
    seconds: float
    #: P(harmful) per row: from one forward pass (label-only scoring), or read at the step that
    #: wrote the label during greedy decoding (``None`` for a row with no readable label).
    p_harmful: list[float | None] | None = None
    #: ``generated`` (decoded text) or ``scored`` (the label's first token from one forward pass).
    method: str = "generated"


class Engine(Protocol):
    """What writes a classifier's answers: transformers, vLLM or an HTTP endpoint."""

    #: Recorded with every evaluation (``transformers``, ``vllm`` or ``endpoint``).
    backend: str

    def generate(self, conversations: Sequence[ModelInput], *, max_new_tokens: int, stop_strings: Sequence[str] = (),
                 desc: str = "") -> Generation:
        """Greedy answers, one per input (a conversation or plain text), in order, stopping at ``stop_strings`` (``desc``: progress title)."""

    def score(self, conversations: Sequence[ModelInput], *, desc: str = "") -> Generation | None:
        """A label-only answer per conversation from one forward pass, with P(harmful); ``None`` where the backend cannot."""

    def device_info(self) -> dict:
        """Where the answers were computed, for the record."""


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

    def _one(self, indexed: tuple[int, ModelInput], max_new_tokens: int):
        i, conversation = indexed
        request = completion_reply if isinstance(conversation, str) else chat_reply
        try:
            return request(self.base_url, self.model, conversation, api_key_env=self.api_key_env,
                           timeout=self.timeout, max_tokens=max_new_tokens, temperature=0.0)
        except EndpointError as err:
            raise EndpointError(f"prompt {i}: {err}") from None

    def generate(self, conversations: Sequence[ModelInput], *, max_new_tokens: int, stop_strings: Sequence[str] = (),
                 desc: str = "") -> Generation:
        """A :class:`Generation` of the replies."""

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

    def score(self, conversations: Sequence[ModelInput], *, desc: str = "") -> None:
        """No first-token probabilities over this interface: label-only answers are generated."""
        return None

    def device_info(self) -> dict:
        """Where latency was measured: the server (its hardware is not visible from here)."""
        return {"device": f"endpoint:{urlparse(self.base_url).netloc}", "dtype": "served", "torch_threads": None}


def served_folder(model: str) -> Path | None:
    """The local model folder a served name points to (``transformers serve`` / ``vllm serve`` of a folder), if any."""
    folder = Path(model).expanduser()
    return folder if (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file() else None


def served_tokenizer(model: str):
    """The served folder's tokenizer, with ``model_max_length`` set to the model's context; ``None`` for a remote name.

    With it, :func:`aims_kit.inference.generation.classifier_inputs` cuts over-long prompts before they are
    sent (counted, as for a local run) instead of handing the server a prompt it cannot hold.
    """
    folder = served_folder(model)
    if folder is None:
        return None
    from aims_kit.models.loading import load_tokenizer

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


