"""Training scores the LM head at label positions only, with the same per-token log-probabilities.

The kit narrows TRL's fused head on CPU (training.common.label_positions_only): this checks on
the tiny model that the head's projection receives one row per labelled position instead of
one per position of the padded batch, that the log-probabilities (the loss) and their gradients
are unchanged, and that TRL's own decision is restored afterwards.
"""

import pytest
import torch
from run_factory import SMOKE_MODEL
from trl.trainer import utils as trl_utils

from aims_kit.models.loading import load_model
from aims_kit.training.common import label_positions_only


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
