"""Issue 41: the notebooks' fixed prose says nothing their own parameters, profiles or outputs contradict.

Each test holds one kind of sentence to a rule the code can check: a suggested ``-p`` override
must be one the notebook declares and would use; the rejected DPO rows are described for every
way mining rejects; what 02 says about the ``cpu`` and ``cpu-full`` budgets is what the profiles
set; and no notebook promises a duration that a run on another CPU would contradict.
"""

import ast
import re
import shlex

import nbformat
import papermill as pm
import pytest

from aims_kit.core import params as params_module
from aims_kit.core.paths import NOTEBOOKS_DIR
from aims_kit.core.profiles import profile_parameters
from aims_kit.notebook.runner import notebooks
from aims_kit.training import dpo_pairs

NOTEBOOKS = notebooks(NOTEBOOKS_DIR)


def _markdown(path) -> str:
    return "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "markdown")


def _code(path) -> str:
    return "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")


def _value(text: str):
    """A ``-p`` value as the runner reads it: a Python / JSON literal where it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def suggested_overrides(markdown: str) -> list[dict]:
    """Every backticked suggestion with ``-p`` in ``markdown``, as ``{name: value}`` (``-p NAME=VALUE`` or ``-p NAME VALUE``)."""
    found = []
    for span in re.findall(r"`([^`]*-p [^`]*)`", markdown):
        tokens, overrides = shlex.split(span), {}
        for i, token in enumerate(tokens[:-1]):
            if token != "-p":
                continue
            given = tokens[i + 1]
            if "=" in given:
                name, value = given.split("=", 1)
            else:
                name, value = given, tokens[i + 2] if i + 2 < len(tokens) else ""
            overrides[name] = _value(value)
        found.append(overrides)
    return found


def regime_params(path, overrides: dict):
    """The notebook's typed parameters (``XParams.from_notebook``) with its defaults and ``overrides``; ``None`` without one."""
    match = re.search(r"(\w+Params)\.from_notebook", _code(path))
    if not match:
        return None
    cls = getattr(params_module, match.group(1))
    declared = pm.inspect_notebook(str(path))
    values = {name: _value(spec["default"]) for name, spec in declared.items()}
    return cls.from_params({**values, **overrides})


def test_the_suggestion_parser_reads_both_forms():
    text = "try `-p max_steps=400 -p condition_max_steps={}` or `papermill a b -p dpo_beta 0.1` and `-p 'x=[\"a\"]'`"
    assert suggested_overrides(text) == [{"max_steps": 400, "condition_max_steps": {}}, {"dpo_beta": 0.1}, {"x": ["a"]}]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_suggested_override_is_declared_and_used(path):
    """02 once suggested ``-p max_steps=400`` for the intent condition, whose steps ``condition_max_steps`` sets."""
    declared = set(pm.inspect_notebook(str(path)))
    for overrides in suggested_overrides(_markdown(path)):
        assert set(overrides) <= declared, f"{path.stem} suggests {sorted(set(overrides) - declared)}, which it does not declare"
        typed = regime_params(path, overrides)
        if typed is None:
            continue
        ignored = {name: typed.replaced_by(name) for name in overrides if typed.replaced_by(name)}
        assert not ignored, (f"{path.stem} suggests {overrides}, but with these values {ignored} "
                             "(name: the parameter used instead) — the override would change nothing")


def test_the_rule_catches_an_override_the_notebook_would_ignore():
    path = NOTEBOOKS_DIR / "02_sft.ipynb"
    assert regime_params(path, {"max_steps": 400}).replaced_by("max_steps") == "condition_max_steps"
    assert regime_params(path, {"max_steps": 400, "condition_max_steps": {}}).replaced_by("max_steps") is None
    assert regime_params(NOTEBOOKS_DIR / "03_dpo.ipynb", {"learning_rate": 1e-4}).replaced_by("learning_rate") == "dpo_learning_rate"
    assert regime_params(NOTEBOOKS_DIR / "04_distill.ipynb", {"max_steps": 10}).replaced_by("max_steps") == "distill_max_steps"


def test_03_describes_every_way_a_sample_is_rejected():
    """A judge-variant reject (``judge_bad``) carries the gold label: 'the model labels it wrongly' is not the whole story."""
    text = _markdown(NOTEBOOKS_DIR / "03_dpo.ipynb")
    for source in dpo_pairs.REJECT_SOURCES:
        assert f"`{source}`" in text, f"03 does not say what a `{source}` reject is"


def test_what_02_says_of_the_cpu_profiles_is_what_they_set():
    text = _markdown(NOTEBOOKS_DIR / "02_sft.ipynb")
    cpu, full = profile_parameters("cpu"), profile_parameters("cpu-full")
    assert "`cpu-full` gives the intent target more" not in text
    assert "The `cpu` and `cpu-full` profiles train the same steps per condition" in text
    assert (cpu["max_steps"], cpu["condition_max_steps"]) == (full["max_steps"], full["condition_max_steps"])
    assert "`cpu-full` validates more often" in text and full["eval_steps"] < cpu["eval_steps"]


#: A duration stated as a figure ("a few minutes", "1 to 25 minutes", "about an hour"): what a run on
#: another CPU contradicts. Times are stamped on each executed notebook and rendered into the guide.
DURATION = re.compile(r"\b(?:a few|\d+(?:\s*(?:to|–|-)\s*\d+)?)\s+(?:minutes?|hours?|seconds?)\b|\babout an hour\b", re.I)


def test_the_notebooks_promise_no_duration_a_run_would_contradict():
    """The box at the top of 02–06 once said "a few minutes" beside 11:58, 17:14 and 12:30."""
    assert DURATION.findall("for a few minutes on two cores; 1 to 25 minutes; about an hour; GPU hours; 8 GPUs") == [
        "a few minutes", "1 to 25 minutes", "about an hour"]
    for path in NOTEBOOKS:
        found = DURATION.findall(_markdown(path))
        assert not found, f"{path.stem} promises {found}: state no duration (the run stamps its own time)"


#: Paragraphs each notebook repeats on purpose, so that it can be opened alone: the box on the offline default.
SHARED_BOXES = ("> **The offline default.**",)


def test_no_long_paragraph_is_repeated_word_for_word_across_notebooks():
    """A rule explained once (02's verdict paragraph) and pointed to elsewhere: a copied paragraph goes stale in one place."""
    seen: dict[str, str] = {}
    for path in NOTEBOOKS:
        for paragraph in _markdown(path).split("\n\n"):
            text = paragraph.strip()
            if len(text) < 200 or text.startswith(SHARED_BOXES):
                continue
            assert text not in seen, f"{path.name} repeats a paragraph of {seen[text]}: {text[:80]}…"
            seen[text] = path.name
