"""The chat client against a real HTTP server on 127.0.0.1: retries with back-off, their bound, kept-alive connections, where the key goes."""

import time

import pytest

from aims_kit.inference.endpoints import EndpointError, chat_reply
from aims_kit.inference.engines import EndpointEngine

MESSAGES = [{"role": "user", "content": "hello"}]


def test_rate_limits_and_server_errors_are_retried_with_growing_waits(chat_endpoint):
    chat_endpoint.answer = "fine"
    chat_endpoint.failures = [429, 503]
    start = time.perf_counter()
    reply = chat_reply(chat_endpoint.url, "m", MESSAGES, backoff=0.05)
    assert reply.text == "fine" and len(chat_endpoint.calls) == 3
    assert time.perf_counter() - start >= 0.05 + 0.1  # waited backoff, then twice backoff


def test_the_client_gives_up_after_its_bound_with_what_the_server_last_said(chat_endpoint):
    chat_endpoint.failures = [503] * 10
    with pytest.raises(EndpointError, match=r"gave up after 3 attempts; last: HTTP 503: .*try again later"):
        chat_reply(chat_endpoint.url, "m", MESSAGES, retries=2, backoff=0.01)
    assert len(chat_endpoint.calls) == 3


def test_a_client_error_is_not_retried(chat_endpoint):
    chat_endpoint.failures = [400]
    with pytest.raises(EndpointError, match="HTTP 400"):
        chat_reply(chat_endpoint.url, "m", MESSAGES, backoff=0.01)
    assert len(chat_endpoint.calls) == 1


def test_requests_reuse_one_kept_alive_connection_per_thread(chat_endpoint):
    for _ in range(3):
        chat_reply(chat_endpoint.url, "m", MESSAGES)
    assert len({call["port"] for call in chat_endpoint.calls}) == 1
    engine = EndpointEngine(chat_endpoint.url, "m", concurrency=2)
    for _ in range(2):
        engine.generate([MESSAGES] * 6, max_new_tokens=4)
    engine_ports = {call["port"] for call in chat_endpoint.calls[3:]}
    assert len(chat_endpoint.calls) == 15 and len(engine_ports) <= 2  # two threads, one connection each, across calls


def test_a_connection_the_server_closed_while_idle_is_replaced_at_once(chat_endpoint):
    chat_endpoint.drop_idle = True
    start = time.perf_counter()
    for _ in range(3):
        assert chat_reply(chat_endpoint.url, "m", MESSAGES, backoff=1.0).text == "good"
    assert time.perf_counter() - start < 1.0  # no back-off: the stale connection never reached the server
    assert len(chat_endpoint.calls) == 3 and len({call["port"] for call in chat_endpoint.calls}) == 3


def test_the_key_goes_only_where_it_was_named(chat_endpoint, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_reply(chat_endpoint.url, "m", MESSAGES)
    assert chat_endpoint.calls[-1]["auth"] is None  # no key named: nothing sent, and never the hub token
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-456")
    chat_reply(chat_endpoint.url, "m", MESSAGES)
    assert chat_endpoint.calls[-1]["auth"] == "Bearer sk-test-456"
    chat_endpoint.failures = [307]
    with pytest.raises(EndpointError, match="redirect") as err:
        chat_reply(chat_endpoint.url, "m", MESSAGES)
    assert len(chat_endpoint.calls) == 3 and "sk-test" not in str(err.value)  # not followed, key not echoed


def test_a_refused_connection_fails_at_once(dead_endpoint):
    start = time.perf_counter()
    with pytest.raises(EndpointError, match="127.0.0.1:9"):
        chat_reply(dead_endpoint, "m", MESSAGES, timeout=2)
    assert time.perf_counter() - start < 1.0  # nothing listens there: no back-off


def test_the_environment_proxy_is_used_except_for_this_machine(chat_endpoint, monkeypatch):
    port = chat_endpoint.url.split(":")[2].split("/")[0]
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "ALL_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: using it would fail
    assert chat_reply(chat_endpoint.url, "m", MESSAGES).text == "good"  # loopback: reached directly
    monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{port}")  # the stub stands in for the proxy
    assert chat_reply("http://api.invalid/v1", "m", MESSAGES, retries=0).text == "good"
    assert chat_endpoint.calls[-1]["path"] == "http://api.invalid/v1/chat/completions"  # absolute form, as to a proxy
    assert chat_endpoint.calls[-1]["proxy_auth"] == "Basic dXNlcjpwdw=="
