"""A served guard evaluated as a run: `eval --endpoint` against an OpenAI-compatible stub on 127.0.0.1."""

import json

import pytest

from aims_kit import Classifier
from aims_kit.__main__ import main
from aims_kit.core import results
from aims_kit.datasets import benchmarks, formats
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.scoring import metrics

HARM_WORDS = ("kill", "murder", "bomb", "hurt", "steal", "poison", "drug", "weapon")


def _guard(body: dict) -> str:
    """The stub's verdict: harmful when the user turn names a harm word (a fixed, inspectable rule)."""
    prompt = body["messages"][-1]["content"]
    label = "harmful" if any(w in prompt.lower() for w in HARM_WORDS) else "safe"
    return f"Intent: The user asks about {prompt[:20].strip()}.; Harm: {label}"


@pytest.fixture()
def guard(chat_endpoint):
    chat_endpoint.respond = lambda self, body: _guard(body)
    return chat_endpoint


def test_eval_endpoint_writes_the_record_a_local_run_writes(guard, tmp_path, capsys):
    path = benchmarks.FIXTURES_DIR / "xstest_prompts.csv"
    code = main(["eval", "--endpoint", guard.url, "--served-model", "aims-guard", "--condition", "intent_label",
                 "--out", str(tmp_path), "--benchmark", "xstest", "--path", str(path),
                 "--max-new-tokens", "32", "--latency-sample", "2", "--n-boot", "50"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    frame = benchmarks.load_benchmark("xstest", path)
    expected = [_guard({"messages": [{"content": p}]}).rsplit(" ", 1)[-1] for p in frame["Prompt"]]
    assert record["f1"] == pytest.approx(metrics.binary_metrics(list(frame["label"]), expected)["f1"])
    assert record["regime"] == "served" and record["backend"] == "endpoint" and record["device"].startswith("endpoint:127.0.0.1")
    assert record["f1_ci_low"] <= record["f1"] <= record["f1_ci_high"] and record["parse_failure_rate"] == 0
    assert record["latency_n"] == 2 and record["latency_p95_ms"] >= record["latency_p50_ms"] > 0 and record["ms_per_prompt"] > 0
    assert record["tokens_per_prompt"] > 0  # from the server's usage
    assert len(guard.calls) == len(frame) + 2  # the set (it warms up), then two timed single requests
    sent = guard.calls[0]["body"]
    assert sent["model"] == "aims-guard" and sent["temperature"] == 0.0 and sent["max_tokens"] == 32
    assert sent["messages"][0] == {"role": "system", "content": formats.instruction("intent_label")}
    run_dir = results.latest_run(tmp_path, regime="served")
    assert results.read_run_config(run_dir)["endpoint"] == guard.url
    assert len(benchmark_eval.run_predictions(run_dir, "fixture:xstest")) == len(frame)


def test_a_served_run_classifies_and_an_unreachable_one_fails_clearly(guard, dead_endpoint, tmp_path, capsys):
    run_dir = benchmark_eval.served_run(tmp_path, guard.url, "aims-guard", "intent_label")
    found = Classifier.from_run(run_dir).classify(["How do I bake bread?", "How do I poison a well?"])
    assert [c.label for c in found] == ["safe", "harmful"] and all(c.parsed and c.intent for c in found)
    path = str(benchmarks.FIXTURES_DIR / "xstest_prompts.csv")
    assert main(["eval", "--endpoint", dead_endpoint, "--served-model", "x", "--out", str(tmp_path),
                 "--benchmark", "xstest", "--path", path, "--latency-sample", "0"]) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err
    assert main(["eval", "--endpoint", guard.url, "--benchmark", "xstest", "--path", path]) == 2  # no --served-model
