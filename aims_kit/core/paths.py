"""Where the kit writes: one ``outputs/`` folder, overridable with ``AIMS_KIT_OUTPUTS``."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The data shipped inside the package: the teaching sample, benchmark fixtures and shipped benchmarks.
DATA_DIR = PACKAGE_DIR / "data"
REPO_DIR = PACKAGE_DIR.parent
NOTEBOOKS_DIR = REPO_DIR / "notebooks"


def outputs_dir() -> Path:
    """``$AIMS_KIT_OUTPUTS``, else the checkout's ``outputs/`` (the kit is installed editable), else ``./outputs``.

    Notebooks run with their own folder as working directory, so a cwd-relative default would
    scatter results; anchoring on the checkout keeps every run in one place.
    """
    if os.environ.get("AIMS_KIT_OUTPUTS"):
        return Path(os.environ["AIMS_KIT_OUTPUTS"]).resolve()
    if NOTEBOOKS_DIR.is_dir():
        return REPO_DIR / "outputs"
    return Path.cwd() / "outputs"
