"""Training scores the LM head at label positions only, in one projection, with the same per-token log-probabilities.

The kit narrows TRL's fused head on CPU (training.lm_head.label_positions_only): this checks on
the tiny model that the head's projection receives one row per labelled position instead of
one per position of the padded batch, that the log-probabilities (the loss) and their gradients
are unchanged, and that TRL's own decision is restored afterwards. The kit's plain head
(training.lm_head.PlainLogProbs) must answer every output TRL's tiled head answers, with the
same gradients, and its scores taken a block of rows at a time (training.lm_head.LabelScores)
must equal, bit for bit, the same ops over the whole logits.
"""

import pytest
import torch
from run_factory import SMOKE_MODEL
from trl.trainer import utils as trl_utils

from aims_kit.models.loading import load_model
from aims_kit.training import lm_head
from aims_kit.training.lm_head import cpu_lm_head, label_positions_only


@pytest.fixture(scope="module")
def fused_model():
    model, _ = load_model(SMOKE_MODEL)
    trl_utils.add_fused_lm_head(model)
    return model


@pytest.fixture
def projected_rows(monkeypatch):
    """How many hidden-state rows each call of the fused head projects through the vocabulary."""
    rows: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    return rows


def _scores(model, input_ids, labels):
    model.zero_grad()
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grad = model.get_output_embeddings().weight.grad.clone()
    return out.log_probs.detach(), out.loss.detach(), grad


def test_only_labelled_positions_are_projected_and_scores_are_unchanged(fused_model, projected_rows):
    torch.manual_seed(0)
    input_ids = torch.randint(0, fused_model.config.vocab_size, (3, 12))
    labels = torch.full_like(input_ids, -100)
    labels[0, 9:] = input_ids[0, 9:]  # three answer tokens in row 0, one in row 1, none in row 2
    labels[1, 11:] = input_ids[1, 11:]

    every_position = _scores(fused_model, input_ids, labels)
    with label_positions_only():
        label_positions = _scores(fused_model, input_ids, labels)

    shifted_labels = int((labels[:, 1:] != -100).sum())
    assert projected_rows == [3 * 11, shifted_labels] and shifted_labels == 4
    for plain, narrowed in zip(every_position, label_positions):
        torch.testing.assert_close(narrowed, plain)


def test_trl_decides_again_after_training(fused_model, projected_rows):
    input_ids = torch.arange(8).reshape(1, 8)
    labels = input_ids.clone()
    labels[0, :6] = -100
    with label_positions_only():
        pass
    fused_model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    assert projected_rows == [7]


OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


@pytest.mark.parametrize("dtype, temperature, bias, scale", [
    (torch.float32, 1.0, False, 1.0),
    (torch.bfloat16, 0.7, True, 1.0),   # bf16 autocast, as the kit trains on a CPU with native bf16
    (torch.float32, 1.3, True, 0.5),    # a model that scales its logits (e.g. Granite's logit_scale)
])
def test_the_plain_head_answers_what_the_tiled_head_answers(dtype, temperature, bias, scale):
    torch.manual_seed(1)
    hidden = torch.randn(40, 16)
    weight, bias_ = torch.randn(300, 16) * 0.5, (torch.randn(300) if bias else None)
    targets = torch.randint(0, 300, (40,))
    targets[0] = int((hidden[0] @ weight.T + (0 if bias_ is None else bias_)).argmax())  # one top-1 hit at least
    tiled = trl_utils._ChunkedLogProbFunction

    def run(head):
        leaf = hidden.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            # a chunk of 128 words: the tiled head folds three tiles, the plain head projects once
            out = head.apply(leaf, weight, bias_, targets, temperature, 128, None, scale, OUTPUTS)
        (-(out[0].sum()) + 0.1 * out[1].sum()).backward()  # the entropy's gradient as well as the log-probabilities'
        return out, leaf.grad

    (tiled_out, tiled_grad), (plain_out, plain_grad) = run(tiled), run(lm_head.PlainLogProbs(tiled))
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    for name, a, b in zip(OUTPUTS, tiled_out, plain_out):
        if name == "is_top1":
            assert torch.equal(a, b) and bool(b.any()), name
        else:
            torch.testing.assert_close(b, a, **tolerance, msg=name)
    torch.testing.assert_close(plain_grad, tiled_grad, **tolerance)


def test_the_kit_head_scores_a_model_as_trl_does_and_trl_gets_its_head_back(fused_model):
    torch.manual_seed(0)
    input_ids = torch.randint(0, fused_model.config.vocab_size, (3, 12))
    labels = torch.full_like(input_ids, -100)
    labels[:, 8:] = input_ids[:, 8:]
    tiled = trl_utils._ChunkedLogProbFunction
    with label_positions_only():
        expected = _scores(fused_model, input_ids, labels)
    with cpu_lm_head():
        assert isinstance(trl_utils._ChunkedLogProbFunction, lm_head.PlainLogProbs)
        kit = _scores(fused_model, input_ids, labels)
    assert trl_utils._ChunkedLogProbFunction is tiled
    for a, b in zip(expected, kit):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def _whole_tensor_scores(logits, targets, scale, temperature):
    """The plain head as torch ops over the whole logits (the kit's head until 2026-12-08), for autograd to differentiate."""
    z = logits.float() * scale / temperature
    log_p = torch.log_softmax(z, dim=-1)
    return (log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1),
            torch.logsumexp(2 * log_p, dim=-1), z.mean(-1), z.argmax(-1) == targets)


@pytest.mark.parametrize("dtype, scale, temperature", [
    (torch.bfloat16, 1.0, 1.0),   # the kit's SFT, DPO and distillation
    (torch.bfloat16, 1.0, 1.2),   # GRPO's rollout temperature
    (torch.float32, 0.5, 1.3),
])
def test_scores_taken_a_block_of_rows_at_a_time_equal_the_whole_tensors_bit_for_bit(monkeypatch, dtype, scale, temperature):
    torch.manual_seed(2)
    vocab = 300
    logits = (torch.randn(40, vocab) * 4).to(dtype)
    targets = torch.randint(0, vocab, (40,))
    weights = torch.linspace(0.5, 1.5, 40)
    # blocks of 3 rows: thirteen full blocks and a last one of a single row
    monkeypatch.setattr(lm_head, "PLAIN_HEAD_BLOCK_BYTES", 3 * 4 * vocab + 5)

    def run(score, entropy_weight):
        leaf = logits.clone().requires_grad_()
        out = score(leaf, targets, scale, temperature)
        (-(out[0] * weights).sum() + entropy_weight * out[1].sum()).backward()
        return out, leaf.grad

    whole, whole_grad = run(_whole_tensor_scores, 0.0)
    blocks, blocks_grad = run(lambda *args: lm_head.LabelScores.apply(*args, OUTPUTS), 0.0)
    for name, a, b in zip(OUTPUTS, whole, blocks):
        assert torch.equal(a, b), name
    assert torch.equal(whole_grad, blocks_grad) and bool(blocks_grad.ne(0).all())
    # an entropy that takes a gradient too: its derivative in closed form, equal to autograd's to rounding
    torch.testing.assert_close(run(lambda *args: lm_head.LabelScores.apply(*args, OUTPUTS), 0.3)[1],
                               run(_whole_tensor_scores, 0.3)[1], rtol=1e-5, atol=1e-6)


def test_logits_too_large_to_hold_go_to_trls_tiles(monkeypatch):
    calls = []

    class Tiled:
        @staticmethod
        def apply(*args):
            calls.append(args[0].shape[0])
            return (None,) * 5

    monkeypatch.setattr(lm_head, "PLAIN_HEAD_MAX_LOGITS", 100 * 300 - 1)
    head = lm_head.PlainLogProbs(Tiled)
    head.apply(torch.randn(100, 8), torch.randn(300, 8), None, torch.zeros(100, dtype=torch.long), 1.0, 128)
    assert calls == [100]
    out = head.apply(torch.randn(99, 8), torch.randn(300, 8), None, torch.zeros(99, dtype=torch.long), 1.0, 128)
    assert calls == [100] and out[0].shape == (99,)
    # soft-capped logits (Gemma 2's) are left to TRL's head at any size
    head.apply(torch.randn(5, 8), torch.randn(300, 8), None, torch.zeros(5, dtype=torch.long), 1.0, 128, 30.0)
    assert calls == [100, 5]
