"""`python -m aims_kit export`: a merged standalone folder that plain transformers loads and that labels like the run."""

import pytest
from run_factory import SMOKE_MODEL, adapter_run

from aims_kit.__main__ import main
from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import formats
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.evaluation import runs
from aims_kit.inference import generation
from aims_kit.models import loading as models
from aims_kit.models import precision
from aims_kit.notebook import experiments
from aims_kit.serving.export import export_run


@pytest.fixture(scope="module", autouse=True)
def full_precision():
    """Token-for-token equality needs one precision on both sides: the kit evaluates in bf16 on a
    native-bf16 CPU and a plain transformers load computes in fp32, and a random tiny model's
    greedy text flips on bf16 rounding. Both sides here run in fp32."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(precision.PRECISION_ENV, "fp32")
        yield


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """An intent run evaluated on a few AIMS test rows (with intervals), as a trained run would be."""
    run_dir = adapter_run(tmp_path_factory.mktemp("export"), "intent_label")
    rows = experiments.load_splits("", 22).test.head(6)
    benchmark_eval.evaluate_loaded(runs.load_run(run_dir), rows, "aims_test", BenchmarkParams(latency_sample=0, n_boot=50))
    return run_dir


def _answers(model, tokenizer, prompts: list[str]) -> list[str]:
    conversations = [formats.prompt_messages(p, "intent_label") for p in prompts]
    return generation.generate_answers(generation.TransformersEngine(model, tokenizer), conversations, condition="intent_label", max_new_tokens=24, desc="").texts


def test_exported_folder_loads_with_plain_transformers_and_labels_like_the_run(evaluated_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "guard"
    assert main(["export", "--run", str(evaluated_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    assert (out / "generation_config.json").exists() and not list(tmp_path.glob(".guard.*"))

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and model.generation_config.do_sample is False
    recorded = benchmark_eval.run_predictions(evaluated_run, "aims_test")
    texts = _answers(model, tokenizer, list(recorded["prompt"]))
    assert texts == list(recorded["output"])
    assert [formats.parse_output(t).label_or_rule() for t in texts] == list(recorded["pred"])
    base, base_tokenizer = models.load_model(SMOKE_MODEL)
    assert _answers(base, base_tokenizer, list(recorded["prompt"])) != texts  # the adapter really is merged in


def test_model_card_and_usage_come_from_the_run(evaluated_run, tmp_path):
    out = export_run(evaluated_run, tmp_path / "guard")
    record = results.read_json(evaluated_run / "results" / "aims_test.json")
    card = (out / "README.md").read_text()
    assert f"base_model: {SMOKE_MODEL}" in card and record["run_id"] in card
    assert f"{record['f1']:.3f} [{record['f1_ci_low']:.3f}, {record['f1_ci_high']:.3f}]" in card
    assert formats.instruction("intent_label") in card and f"counts as **{formats.PARSE_FAILURE_RULE}**" in card
    assert "Intended use and limits" in card
    usage = results.read_json(out / "aims_kit.json")
    assert usage["condition"] == "intent_label" and usage["system_prompt"] == formats.instruction("intent_label")


def test_export_refuses_a_non_empty_folder_and_runs_without_adapter(evaluated_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["export", "--run", str(evaluated_run), "--out", str(taken)]) == 1
    assert "not empty" in capsys.readouterr().err and [p.name for p in taken.iterdir()] == ["keep.txt"]
    zero_shot = benchmark_eval.zero_shot_run(tmp_path, SMOKE_MODEL, "label_only")
    with pytest.raises(ValueError, match="has none"):
        export_run(zero_shot, tmp_path / "never")
    assert not (tmp_path / "never").exists()
