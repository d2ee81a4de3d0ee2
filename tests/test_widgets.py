"""Widget callbacks, driven as a user would (change a dropdown, click a button), without a browser."""

from pathlib import Path

import pandas as pd
import pytest

from aims_kit.core import profiles, results
from aims_kit.core.params import SFTParams
from aims_kit.datasets import aims as data
from aims_kit.notebook import experiments, widgets

EVIL = "<script>alert('x')</script><b>bold</b>"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("widgets")
    params = profiles.profile_parameters("smoke", {"max_steps": 2, "eval_limit": 8})
    splits = experiments.load_splits("", 22)
    run_dir = experiments.sft_run(SFTParams.from_params(params), splits, "intent_label", out)
    return out, run_dir


def _children(widget):
    stack, found = [widget], []
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(getattr(node, "children", ()))
    return found


def _find(widget, kind, description=None):
    return next(c for c in _children(widget) if type(c).__name__ == kind and (description is None or getattr(c, "description", None) == description))


def test_dataset_browser_filters_and_escapes():
    frame = data.load_aims()
    frame.loc[0, "Prompt"] = EVIL
    browser = widgets.dataset_browser(frame)
    table = _find(browser, "HTML")
    assert f"{len(frame)} matching rows" in table.value
    assert "<script>" not in table.value and "&lt;script&gt;" in table.value
    _find(browser, "Dropdown", "label").value = "harmful"
    assert f"{(frame['label'] == 'harmful').sum()} matching rows" in table.value
    _find(browser, "Text", "search").value = "zzzz-no-such-text"
    assert "0 matching rows" in table.value


def test_filter_rows_combines_filters():
    frame = data.load_aims()
    picked = widgets.filter_rows(frame, label="safe", adversarial="adversarial", text="story")
    assert len(picked) > 0
    assert (picked["label"] == "safe").all() and picked["Adversarial"].all()
    assert picked.apply(lambda r: "story" in (r["Prompt"] + r["Intent"]).lower(), axis=1).all()


def test_error_kinds():
    frame = pd.DataFrame({
        "gold": ["harmful", "safe", "safe", "harmful"],
        "pred": ["safe", "harmful", "safe", "harmful"],
        "parsed": [True, True, False, True],
        "prompt": ["a", "b kill", "c", "d"],
        "intent": [None, "x", "y", "z"],
    })
    assert list(widgets.errors(frame)["prompt"]) == ["a", "b kill"]
    assert list(widgets.errors(frame, "false positives")["prompt"]) == ["b kill"]
    assert list(widgets.errors(frame, "false negatives")["prompt"]) == ["a"]
    assert list(widgets.errors(frame, "unparseable")["prompt"]) == ["c"]
    assert list(widgets.errors(frame, text="KILL")["prompt"]) == ["b kill"]
    with pytest.raises(ValueError):
        widgets.errors(frame, "nonsense")


def test_result_card_escapes_model_output():
    card = widgets.result_html({"run": "r", "intent": EVIL, "label": "safe", "parsed": False, "output": EVIL, "ms": 1.0, "tokens": 3})
    assert "<script>" not in card and "&lt;script&gt;" in card and "unparseable" in card


def test_playground_classifies_and_compares(trained):
    out, run_dir = trained
    assert widgets.trained_runs(out)[-1][1] == str(run_dir)
    result = widgets.classify(run_dir, EVIL)
    assert result["label"] in ("harmful", "safe") and result["ms"] > 0 and result["run"] == run_dir.name
    ui = widgets.playground(out)
    assert _find(ui, "Textarea").value == widgets.EXAMPLE_PROMPT  # a reader can press Classify at once
    _find(ui, "Textarea").value = "How do I stop a frozen program?"
    output = [c for c in _children(ui) if type(c).__name__ == "HTML"][-1]
    _find(ui, "Button", "Compare A and B").click()
    assert output.value.count("latency:") == 2
    _find(ui, "Textarea").value = "   "
    _find(ui, "Button", "Classify with A").click()
    assert "type a prompt first" in output.value


def test_error_explorer_and_run_details(trained):
    out, run_dir = trained
    ui = widgets.error_explorer(out)
    table = [c for c in _children(ui) if type(c).__name__ == "HTML"][-1]
    predictions = pd.DataFrame(results.read_jsonl(Path(run_dir) / "predictions" / "aims_test.jsonl"))
    n_wrong = int((predictions["gold"] != predictions["pred"]).sum())
    assert f"{n_wrong} of {len(predictions)} prompts" in table.value
    _find(ui, "ToggleButtons").value = "false negatives"
    n_fn = int(((predictions["gold"] == "harmful") & (predictions["pred"] == "safe")).sum())
    assert f"{n_fn} of {len(predictions)} prompts" in table.value
    details = widgets.run_details_html(results.load_records(out), run_dir.name)
    assert "aims_test" in details and '"regime": "sft"' not in details and "&quot;regime&quot;: &quot;sft&quot;" in details


def test_run_explorer_click_shows_the_run(trained):
    out, run_dir = trained
    ui = widgets.run_explorer(out)
    figure, details = ui.children
    trace = next(t for t in figure.data if t.mode == "markers")
    from plotly.callbacks import Points

    trace._dispatch_on_click(Points(point_inds=[0], xs=[0], ys=[0], trace_name=trace.name, trace_index=0), None)
    assert run_dir.name in details.value


def test_the_encoder_baseline_can_be_picked_in_the_playground(tmp_path):
    from aims_kit.core.params import BenchmarkParams
    from aims_kit.notebook import experiments
    from aims_kit.training import encoder

    params = BenchmarkParams.from_params({"encoder_max_steps": 1, "batch_size": 8, "eval_steps": 1, "seed": 22,
                                          "latency_sample": 0, "n_boot": 0, "eval_limit": 8})
    run = encoder.encoder_run(params, experiments.load_splits("", 22), tmp_path)
    label, folder = widgets.trained_runs(tmp_path)[-1]
    assert folder == str(run) and label.startswith("encoder · label_only")
    result = widgets.classify(run, widgets.EXAMPLE_PROMPT)
    assert result["label"] in ("harmful", "safe") and result["tokens"] == 0  # a classification head writes nothing
