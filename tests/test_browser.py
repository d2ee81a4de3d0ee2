"""End to end in a real browser: JupyterLab runs 01_explore_data and its widget responds; the
report opens offline and draws the Pareto plot; adversarial text is shown, never executed.

Uses Debian's chromium (installed by .ci/run) driven by Playwright. Skipped, saying why, only
where no browser can be installed.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from aims_kit.core import paths
from aims_kit.datasets import aims as data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium); browser tests skipped"
)
EVIL = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _screenshot_dir() -> Path:
    folder = paths.outputs_dir() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_report_opens_offline_and_draws_the_pareto_plot(browser, smoke_session, tmp_path):
    session = tmp_path / "session"
    shutil.copytree(smoke_session, session)
    # an adversarial string where the report shows model-controlled text
    record_path = next(session.glob("runs/*/results/aims_test.json"))
    record = json.loads(record_path.read_text())
    record["model"] = EVIL
    record_path.write_text(json.dumps(record))
    from aims_kit.notebook.report import write_report

    report = write_report(session, {"note": EVIL})
    context = browser.new_context(offline=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_selector("#pareto .main-svg", timeout=30_000)
    n_traces = page.evaluate("document.getElementById('pareto').data.length")
    n_points = page.locator("#pareto .scatterlayer .point").count()
    assert n_traces >= 2 and n_points >= 2
    assert page.evaluate("window.__pwned") is None
    assert EVIL in page.inner_text("body")  # shown as text
    assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
    page.screenshot(path=str(_screenshot_dir() / "report.png"), full_page=True)
    context.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def jupyterlab(tmp_path):
    """JupyterLab on localhost serving a copy of 01_explore_data pointed at data with a <script> prompt."""
    import papermill as pm

    frame = data.read_table(None)[0]
    frame.loc[(frame["Annotator Harm"] != data.FLAG).idxmax(), "Prompt"] = EVIL
    evil_csv = tmp_path / "evil.csv"
    frame.to_csv(evil_csv, index=False)
    root = tmp_path / "lab"
    root.mkdir()
    pm.execute_notebook(
        str(paths.NOTEBOOKS_DIR / "01_explore_data.ipynb"), str(root / "01_explore_data.ipynb"),
        parameters={"data_source": str(evil_csv), "out_dir": str(tmp_path / "out")}, prepare_only=True,
    )
    port, token = _free_port(), "aims-test-token"
    env = {**os.environ, "AIMS_KIT_OUTPUTS": str(tmp_path / "outputs"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    yield f"{base}/lab/tree/01_explore_data.ipynb?token={token}"
    server.terminate()
    server.wait(timeout=30)


def test_jupyterlab_runs_the_notebook_and_the_browser_widget_responds(browser, jupyterlab):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(jupyterlab)
    page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    page.wait_for_function("document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    try:
        page.wait_for_selector(".widget-dropdown select", state="attached", timeout=180_000)
    except Exception:
        page.screenshot(path=str(_screenshot_dir() / "jupyterlab_failure.png"), full_page=True)
        raise
    table = page.locator(".widget-html-content", has_text="matching rows").last
    table.wait_for(state="attached", timeout=30_000)
    table.scroll_into_view_if_needed()
    before = table.inner_text()
    label = page.locator(".widget-dropdown select").first
    label.scroll_into_view_if_needed()
    label.select_option("harmful")
    page.wait_for_function(
        "before => [...document.querySelectorAll('.widget-html-content')].some(e => e.innerText.includes('matching rows') && e.innerText !== before)",
        arg=before, timeout=30_000,
    )
    assert page.evaluate("window.__pwned") is None
    label.select_option("all")
    page.locator(".widget-html-content", has_text="<script>window.__pwned").first.wait_for(state="attached", timeout=30_000)
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(_screenshot_dir() / "jupyterlab_01_explore_data.png"))
    page.close()
