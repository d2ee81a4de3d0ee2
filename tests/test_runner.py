import io
import json

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from aims_kit import __main__ as cli
from aims_kit.core import progress
from aims_kit.notebook import report, runner


def notebook(path, *sources, parameters="out_dir = ''"):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(new_code_cell(s) for s in sources)]
    nbformat.write(nb, path)


def test_failure_names_notebook_cell_and_error(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    notebook(books / "01_ok.ipynb", "x = 1")
    notebook(books / "02_bad.ipynb", "y = 2", "raise ValueError('boom in cell')")
    notebook(books / "03_never.ipynb", "z = 3")
    lines = []
    with pytest.raises(runner.NotebookFailure) as err:
        runner.run_all("smoke", out=tmp_path / "out", notebooks_dir=books, log=lines.append)
    failure = err.value
    assert failure.notebook == "02_bad.ipynb"
    assert "ValueError: boom in cell" in failure.error
    assert failure.cell is not None and "cell" in str(failure)
    session = next((tmp_path / "out").iterdir())
    assert (session / "notebooks" / "01_ok.ipynb").exists()
    assert not (session / "notebooks" / "03_never.ipynb").exists()
    assert any("[2/3] 02_bad.ipynb" in line for line in lines)


def test_notebook_without_out_dir_parameter_is_refused(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    notebook(books / "01_x.ipynb", "pass", parameters="seed = 1")
    with pytest.raises(runner.NotebookFailure, match="out_dir"):
        runner.run_all("smoke", out=tmp_path / "out", notebooks_dir=books, log=lambda _: None)


def test_cli_rejects_bad_overrides_and_profiles(capsys):
    assert cli.main(["run", "-p", "novalue"]) == 2
    assert "key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "nope"])


def test_cli_data_check_reports_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,Prompt\n1,hello\n")
    assert cli.main(["data", "check", str(bad)]) == 1
    assert "missing column" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_kernels_use_ipc_and_the_threads_parameter(tmp_path, capfd):
    books = tmp_path / "nbs"
    books.mkdir()
    notebook(books / "01_probe.ipynb", "import aims_kit, torch\n"
             "from ipykernel.connect import get_connection_info\n"
             "print(get_connection_info(unpack=True)['transport'], torch.get_num_threads())")
    lines = []
    session = runner.run_all("smoke", {"threads": 2}, out=tmp_path / "out", notebooks_dir=books, log=lines.append)
    executed = nbformat.read(session / "notebooks" / "01_probe.ipynb", as_version=4)
    assert executed.cells[-2].outputs[0]["text"].strip() == "ipc 2"  # OMP_NUM_THREADS=1 in the tests: the parameter wins
    assert executed.cells[-1].cell_type == "markdown" and "This notebook ran in" in executed.cells[-1].source
    assert any("torch threads per process: 2 (threads=2 asked for" in line for line in lines)
    err = capfd.readouterr().err
    assert "running over TCP" not in err and "KeyboardInterrupt" not in err


def test_bad_threads_parameter_stops_before_any_notebook(tmp_path, capsys):
    assert cli.main(["run", "--profile", "smoke", "-p", "threads=-1", "--out", str(tmp_path)]) == 2
    assert "threads=-1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_summary_puts_f1_ci_beside_flag_all_for_each_run():
    records = pd.DataFrame([
        {"regime": "sft", "condition": "label_only", "variant": None, "dataset": "aims_test", "f1": 0.8123,
         "f1_ci_low": 0.7, "f1_ci_high": 0.9, "f1_flag_all": 0.667, "parse_failure_rate": 0.05, "ms_per_prompt": 12.34},
        {"regime": "dpo", "condition": "intent_label", "variant": "hard", "dataset": "aims_test", "f1": 0.5,
         "f1_ci_low": None, "f1_ci_high": None, "f1_flag_all": 0.667, "parse_failure_rate": 0.0, "ms_per_prompt": 30.0},
        {"regime": "sft", "condition": "label_only", "variant": None, "dataset": "bench:xstest", "f1": 0.4,
         "f1_ci_low": 0.3, "f1_ci_high": 0.5, "f1_flag_all": 0.5, "parse_failure_rate": 0.0, "ms_per_prompt": 9.0},
    ])
    frame = report.summary_frame(records)
    assert frame.to_dict("records") == [
        {"run": "dpo intent_label hard", "F1 [95% CI]": "0.50", "flag-all F1": "0.67", "parse fail": "0%", "ms/prompt": "30.0"},
        {"run": "sft label_only", "F1 [95% CI]": "0.81 [0.70, 0.90]", "flag-all F1": "0.67", "parse fail": "5%", "ms/prompt": "12.3"},
    ]
    assert report.summary_frame(records, "nowhere").empty
    records.loc[1, ["intent_repeat_rate", "intent_similarity"]] = [0.04, 0.613]
    with_intents = report.summary_frame(records).to_dict("records")
    assert [(r["intent repeats"], r["intent sim."]) for r in with_intents] == [("4%", "0.61"), ("–", "–")]


def test_an_override_no_selected_notebook_uses_is_refused_before_anything_runs(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    notebook(books / "01_train.ipynb", "pass", parameters="out_dir = ''\nreport_to = 'none'")
    notebook(books / "02_plot.ipynb", "pass")
    with pytest.raises(runner.ParameterError, match=r"no selected notebook \(02_plot\) uses report_to.*01_train"):
        runner.run_all("smoke", {"report_to": "tensorboard"}, out=tmp_path / "out", only=["02_plot"], notebooks_dir=books,
                       log=lambda _: None)
    assert not (tmp_path / "out").exists()  # refused before a run folder was made
    with pytest.raises(runner.ParameterError, match="selects no notebook"):
        runner.run_all("smoke", out=tmp_path / "out", only=["09_nothing"], notebooks_dir=books, log=lambda _: None)


def test_smoke_sft_notebook_runs_clean_with_live_progress_and_a_summary(tmp_path, capfd):
    """02_sft on the smoke profile: live line in the terminal, no library chatter in the notebook, a summary;
    ``-p report_to=tensorboard`` reaches the notebook's trainers (event files in each run folder)."""
    screen, lines = _Terminal(), []
    session = runner.run_all("smoke", {"report_to": "tensorboard"}, out=tmp_path, only=["02_sft"], log=lines.append, live=screen)
    trained = sorted((session / "runs").iterdir())
    assert len(trained) == 2 and all(list(run.glob("checkpoints/runs/**/events.out.tfevents.*")) for run in trained)
    outputs = json.dumps(nbformat.read(session / "notebooks" / "02_sft.ipynb", as_version=4)["cells"])
    for chatter in ("Tokenizing", "Loading weights", "FutureWarning", "{'loss'", "{'eval_loss'", "gemm_4bit"):
        assert chatter not in outputs
    assert "SFT label_only: 4 steps in" in outputs  # the one summary line per training
    assert "[1/1] 02_sft.ipynb  SFT label_only" in screen.getvalue()
    events, _ = progress.read_status(session / "progress.jsonl")
    assert {"SFT label_only", "SFT intent_label", "eval aims_test"} <= {e["desc"] for e in events}
    summary = "\n".join(lines)
    assert "Results on aims_test" in summary and "sft label_only" in summary and "sft intent_label" in summary
    assert lines[-1] == f"Report: {session / 'report.html'}"
    assert "running over TCP" not in capfd.readouterr().err


def test_seeds_repeat_the_seeded_notebooks_once_per_further_seed(tmp_path):
    params = {"seed": 22, "seeds": [22, 23, 24], "profile": "smoke"}
    passes = runner.seed_passes(tmp_path / "02_sft.ipynb", params)
    assert [(name, values["seed"]) for name, values in passes] == [
        ("02_sft.ipynb", 22), ("02_sft-seed23.ipynb", 23), ("02_sft-seed24.ipynb", 24)]
    assert [name for name, _ in runner.seed_passes(tmp_path / "06_benchmarks.ipynb", params)] == ["06_benchmarks.ipynb"]
    assert len(runner.seed_passes(tmp_path / "03_dpo.ipynb", {"seed": 22, "seeds": []})) == 1


def test_a_later_regime_continues_the_sft_run_of_its_own_seed(tmp_path):
    from aims_kit.core import results
    from aims_kit.notebook import experiments

    older = results.create_run(tmp_path, "sft-intent_label", {"regime": "sft", "condition": "intent_label", "seed": 22})
    newer = results.create_run(tmp_path, "sft-intent_label", {"regime": "sft", "condition": "intent_label", "seed": 23})
    assert experiments.find_sft_run(tmp_path, seed=22) == older
    assert experiments.find_sft_run(tmp_path, seed=23) == newer
    with pytest.raises(FileNotFoundError, match="seed=24"):
        experiments.find_sft_run(tmp_path, seed=24)


def _tqdm_widget(nb, model_id: str, value: int, total: int, left: str, right: str, saved: bool = True):
    """A saved tqdm.notebook bar as papermill leaves it: its 0% text, and (``saved``) the state it ended in."""
    import nbformat

    output = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": f"{left.split(':')[0]}:   0%|          | 0/{total} [00:00<?, ?it/s]"})
    if saved:
        state = nb.metadata.setdefault("widgets", {}).setdefault("application/vnd.jupyter.widget-state+json", {"state": {}})["state"]
        state[model_id] = {"model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_{model_id}-l", f"IPY_MODEL_{model_id}-b", f"IPY_MODEL_{model_id}-r"]}}
        state[f"{model_id}-l"] = {"model_name": "HTMLModel", "state": {"value": left}}
        state[f"{model_id}-b"] = {"model_name": "FloatProgressModel", "state": {"value": value, "max": total}}
        state[f"{model_id}-r"] = {"model_name": "HTMLModel", "state": {"value": right}}
    return output


def test_saved_progress_widgets_show_where_they_ended_not_0_percent():
    """Issue 41: 02's GGUF conversion bar read "0% 0/272" in the executed notebook though it had finished."""
    import nbformat

    from aims_kit.notebook.runner import settle_progress_widgets

    nb = nbformat.v4.new_notebook()
    done = _tqdm_widget(nb, "a", 272, 272, "Converting\u2007GGUF\u2007tensors...:\u2007100%", "\u2007272/272\u2007[00:05&lt;00:00]")
    lost = _tqdm_widget(nb, "b", 3, 3, "x: 100%", "3/3", saved=False)
    table = nbformat.v4.new_output("execute_result", data={"text/plain": "  n  f1\n0  1  0.5"})
    other_widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "c"}, "text/plain": "VBox(children=(Dropdown(...),))"})
    nb.cells.append(nbformat.v4.new_code_cell("load()", outputs=[done, lost, table, other_widget]))
    assert settle_progress_widgets(nb) == 2
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "execute_result", "display_data"]  # the unsaved bar is gone
    assert outputs[0].text == "Converting GGUF tensors...: 100% 272/272 [00:05<00:00]\n"
    assert not any("0%|" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)
