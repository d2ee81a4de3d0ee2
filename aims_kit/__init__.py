"""AIMS Kit: train, compare and use intent-aware LLM safety classifiers.

``from aims_kit import Classifier`` is imported on first use, so ``python -m aims_kit`` and the
light modules do not pay for torch at import time.
"""

__all__ = ["Classifier"]


def __getattr__(name: str):
    if name == "Classifier":
        from .classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'aims_kit' has no attribute {name!r}")
