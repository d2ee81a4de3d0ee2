"""Shared fixtures: a real OpenAI-compatible chat endpoint on localhost (no mocks), one smoke run, and one batch of
encoded intent prompts for the decoding tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aims_kit.notebook import runner


class _ChatHandler(BaseHTTPRequestHandler):
    """Answers every ``/chat/completions`` (and ``/completions``) POST with ``answer`` and records each request.

    HTTP/1.1 with keep-alive, like a real server; ``failures`` lists statuses to answer first
    (``[429, 503]``: the next two requests get those, with a JSON error body), consumed in order.
    Each call records the client's port: requests over one kept-alive connection share it.
    ``drop_idle`` closes every connection after its answer without saying so, as a server whose
    keep-alive timeout has passed does.
    """

    protocol_version = "HTTP/1.1"
    answer = "good"
    calls: list = []
    failures: list = []
    drop_idle = False
    url = ""

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.calls.append({"body": body, "auth": self.headers.get("Authorization"), "port": self.client_address[1],
                          "path": self.path, "proxy_auth": self.headers.get("Proxy-Authorization")})
        if cls.failures:
            self._send(cls.failures.pop(0), json.dumps({"error": {"message": "try again later"}}).encode())
            return
        content = self.respond(body)
        usage = {"completion_tokens": len(content.split())}  # whitespace words stand in for tokens
        # ``/completions`` (plain text, no chat template) answers with ``text``, as vLLM's server does
        choice = {"message": {"role": "assistant", "content": content}} if "messages" in body else {"text": content}
        payload = json.dumps({"choices": [choice], "usage": usage}).encode()
        self._send(200, payload)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = self.close_connection or type(self).drop_idle

    def respond(self, body: dict) -> str:
        """The reply; a test may replace it (``Endpoint.respond = fn``) to answer per request."""
        return type(self).answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_endpoint():
    """A chat endpoint on 127.0.0.1: set ``.answer`` (or ``.respond``, ``.failures``), read ``.calls``, use ``.url``."""

    class Endpoint(_ChatHandler):
        calls = []
        failures = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.daemon_threads = True
    Endpoint.url = f"http://127.0.0.1:{server.server_port}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Endpoint
    server.shutdown()
    server.server_close()


@pytest.fixture()
def dead_endpoint():
    """An endpoint URL nothing listens on (the discard port): an unreachable judge."""
    return "http://127.0.0.1:9/v1"


@pytest.fixture(scope="session")
def smoke_session(tmp_path_factory):
    """One papermill run of every notebook on the smoke profile, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("smoke")
    return runner.run_all("smoke", out=out, log=lambda _: None)


@pytest.fixture(scope="module")
def intent_batch():
    """The smoke model ready for inference and six AIMS test prompts encoded for intent → label:
    (model, tokenizer, token ids, end-of-turn ids, pad id)."""
    from run_factory import SMOKE_MODEL

    from aims_kit.datasets import formats
    from aims_kit.inference import generation
    from aims_kit.models import loading, precision
    from aims_kit.notebook import experiments

    model, tokenizer = loading.load_model(SMOKE_MODEL)
    model = precision.prepare_for_inference(model)
    prompts = list(experiments.load_splits("", 22).test["Prompt"][:6])
    ids = generation.encode_inputs(tokenizer, [formats.prompt_messages(p, "intent_label") for p in prompts])
    return model, tokenizer, ids, generation._eos_ids(model, tokenizer), tokenizer.pad_token_id
