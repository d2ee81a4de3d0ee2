"""Interrupted work resumes: a killed training continues from its checkpoint, a run folder finishes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from aims_kit.core import results
from aims_kit.notebook import runner

TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aims_kit.core import profiles
    from aims_kit.core.params import SFTParams
    from aims_kit.notebook import experiments
    params = SFTParams.from_params(profiles.profile_parameters("smoke", {"max_steps": 12, "eval_steps": 2, "eval_limit": 16}))
    splits = experiments.load_splits("", 22)
    print(experiments.sft_run(params, splits, "intent_label", Path(sys.argv[1])), flush=True)
    """
)


def _train(out, env_extra=None, kill_after_checkpoint=None):
    env = {**os.environ, **(env_extra or {})}
    process = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    if kill_after_checkpoint is None:
        stdout, _ = process.communicate(timeout=600)
        assert process.returncode == 0
        return stdout.strip().splitlines()[-1]
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob(f"runs/*/checkpoints/{kill_after_checkpoint}/trainer_state.json")):
        assert process.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint finish writing its files
    process.send_signal(signal.SIGKILL)
    process.wait()
    return None


def _outputs(run_dir):
    return [(p["id"], p["output"]) for p in results.read_jsonl(run_dir / "predictions" / "aims_test.jsonl")]


def test_killed_training_resumes_to_the_same_result(tmp_path):
    straight = Path(_train(tmp_path / "a"))  # uninterrupted, same seed
    _train(tmp_path / "b", kill_after_checkpoint="checkpoint-6")
    killed = next((tmp_path / "b").glob("runs/*"))
    assert not (killed / "adapter").exists(), "the kill came too late to test resuming"
    resumed = _train(tmp_path / "b", env_extra={results.RESUME_ENV: "1"})
    assert resumed.endswith(killed.name), "resume must reuse the interrupted run folder"
    log = json.loads((killed / "train_log.json").read_text())
    assert max(h["step"] for h in log) == 12
    assert _outputs(Path(resumed)) == _outputs(straight)


def _notebook(path, source):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell("out_dir = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(source)]
    nbformat.write(nb, path)


def test_runner_resume_skips_completed_notebooks(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    counter = tmp_path / "count.txt"
    marker = tmp_path / "second-attempt"
    _notebook(books / "01_count.ipynb", f"open({str(counter)!r}, 'a').write('x')")
    _notebook(books / "02_flaky.ipynb", f"import os\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close()\n    raise RuntimeError('interrupted')")
    try:
        runner.run_all("smoke", out=tmp_path / "out", notebooks_dir=books, log=lambda _: None)
    except runner.NotebookFailure:
        pass
    session = next((tmp_path / "out").iterdir())
    lines = []
    runner.run_all(notebooks_dir=books, resume=session, log=lines.append)
    assert counter.read_text() == "x", "the completed notebook ran again"
    assert any("01_count.ipynb completed earlier, skipped" in line for line in lines)
    status = json.loads((session / "status.json").read_text())
    assert status["completed"] == ["01_count.ipynb", "02_flaky.ipynb"]
    # the machine's speed before each notebook: the first attempt's for 01, the resumed one's for 02
    assert set(status["matmul_gflops"]) == {"01_count.ipynb", "02_flaky.ipynb"} and min(status["matmul_gflops"].values()) > 0
    assert (session / "report.html").exists()


def test_a_run_folder_named_relative_to_here_reaches_the_kernels_whole(tmp_path, monkeypatch):
    """Kernels run in the notebooks' folder: a relative ``--resume`` or ``--out`` must reach them absolute,
    or their progress events (the live line, the status file) go nowhere."""
    books = tmp_path / "nbs"
    books.mkdir()
    seen = tmp_path / "status-path.txt"
    _notebook(books / "01_where.ipynb",
              f"import os\nopen({str(seen)!r}, 'w').write(os.environ[{runner.STATUS_ENV!r}])")
    monkeypatch.chdir(tmp_path)
    runner.run_all("smoke", out=Path("out"), notebooks_dir=books, log=lambda _: None)
    session = next((tmp_path / "out").iterdir())
    assert seen.read_text() == str(session / "progress.jsonl")
    seen.unlink()
    (session / "status.json").unlink()  # as if interrupted before the notebook completed
    runner.run_all(notebooks_dir=books, resume=Path("out") / session.name, log=lambda _: None)
    assert seen.read_text() == str(session / "progress.jsonl")
