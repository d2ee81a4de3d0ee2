"""Reliability: concurrent runs never share a folder, OOM halves the batch, same seed same result."""

import multiprocessing
from pathlib import Path

import pytest
import torch

from aims_kit.core import profiles, results
from aims_kit.core.params import SFTParams
from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading as models
from aims_kit.notebook import experiments


def _create(out: str, queue) -> None:
    queue.put(str(results.create_run(Path(out), "sft", {"regime": "sft"})))


def test_runs_started_at_once_get_different_folders(tmp_path):
    queue = multiprocessing.get_context("spawn").Queue()
    workers = [multiprocessing.get_context("spawn").Process(target=_create, args=(str(tmp_path), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    folders = [queue.get(timeout=10) for _ in workers]
    assert len(set(folders)) == 4
    assert all(results.read_run_config(f)["run_id"] == Path(f).name for f in folders)


class _OomOverTwo:
    """Wraps a model: its forward pass (greedy decoding) and ``generate`` (sampling) raise CUDA out-of-memory
    for batches larger than two rows; ``batches`` records the size of each batch that started decoding."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _check(self, input_ids, first: bool) -> None:
        if input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        if first:
            self.batches.append(input_ids.shape[0])

    def __call__(self, input_ids, **kwargs):
        # The rows' prompt pass carries an attention mask; the shared prefix runs first without one,
        # for one row, and the decoding steps feed one token a row.
        self._check(input_ids, first=input_ids.shape[1] > 1 and "attention_mask" in kwargs)
        return self.model(input_ids=input_ids, **kwargs)

    def generate(self, input_ids, **kwargs):
        self._check(input_ids, first=True)
        return self.model.generate(input_ids=input_ids, **kwargs)


def test_out_of_memory_halves_the_batch_and_keeps_every_row(tmp_path):
    model, tokenizer = models.load_model("tiny-random", cache_dir=tmp_path)
    conversations = [formats.prompt_messages(f"prompt number {i}", "label_only") for i in range(7)]
    expected = generation.generate(model, tokenizer, conversations, max_new_tokens=3, batch_size=8, desc="")
    wrapped = _OomOverTwo(model)
    with pytest.warns(UserWarning, match="halving the batch"):
        got = generation.generate(wrapped, tokenizer, conversations, max_new_tokens=3, batch_size=8, desc="")
    assert max(wrapped.batches) <= 2 and sum(wrapped.batches) == 7
    assert got.texts == expected.texts
    sampled = _OomOverTwo(model)  # sampling decodes through model.generate: the same halving
    with pytest.warns(UserWarning, match="halving the batch"):
        generation.generate(sampled, tokenizer, conversations, max_new_tokens=3, batch_size=8, do_sample=True, desc="")
    assert max(sampled.batches) <= 2 and sum(sampled.batches) == 7


def test_same_seed_same_profile_same_metrics(tmp_path):
    params = profiles.profile_parameters("smoke", {"max_steps": 3, "eval_limit": 12, "latency_sample": 0})
    splits = experiments.load_splits("", 22)
    params = SFTParams.from_params(params)
    a = experiments.sft_run(params, splits, "label_only", tmp_path / "a")
    b = experiments.sft_run(params, splits, "label_only", tmp_path / "b")
    ra, rb = (results.read_json(r / "results" / "aims_test.json") for r in (a, b))
    for key in ("f1", "precision", "recall", "parse_failure_rate", "tokens_per_prompt", "f1_ci_low", "f1_ci_high"):
        assert ra[key] == rb[key], key
    assert [p["output"] for p in results.read_jsonl(a / "predictions" / "aims_test.jsonl")] == [
        p["output"] for p in results.read_jsonl(b / "predictions" / "aims_test.jsonl")
    ]


def test_p_harmful_is_read_at_the_step_that_wrote_the_label():
    """LabelProbability maps the parsed label back to its decoding step and reads that step's label-word logits."""
    import torch

    from aims_kit.inference.generation import LabelProbability
    from aims_kit.models.loading import load_tokenizer, resolve_model_id

    tokenizer = load_tokenizer(resolve_model_id("tiny-random"))
    reader = LabelProbability(tokenizer)
    assert reader.usable
    used = tokenizer("Intent: bake bread; Harm: harmful", add_special_tokens=False)["input_ids"]
    reader.start(len(used))
    n_harmful, n_safe = reader.n_harmful, len(reader.ids) - reader.n_harmful
    for step in range(len(used)):  # harmful words' tokens 2 logits above safe ones only at the label's step
        logits = torch.zeros(1, len(reader.ids))
        if tokenizer.decode(used[step:]).strip().startswith("harmful"):
            logits[0, :n_harmful] = 2.0
        reader.kept.setdefault(0, torch.zeros(len(used), len(reader.ids)))[step] = logits[0]
    e2 = float(torch.tensor(2.0).exp())
    assert reader.read(0, used) == pytest.approx(n_harmful * e2 / (n_harmful * e2 + n_safe))
    assert not reader.kept  # read once, then freed
    reader.kept[0] = torch.zeros(8, len(reader.ids))
    assert reader.read(0, tokenizer("no label", add_special_tokens=False)["input_ids"]) is None
