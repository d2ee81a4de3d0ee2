"""A served model (vLLM's OpenAI-compatible server, or any such endpoint) as an evaluation engine.

:class:`EndpointEngine` has the generation interface evaluation uses for vLLM, so a served guard
is scored by :func:`aims_kit.evaluation.evaluate` into the same record, intervals and latency
columns as a local run. Requests go through the kit's one chat client
(:func:`aims_kit.endpoints.chat_reply`), greedy, ``max_tokens`` = the answer budget.

Stop strings are not sent: OpenAI-compatible servers cut the stop text out of the reply, which
would remove the very label the parser reads. A trained guard ends its answer at end-of-turn.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence
from urllib.parse import urlparse

from .endpoints import EndpointError, chat_reply
from .generation import Generation


class EndpointEngine:
    """Generates through ``<base_url>/chat/completions`` with ``concurrency`` requests in flight.

    Throughput (``Generation.seconds``) is the wall clock of the whole set sent concurrently, as
    a batched local run measures it; one conversation per call gives single-request latency.
    Token counts come from the server's ``usage`` (0 where it reports none).
    """

    backend = "endpoint"

    def __init__(self, base_url: str, model: str, *, concurrency: int = 16, timeout: float = 120.0, api_key_env: str = "OPENAI_API_KEY"):
        self.base_url, self.model = base_url, model
        self.concurrency, self.timeout, self.api_key_env = max(1, concurrency), timeout, api_key_env

    def _one(self, indexed: tuple[int, list[dict]], max_new_tokens: int):
        i, conversation = indexed
        try:
            return chat_reply(self.base_url, self.model, conversation, api_key_env=self.api_key_env,
                              timeout=self.timeout, max_tokens=max_new_tokens, temperature=0.0)
        except EndpointError as err:
            raise EndpointError(f"prompt {i}: {err}") from None

    def generate(self, conversations: Sequence[list[dict]], *, max_new_tokens: int, stop_strings: Sequence[str] = ()) -> Generation:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(conversations)))) as pool:
            replies = list(pool.map(lambda item: self._one(item, max_new_tokens), enumerate(conversations)))
        return Generation(
            texts=[r.text.strip() for r in replies],
            new_tokens=[r.completion_tokens or 0 for r in replies],
            seconds=time.perf_counter() - start,
        )

    def device_info(self) -> dict:
        """Where latency was measured: the server (its hardware is not visible from here)."""
        return {"device": f"endpoint:{urlparse(self.base_url).netloc}", "dtype": "served", "torch_threads": None}
