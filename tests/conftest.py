"""Shared fixtures: a real OpenAI-compatible chat endpoint on localhost (no mocks), and one smoke run."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from aims_kit import runner


class _ChatHandler(BaseHTTPRequestHandler):
    """Answers every ``/chat/completions`` POST with ``answer`` and records each request."""

    answer = "good"
    calls: list = []
    url = ""

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"body": body, "auth": self.headers.get("Authorization")})
        content = self.respond(body)
        usage = {"completion_tokens": len(content.split())}  # whitespace words stand in for tokens
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": usage}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def respond(self, body: dict) -> str:
        """The reply; a test may replace it (``Endpoint.respond = fn``) to answer per request."""
        return type(self).answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_endpoint():
    """A chat endpoint on 127.0.0.1: set ``.answer`` (or ``.respond``), read ``.calls``, use ``.url``."""

    class Endpoint(_ChatHandler):
        calls = []

    server = HTTPServer(("127.0.0.1", 0), Endpoint)
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
