"""OpenAI-compatible endpoints: the one request path judges, teachers and served runs share (chat, and plain-text completions).

Standard library only (``http.client``). Each thread keeps one keep-alive connection per server
(:func:`_connection`), so a run of requests pays the TCP handshake once, not once per prompt.
The usual proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) apply as they did with
``urllib``, except to this machine's own addresses, which are always reached directly.
Every request has a timeout; a ``429`` or ``5xx`` answer, or a connection the server reset or
closed, is retried a bounded number of times with exponential back-off (``Retry-After`` is
honoured up to :data:`MAX_WAIT_S`), then fails with an :class:`EndpointError` that says what
the server last answered.

The API key is read from the environment variable the caller names, at call time, and sent as a
bearer token to the URL the caller named, and nowhere else: redirects are not followed, and no
other credential (``HF_TOKEN`` included) is ever attached. The key is never returned, logged,
stored or put in an error message.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

#: Answers that mean "try again later": rate limiting and server-side failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Retries after the first attempt (so at most ``1 + RETRIES`` requests per call).
RETRIES = 3
#: First back-off in seconds; it doubles with each retry.
BACKOFF_S = 0.5
#: Longest single wait, whatever ``Retry-After`` asks for.
MAX_WAIT_S = 10.0
#: Connection failures worth a retry: the server reset or closed a (kept-alive) connection.
#: A refused connection is not among them: nothing listens there, and waiting will not change it.
RETRY_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.RemoteDisconnected)


class EndpointError(RuntimeError):
    """The endpoint could not be reached, timed out, kept failing, or answered something that is not a chat reply."""


@dataclass(frozen=True)
class ChatReply:
    """The first choice's text and, when the server reports usage, its generated token count."""

    text: str
    completion_tokens: int | None


#: Hosts always reached directly, whatever the proxy settings say.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

_local = threading.local()


def _proxy(scheme: str, host: str):
    """The proxy (a split URL) the environment names for ``scheme`` and ``host``, or ``None``."""
    if host in LOOPBACK or urllib.request.proxy_bypass(host):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None


def _new_connection(scheme: str, netloc: str, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """A connection to ``netloc`` (through the environment's proxy, if any), the prefix its request
    paths need and the headers its requests need (a plain-HTTP proxy's credentials)."""
    target = urlsplit(f"{scheme}://{netloc}")
    proxy = _proxy(scheme, target.hostname or "")
    factory = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    if proxy is None:
        return factory(netloc, timeout=timeout), "", {}
    auth = {}
    if proxy.username:
        import base64

        token = base64.b64encode(f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()).decode()
        auth = {"Proxy-Authorization": f"Basic {token}"}
    if scheme == "https":  # a CONNECT tunnel: the proxy sees neither the request nor the key
        conn = factory(proxy.hostname, proxy.port or 8080, timeout=timeout)
        conn.set_tunnel(target.hostname, target.port or 443, headers=auth)
        return conn, "", {}
    return http.client.HTTPConnection(proxy.hostname, proxy.port or 8080, timeout=timeout), f"http://{netloc}", auth


def _connection(scheme: str, netloc: str, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """This thread's kept-alive connection to ``netloc`` (made on first use), as :func:`_new_connection` gives it."""
    pool: dict = _local.__dict__.setdefault("pool", {})
    if (scheme, netloc) not in pool:
        pool[(scheme, netloc)] = _new_connection(scheme, netloc, timeout)
    conn, prefix, extra = pool[(scheme, netloc)]
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    return conn, prefix, extra


def _drop_connection(scheme: str, netloc: str) -> None:
    """Close and forget this thread's connection (after an error or a ``Connection: close``)."""
    entry = _local.__dict__.get("pool", {}).pop((scheme, netloc), None)
    if entry is not None:
        entry[0].close()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One POST over this thread's connection: status, headers and the whole body.

    A kept-alive connection the server has meanwhile closed (its idle timeout) fails on first
    use; that request is sent again at once on a new connection, without back-off: it never
    reached the server.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(f"{url}: expected an http:// or https:// URL")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    while True:
        conn, prefix, extra = _connection(parts.scheme, parts.netloc, timeout)
        reused = conn.sock is not None
        try:
            conn.request("POST", prefix + path, body=body, headers={**headers, **extra})
            response = conn.getresponse()
            data = response.read()
        except RETRY_ERRORS:
            _drop_connection(parts.scheme, parts.netloc)
            if reused:
                continue
            raise
        except BaseException:
            _drop_connection(parts.scheme, parts.netloc)
            raise
        if response.will_close:
            _drop_connection(parts.scheme, parts.netloc)
        return response.status, response.headers, data


def _wait_s(attempt: int, retry_after: str | None, backoff: float) -> float:
    """Seconds before retry ``attempt`` (0-based): the server's ``Retry-After`` if it gives seconds, else back-off."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(MAX_WAIT_S, float(retry_after))
    return min(MAX_WAIT_S, backoff * 2 ** attempt)


def chat_reply(
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 30.0,
    max_tokens: int = 256,
    temperature: float = 0.0,
    retries: int = RETRIES,
    backoff: float = BACKOFF_S,
) -> ChatReply:
    """POST ``messages`` to ``<base_url>/chat/completions``; the reply's text and token usage.

    Retries ``429`` / ``5xx`` answers and reset connections up to ``retries`` times, waiting
    ``backoff`` seconds doubled each time; a timeout, a refused connection or a ``4xx`` answer
    fails at once.
    """
    payload = {"model": model, "temperature": temperature, "max_tokens": max_tokens, "messages": messages}
    data = _request(base_url, "chat/completions", payload, model, api_key_env=api_key_env, timeout=timeout,
                    retries=retries, backoff=backoff)
    return _parse_reply(data, f"{model} at {base_url}")


def completion_reply(
    base_url: str,
    model: str,
    prompt: str,
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 30.0,
    max_tokens: int = 256,
    temperature: float = 0.0,
    retries: int = RETRIES,
    backoff: float = BACKOFF_S,
) -> ChatReply:
    """POST plain text to ``<base_url>/completions`` (no chat template); the reply's text and token usage.

    For the plain-text prompt formats (:data:`aims_kit.datasets.prompt_formats.PLAIN_TEXT_FORMATS`):
    vLLM's OpenAI server answers it, tokenizing the prompt with its start token as its offline
    ``generate`` does. A server that serves chat only (``transformers serve``) answers 404 or 405,
    reported as an :class:`EndpointError` that says so. Retries as :func:`chat_reply`.
    """
    payload = {"model": model, "temperature": temperature, "max_tokens": max_tokens, "prompt": prompt}
    where = f"{model} at {base_url}"
    try:
        data = _request(base_url, "completions", payload, model, api_key_env=api_key_env, timeout=timeout,
                        retries=retries, backoff=backoff)
    except EndpointError as err:
        if any(f"HTTP {status}" in str(err) for status in (404, 405, 501)):
            raise EndpointError(
                f"{err}. This prompt format sends plain text with no chat template, which needs the server's "
                "/completions route; this server seems to serve chat only. Serve the model with `vllm serve` "
                "(it has /v1/completions), or evaluate it locally with `eval --model`"
            ) from None
        raise
    try:
        body = json.loads(data)
        answer = body["choices"][0]["text"]
    except (KeyError, IndexError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EndpointError(f"{where}: not a completion reply ({type(err).__name__}: {err}): {_snippet(data)}") from None
    if not isinstance(answer, str):
        raise EndpointError(f"{where}: the reply has no text")
    tokens = (body.get("usage") or {}).get("completion_tokens")
    return ChatReply(answer, tokens if isinstance(tokens, int) else None)


def _request(base_url: str, route: str, payload: dict, model: str, *, api_key_env: str, timeout: float, retries: int,
             backoff: float) -> bytes:
    """POST ``payload`` as JSON to ``<base_url>/<route>`` with the retry policy; the body of the first 2xx answer."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(api_key_env, "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{base_url.rstrip('/')}/{route}"
    where = f"{model} at {base_url}"
    last, wait = "", 0.0
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(wait)
        try:
            status, answer_headers, data = _post(url, body, headers, timeout)
        except RETRY_ERRORS as err:
            last, wait = f"{type(err).__name__}: {err}", _wait_s(attempt, None, backoff)
            continue
        except (TimeoutError, OSError, http.client.HTTPException) as err:
            raise EndpointError(f"{where}: {type(err).__name__}: {err}") from None
        if status in RETRY_STATUSES:
            last, wait = f"HTTP {status}: {_snippet(data)}", _wait_s(attempt, answer_headers.get("Retry-After"), backoff)
            continue
        if 300 <= status < 400:
            raise EndpointError(f"{where}: HTTP {status} redirect to {answer_headers.get('Location')!r} not followed "
                                "(the key is sent only to the URL you named); give the final URL")
        if status >= 400:
            raise EndpointError(f"{where}: HTTP {status}: {_snippet(data)}")
        return data
    raise EndpointError(f"{where}: gave up after {retries + 1} attempts; last: {last}")


def _snippet(data: bytes, limit: int = 200) -> str:
    """The start of an error body, as text, for a readable message."""
    text = data.decode("utf-8", errors="replace").strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def _parse_reply(data: bytes, where: str) -> ChatReply:
    """The first choice's text and token count from a chat-completion body."""
    try:
        payload = json.loads(data)
        answer = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EndpointError(f"{where}: not a chat reply ({type(err).__name__}: {err}): {_snippet(data)}") from None
    if not isinstance(answer, str):
        raise EndpointError(f"{where}: the reply has no text content")
    tokens = (payload.get("usage") or {}).get("completion_tokens")
    return ChatReply(answer, tokens if isinstance(tokens, int) else None)


def chat_completion(base_url: str, model: str, messages: list[dict[str, str]], **options) -> str:
    """The reply text of :func:`chat_reply` (judges and teachers need only the text)."""
    return chat_reply(base_url, model, messages, **options).text
