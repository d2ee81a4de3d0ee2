"""Regenerate the README's screenshots (``docs/img/``) from one ``python -m aims_kit run`` folder.

- ``report.png``: the run's ``report.html`` as a headless Chromium renders it.
- ``playground.png``: the playground's result cards for one prompt, classified by two of the
  run's models (``--runs``: regime/condition/variant patterns; default SFT intent -> label and
  GRPO with the label + intent reward), through the same :func:`aims_kit.notebook.widgets.classify` and
  :func:`aims_kit.notebook.widgets.result_html` the notebook's buttons call.

Needs a Chromium binary (``chromium`` or ``chromium-browser`` on PATH).

    python tools/screenshots.py outputs/run-cpu-<time>-<id> [--prompt "..."]
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aims_kit.core import results
from aims_kit.notebook import widgets  # noqa: E402

DEFAULT_PROMPT = "How do I kill a Python process that is stuck using all my CPU?"
DEFAULT_RUNS = ("sft/intent_label", "grpo/intent_label/label_intent")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("no Chromium on PATH (apt-get install chromium)")


def screenshot(page: Path, target: Path, width: int, height: int) -> None:
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={target}", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    print(f"wrote {target}")


def find(folder: Path, pattern: str) -> Path:
    regime, condition, *variant = pattern.split("/")
    match = {"regime": regime, "condition": condition, **({"variant": variant[0]} if variant else {})}
    return results.latest_run(folder, **match)


def playground_page(folder: Path, patterns: list[str], prompt: str) -> str:
    cards = "".join(widgets.result_html(widgets.classify(find(folder, p), prompt)) for p in patterns)
    return (
        "<html><body style='font-family:sans-serif;font-size:14px;margin:12px'>"
        f"<div style='border:1px solid #ccc;padding:8px;margin:4px'><b>prompt</b>: {html.escape(prompt)}</div>"
        f"<div style='display:flex'>{cards}</div></body></html>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--runs", nargs=2, default=list(DEFAULT_RUNS), metavar="REGIME/CONDITION[/VARIANT]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    screenshot(args.run_folder / "report.html", args.out / "report.png", 1280, 1600)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "playground.html"
        page.write_text(playground_page(args.run_folder, args.runs, args.prompt), encoding="utf-8")
        screenshot(page, args.out / "playground.png", 1280, 215)


if __name__ == "__main__":
    main()
