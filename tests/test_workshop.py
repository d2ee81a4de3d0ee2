"""Issue 41: the teacher's guide is rendered from one named run folder, and holds no figure of its own."""

import json
import re

import pytest
from test_claims import _preds, _run

from aims_kit.core import results
from aims_kit.core.paths import REPO_DIR
from aims_kit.notebook import workshop

TEMPLATE = REPO_DIR / workshop.TEMPLATE
GUIDE = REPO_DIR / "docs" / "workshop.md"

#: What a figure looks like in prose: a decimal, a time (mm:ss), a percentage, or a duration in ms, s or min.
FIGURE = re.compile(r"(?<![\w.])(\d+\.\d+|\d+:\d\d|\d+\s?%|[1-9]\d*\s?(?:ms|s|min)\b)")


def literal_prose(template: str) -> str:
    """The template's own text: placeholders, code blocks and code spans (commands, values to type) removed."""
    text = re.sub(r"```.*?```", "", template, flags=re.S)
    text = workshop.PLACEHOLDER.sub("", text)
    return re.sub(r"`[^`]*`", "", text)


def test_the_template_holds_no_figure_of_its_own():
    """Every figure the guide states is a placeholder the run folder fills: a typed one would go stale."""
    figures = FIGURE.findall(literal_prose(TEMPLATE.read_text(encoding="utf-8")))
    assert not figures, f"figures typed into {workshop.TEMPLATE} (make each a placeholder): {figures}"


def test_the_rule_finds_a_typed_figure():
    assert FIGURE.findall(literal_prose("E4a gives +0.079 in 13:24, 48% at 222 ms; `-p x=0.5` {{ f1 a b }}")) == [
        "0.079", "13:24", "48%", "222 ms"]


def test_the_guide_is_the_template_rendered_with_the_values_of_the_run_it_names():
    """docs/workshop.md holds exactly what its template renders to with the run's recorded values: no hand edit."""
    if not workshop.values_path(GUIDE).exists():
        pytest.skip("docs/workshop.md has not been rendered from a run folder yet: "
                    "python -m aims_kit report RUN_FOLDER --workshop docs/workshop.md")
    recorded = json.loads(workshop.values_path(GUIDE).read_text(encoding="utf-8"))
    template = TEMPLATE.read_text(encoding="utf-8")
    assert set(workshop.placeholders(template)) == set(recorded["values"]), "template and values differ: regenerate the guide"
    assert GUIDE.read_text(encoding="utf-8") == workshop.render(template, recorded["values"].__getitem__)
    assert f"`{recorded['run_folder']}`" in GUIDE.read_text(encoding="utf-8")  # the guide names its run


def _folder(tmp_path):
    out = tmp_path / "run-cpu-x"
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(100), "bench:xstest": _preds(70)}, ms=300.0)
    _run(out, "sft", "label_only", datasets={"aims_test": _preds(90), "bench:xstest": _preds(80)}, ms=30.0)
    results.atomic_write_json(out / "parameters.json", {"profile": "cpu", "model": "m", "seed": 22, "max_steps": 100,
                                                        "condition_max_steps": {"intent_label": 200}})
    results.atomic_write_json(out / "status.json", {"completed": ["02_sft.ipynb"], "seconds": {"02_sft.ipynb": 718.4}})
    return out


def test_placeholders_are_filled_from_the_run_folder(tmp_path):
    out = _folder(tmp_path)
    template = ("{{ run }}: {{ profile }} seed {{seed}}; 02 took {{ time 02 }}; intent steps "
                "{{ param condition_max_steps.intent_label }}; F1 {{ f1 sft/intent_label aims_test }} "
                "at {{ flag_rate sft/intent_label aims_test }}; flag-all "
                "{{ flag_all aims_test }} ({{ harmful aims_test }} of {{ n aims_test }}); claim 1 "
                "{{ claim 1 aims_test verdict }} {{ claim 1 aims_test diff }}")
    values = workshop.workshop_values(template, out)
    text = workshop.render(template, values.__getitem__)
    assert text.startswith("run-cpu-x: cpu seed 22; 02 took 11:58; intent steps 200; F1 ")
    assert "flag-all 0.667 (60 of 120)" in text and "claim 1 *reproduced* +0.083 [" in text
    assert values["f1 sft/intent_label aims_test"] == "0.833"


def test_a_placeholder_the_run_cannot_fill_is_an_error_naming_it(tmp_path):
    out = _folder(tmp_path)
    with pytest.raises(workshop.WorkshopError, match="f1 dpo/judge aims_test.*no dpo/judge run"):
        workshop.workshop_values("{{ f1 dpo/judge aims_test }}", out)
    with pytest.raises(workshop.WorkshopError, match="unknown kind 'speed'"):
        workshop.workshop_values("{{ speed sft/label_only }}", out)
    with pytest.raises(workshop.WorkshopError, match="time 05"):
        workshop.workshop_values("{{ time 05 }}", out)


def test_write_workshop_keeps_the_values_beside_the_guide(tmp_path):
    out = _folder(tmp_path)
    template = tmp_path / "t.md"
    template.write_text("# {{ run }}\nF1 {{ f1 sft/label_only aims_test }}\n")
    guide = workshop.write_workshop(out, tmp_path / "guide.md", template)
    recorded = json.loads(workshop.values_path(guide).read_text())
    assert guide.read_text() == "# run-cpu-x\nF1 0.750\n"
    assert recorded["run_folder"] == "run-cpu-x" and recorded["values"] == {"run": "run-cpu-x", "f1 sft/label_only aims_test": "0.750"}


def test_the_guide_quotes_a_claims_notebook_table_as_the_notebook_shows_it(tmp_path):
    """02's claim table reads each cell at 95%, the headline is Holm's: the guide names the one a student sees in 02."""
    from aims_kit.evaluation import claims

    out = _folder(tmp_path)
    values = workshop.workshop_values("{{ claim 1 aims_test table_verdict }}", out)
    shown = claims.claim_table(out, 1).set_index("dataset").loc["aims_test", "verdict"]
    assert values["claim 1 aims_test table_verdict"] == f"*{shown}*"
