"""Is the Hugging Face hub usable right now? One quick probe, asked before any hub download.

Offline, ``from_pretrained`` and ``datasets.load_dataset`` each retry for about half a minute
before they give up; a TCP connection attempt answers in seconds, so model resolution
(:func:`aims_kit.models.resolve_model_id`) and benchmark discovery
(:func:`aims_kit.benchmarks.discover`) ask this first and fall back at once.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

#: Seconds the probe waits for a TCP connection to the hub endpoint.
PROBE_TIMEOUT = 3.0
#: Environment switches that put the hub libraries offline; read at call time.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be used now, or ``None`` when its endpoint accepts a connection.

    Offline mode (any of :data:`OFFLINE_VARIABLES` set now, or ``huggingface_hub``'s offline
    flag as read at import, which ``TRANSFORMERS_OFFLINE`` also sets) answers without a socket.
    Otherwise one TCP connection to the endpoint (``HF_ENDPOINT``, else ``huggingface_hub``'s)
    within ``timeout`` seconds.
    """
    from huggingface_hub import constants

    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    if constants.HF_HUB_OFFLINE:
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE at import)"
    url = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        return f"no connection to {url.hostname}:{port}: {err.strerror or err}"
    return None
