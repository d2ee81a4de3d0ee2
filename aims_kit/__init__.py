"""AIMS Kit: train, compare and use intent-aware LLM safety classifiers.

``from aims_kit import Classifier`` is imported on first use, so ``python -m aims_kit`` and the
light modules do not pay for torch at import time. Importing the package does set the number of
threads torch will use, from the cores this process may use (:mod:`aims_kit.core.threads`, no torch
import needed); in a notebook kernel started by ``python -m aims_kit run`` it also silences
library chatter (:func:`aims_kit.core.progress.quiet_libraries`) so executed notebooks keep what teaches.
"""

import os as _os

from aims_kit.core.progress import PLAIN_ENV as _PLAIN_ENV
from aims_kit.core.threads import configure_threads as _configure_threads

_configure_threads()
if _os.environ.get(_PLAIN_ENV):
    from aims_kit.core.progress import quiet_libraries as _quiet_libraries

    _quiet_libraries()

__all__ = ["Classifier"]


def __getattr__(name: str):
    """``from aims_kit import Classifier`` imports torch on first use only, not with the package."""
    if name == "Classifier":
        from aims_kit.serving.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'aims_kit' has no attribute {name!r}")
