"""Live progress: the events kernels write, the line the runner draws from them, quiet libraries."""

import io
import json
import logging
import time
import warnings

import pytest

from aims_kit.core import progress
from aims_kit.notebook.runner import LiveStatus
from aims_kit.training.common import training_summary


@pytest.fixture()
def status_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PLAIN_ENV, "1")
    monkeypatch.setenv(progress.STATUS_ENV, str(path))
    return path


def test_bar_under_the_runner_reports_sparse_events_with_postfix_and_end(status_file):
    bar = progress.progress_bar(200, desc="SFT intent_label", unit="step")
    for _ in range(200):  # far faster than one event a second
        bar.update(1)
    bar.set_postfix({"loss": 0.5123}, refresh=False)
    bar.close()
    events, offset = progress.read_status(status_file)
    assert offset == status_file.stat().st_size
    assert events[0]["n"] == 0 and events[0]["total"] == 200 and events[0]["desc"] == "SFT intent_label"
    assert events[-1]["done"] and events[-1]["n"] == 200 and events[-1]["postfix"] == {"loss": 0.5123}
    assert len(events) < 10  # throttled, not one per update


def test_bar_without_desc_reports_nothing(status_file):
    bar = progress.progress_bar(3, desc="")
    bar.update(3)
    bar.close()
    assert not status_file.exists()


def test_read_status_leaves_a_half_written_line_for_later(tmp_path):
    path = tmp_path / "progress.jsonl"
    path.write_text(json.dumps({"desc": "a", "n": 1}) + "\n" + '{"desc": "b", "n"')
    events, offset = progress.read_status(path)
    assert [e["desc"] for e in events] == ["a"]
    with path.open("a") as handle:
        handle.write(': 2}\n')
    more, _ = progress.read_status(path, offset)
    assert [e["n"] for e in more] == [2]
    assert progress.read_status(tmp_path / "missing.jsonl", 5) == ([], 5)


def test_status_line_shows_step_counter_rate_eta_and_loss():
    event = {"desc": "SFT label_only", "n": 50, "total": 200, "unit": "step", "rate": 2.5,
             "postfix": {"loss": 0.51234, "eval_loss": 0.6}, "done": False}
    line = progress.status_line(event, prefix="[2/8] 02_sft.ipynb", elapsed=125, width=200)
    assert line.startswith("[2/8] 02_sft.ipynb  SFT label_only  50/200 step  2.50 step/s  ETA 1:00")
    assert "loss 0.5123" in line and "eval_loss 0.6" in line and line.endswith("(2:05)")
    assert len(progress.status_line(event, prefix="x", elapsed=1, width=40)) == 40
    assert "running (7s)" in progress.status_line(None, prefix="[1/8] 01", elapsed=7)
    assert "eval aims_test done" in progress.status_line({**event, "desc": "eval aims_test", "done": True}, prefix="p", elapsed=1)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_status_redraws_one_terminal_line_from_new_events(tmp_path):
    path = tmp_path / "progress.jsonl"
    path.write_text(json.dumps({"desc": "from an earlier notebook", "n": 1, "total": 2}) + "\n")
    screen = _Terminal()
    with LiveStatus(path, "[3/8] 03_dpo.ipynb", screen):
        progress.write_status(path, {"desc": "sampling", "n": 12, "total": 96, "unit": "prompt", "rate": 4.0, "postfix": {}, "done": False})
        time.sleep(1.3)
    drawn = screen.getvalue()
    assert "\n" not in drawn and drawn.count("\r") >= 2
    assert "[3/8] 03_dpo.ipynb  sampling  12/96 prompt  4.00 prompt/s  ETA 21s" in drawn
    assert "earlier notebook" not in drawn
    assert drawn.endswith("\r\x1b[K")  # the line is cleared for the runner's next log line


def test_live_status_writes_plain_lines_when_not_a_terminal(tmp_path):
    path = tmp_path / "progress.jsonl"
    log = io.StringIO()
    with LiveStatus(path, "[5/8] 05_grpo.ipynb", log, plain_interval=0.2):
        progress.write_status(path, {"desc": "GRPO label_only", "n": 3, "total": 16, "unit": "step", "rate": 1.0, "postfix": {"reward": 0.25}, "done": False})
        time.sleep(1.3)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 1 <= len(lines) <= 3  # once there is news, not a flood
    assert "GRPO label_only  3/16 step" in lines[0] and "reward 0.25" in lines[0]


def test_training_summary_is_one_line_with_losses():
    history = [{"loss": 2.0, "step": 2}, {"eval_loss": 1.5, "step": 2}, {"loss": 1.0, "step": 4}, {"eval_loss": 1.7, "step": 4}]
    line = training_summary("SFT label_only", history, steps=4, seconds=75)
    assert line == "SFT label_only: 4 steps in 1:15; train loss 2 -> 1; best val loss 1.5 (step 2)"


def test_quiet_libraries_drops_known_chatter_and_keeps_the_rest():
    import datasets

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress.quiet_libraries()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("something else changed", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else changed"]
    assert datasets.is_progress_bar_enabled() is False
    from transformers.utils import logging as hf_logging

    bar = hf_logging.tqdm(range(3), desc="Loading weights")
    assert bar.disable is True
    # Listen on transformers' library logger itself: what reaches stderr or the root logger
    # depends on handlers and propagation that earlier tests may have changed.
    kept: list[str] = []
    listener = logging.Handler()
    listener.emit = lambda record: kept.append(record.getMessage())
    library = logging.getLogger("transformers")
    library.addHandler(listener)
    try:
        hf_logging.get_logger("transformers.trainer_utils").warning("mtime may not be reliable on this filesystem")
        hf_logging.get_logger("transformers.trainer_utils").warning("a real problem")
    finally:
        library.removeHandler(listener)
    assert kept == ["a real problem"]


def test_live_status_shows_the_open_outer_bar_when_a_nested_bar_ends(tmp_path):
    path = tmp_path / "progress.jsonl"
    live = LiveStatus(path, "[5/8] 05_grpo.ipynb", io.StringIO())
    step = {"desc": "GRPO label_only", "n": 2, "total": 16, "unit": "step", "rate": 1.0, "postfix": {}, "done": False}
    progress.write_status(path, step)
    progress.write_status(path, {"desc": "eval aims_val", "n": 0, "total": 24, "unit": "prompt", "rate": None, "postfix": {}, "done": False})
    live.poll()
    assert "eval aims_val  0/24" in live.line()
    progress.write_status(path, {"desc": "eval aims_val", "n": 24, "total": 24, "unit": "prompt", "rate": 90.0, "postfix": {}, "done": True})
    live.poll()
    assert "GRPO label_only  2/16 step" in live.line()
    progress.write_status(path, {**step, "n": 16, "done": True})
    live.poll()
    assert "GRPO label_only done" in live.line()


def test_a_plain_bar_that_ends_quickly_leaves_no_zero_percent_line(status_file, capsys):
    """Under the runner a bar prints nothing for its first 30 s: a saved notebook keeps no "0%" of a bar that ended
    (issue 41: 02's validation bars read "0/126" in the executed notebook); the runner's line still got its events."""
    bar = progress.progress_bar(126, desc="eval val", unit="prompt")
    bar.update(126)
    bar.close()
    assert "0%" not in capsys.readouterr().err
    events, _ = progress.read_status(status_file)
    assert events[-1]["done"] and events[-1]["n"] == 126
