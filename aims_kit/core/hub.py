"""Is the Hugging Face hub usable right now? One quick probe, asked before any hub download.

Offline, ``from_pretrained`` and ``datasets.load_dataset`` each retry for about half a minute
before they give up; one short request answers in seconds, so model resolution
(:func:`aims_kit.models.loading.resolve_model_id`) and benchmark discovery
(:func:`aims_kit.datasets.benchmarks.discover`) ask this first and fall back at once.

The probe goes through ``huggingface_hub``'s own HTTP session, so it sees the hub exactly as a
download would: the same endpoint, the same offline switch, and the same proxy settings
(``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, read when the session is made). It sends no
token.
"""

from __future__ import annotations

import os

#: Seconds the probe waits for the hub endpoint to answer.
PROBE_TIMEOUT = 3.0
#: Environment switches that put the hub libraries offline; read at call time.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be used now, or ``None`` when its endpoint answers.

    Offline mode (any of :data:`OFFLINE_VARIABLES` set now, or ``huggingface_hub``'s offline
    flag as read at import, which ``TRANSFORMERS_OFFLINE`` also sets) answers without a request.
    Otherwise one ``HEAD`` of the endpoint (``HF_ENDPOINT``, else ``huggingface_hub``'s) within
    ``timeout`` seconds; any HTTP answer counts as reachable (redirects are not followed).
    """
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    if constants.HF_HUB_OFFLINE:
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE at import)"
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    try:
        get_session().head(endpoint, timeout=timeout, follow_redirects=False)
    except (httpx2.TransportError, OSError) as err:  # no connection, timeout, proxy failure, offline mode
        return f"no answer from {endpoint} within {timeout:g} s: {type(err).__name__}: {err}"
    return None
