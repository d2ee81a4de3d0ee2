"""A notebook opened in JupyterLab defaults to what `python -m aims_kit run` passes it (the cpu profile)."""

import ast

import papermill as pm

from aims_kit.core import profiles
from aims_kit.notebook import runner


def test_parameters_cells_default_to_the_cpu_profile():
    cpu = profiles.PROFILES["cpu"]
    drift = []
    for path in runner.notebooks():
        for name, declared in pm.inspect_notebook(str(path)).items():
            if name in cpu and ast.literal_eval(declared["default"]) != cpu[name]:
                drift.append(f"{path.name}: {name} = {declared['default']} but the cpu profile has {cpu[name]!r}")
    assert not drift, "run tools/sync_notebook_defaults.py:\n" + "\n".join(drift)


def test_training_notebooks_declare_the_lora_layers_they_pass_on():
    for name in ("02_sft", "04_distill", "05_grpo"):
        path = next(p for p in runner.notebooks() if p.stem == name)
        assert "lora_layers" in pm.inspect_notebook(str(path)), path.name
