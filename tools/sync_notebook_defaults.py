"""Make every notebook's ``parameters`` cell default to the ``cpu`` profile's values.

A notebook opened in JupyterLab runs with the values written in its parameters cell, while
``python -m aims_kit run`` passes the profile through papermill. Keeping the two equal means a
student who presses "run all" gets what the main job gets. Comments on each line are kept.
``tests/test_notebooks.py`` fails when the two drift apart.

Usage: python tools/sync_notebook_defaults.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aims_kit.core.profiles import PROFILES  # noqa: E402

ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<pad>\s*=\s*)(?P<value>.*?)(?P<comment>\s+#.*)?$")


def python_literal(value) -> str:
    """The value as a Python literal, strings in double quotes as the notebooks write them."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    return repr(value)


def sync_source(source: str, defaults: dict) -> str:
    lines = []
    for line in source.splitlines():
        match = ASSIGNMENT.match(line)
        if match and match["name"] in defaults:
            comment = match["comment"] or ""
            line = f"{match['name']}{match['pad']}{python_literal(defaults[match['name']])}{comment}"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    defaults = {key: value for key, value in PROFILES["cpu"].items() if key != "profile"}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if "parameters" in cell.metadata.get("tags", []):
                synced = sync_source(cell.source, defaults)
                if synced != cell.source:
                    cell.source = synced
                    nbformat.write(notebook, path)
                    print(f"updated {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
