"""The hub probe goes through huggingface_hub's session: its proxy settings apply, and an endpoint that never answers is unreachable within the timeout."""

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aims_kit.core import hub


def test_the_probe_reaches_the_hub_through_the_configured_proxy():
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server API)
            seen.append(self.path)  # a proxy is asked for the absolute URL
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    env.update(HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=f"http://127.0.0.1:{proxy.server_port}", HF_HUB_OFFLINE="0")
    try:
        probe = subprocess.run([sys.executable, "-c", "from aims_kit.core import hub; print(hub.unreachable(timeout=5))"],
                               env=env, capture_output=True, text=True, timeout=120)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert probe.stdout.strip() == "None", probe.stderr[-2000:]
    assert seen and seen[0].startswith("http://hub.invalid")


def test_an_endpoint_that_never_answers_is_unreachable_within_the_timeout(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.perf_counter()
        why = hub.unreachable(timeout=1.0)
    assert why is not None and "within 1 s" in why and time.perf_counter() - start < 5
