"""OpenAI-compatible chat endpoints: the one request function judges and teachers share.

Standard library only (``urllib``), with a timeout on every call. The API key is read from the
environment variable named by the caller at call time and sent as a bearer token; it is never
returned, logged or stored.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass


class EndpointError(RuntimeError):
    """The endpoint could not be reached, timed out, or answered something that is not a chat reply."""


@dataclass(frozen=True)
class ChatReply:
    """The first choice's text and, when the server reports usage, its generated token count."""

    text: str
    completion_tokens: int | None


def chat_reply(
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 30.0,
    max_tokens: int = 256,
    temperature: float = 0.0,
) -> ChatReply:
    """POST ``messages`` to ``<base_url>/chat/completions``; the reply's text and token usage."""
    body = json.dumps({
        "model": model,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "messages": messages,
    }).encode()
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(api_key_env, "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{base_url.rstrip('/')}/chat/completions"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        answer = payload["choices"][0]["message"]["content"]
    except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as err:
        raise EndpointError(f"{model} at {base_url}: {type(err).__name__}: {err}") from None
    if not isinstance(answer, str):
        raise EndpointError(f"{model} at {base_url}: the reply has no text content")
    tokens = (payload.get("usage") or {}).get("completion_tokens")
    return ChatReply(answer, tokens if isinstance(tokens, int) else None)


def chat_completion(base_url: str, model: str, messages: list[dict[str, str]], **options) -> str:
    """The reply text of :func:`chat_reply` (judges and teachers need only the text)."""
    return chat_reply(base_url, model, messages, **options).text
