import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from aims_kit import __main__ as cli
from aims_kit import runner


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
