import pytest

from aims_kit.scoring import metrics


def test_metrics_on_a_hand_computed_case():
    gold = ["harmful", "harmful", "harmful", "safe", "safe", "safe", "safe", "harmful"]
    pred = ["harmful", "harmful", "safe", "harmful", "safe", "safe", "safe", "safe"]
    # tp=2 fp=1 fn=2 tn=3 -> precision 2/3, recall 1/2, F1 = 2*(2/3)(1/2)/(2/3+1/2) = 4/7
    m = metrics.binary_metrics(gold, pred)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 2, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == pytest.approx(5 / 8)


def test_undefined_ratios_are_zero_not_errors():
    m = metrics.binary_metrics(["safe", "safe"], ["safe", "safe"])
    assert m["f1"] == 0 and m["precision"] == 0 and m["recall"] == 0 and m["accuracy"] == 1


def test_trivial_baselines_match_xstest_flag_everything():
    # XSTest: 200 unsafe, 250 safe -> flagging everything gives F1 = 2*200/(2*200+250) = 0.615
    gold = ["harmful"] * 200 + ["safe"] * 250
    baselines = metrics.trivial_baselines(gold)
    assert baselines["f1_flag_all"] == pytest.approx(0.6154, abs=1e-4)
    assert baselines["f1_flag_none"] == 0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        metrics.binary_metrics(["safe"], [])


def test_auprc_and_auroc_match_scikit_learn_on_a_fixed_example():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from aims_kit.scoring.metrics import auroc, average_precision, threshold_free

    gold = ["harmful", "safe", "harmful", "harmful", "safe", "safe", "harmful", "safe", "safe", "harmful"]
    scores = [0.9, 0.8, 0.8, 0.6, 0.5, 0.4, 0.4, 0.2, 0.1, 0.05]  # ties included
    y = [g == "harmful" for g in gold]
    assert average_precision(gold, scores) == pytest.approx(average_precision_score(y, scores))
    assert auroc(gold, scores) == pytest.approx(roc_auc_score(y, scores))
    # a row without P(harmful) (no readable label) is left out of the ranking, and counted
    missing = threshold_free(gold, [*scores[:-1], None])
    assert missing["p_harmful_missing"] == 1 and missing["auprc"] == pytest.approx(average_precision_score(y[:-1], scores[:-1]))
    assert missing["auroc"] == pytest.approx(roc_auc_score(y[:-1], scores[:-1]))


def test_a_missing_p_harmful_read_back_from_a_frame_as_nan_is_left_out_of_the_ranking():
    """Predictions read into a DataFrame hold a missing P(harmful) as NaN, not None: it must not reach the ranking."""
    import pandas as pd

    from aims_kit.scoring import metrics as m

    column = pd.DataFrame([{"p": 0.9}, {"p": None}, {"p": 0.2}])["p"]
    gold = ["harmful", "harmful", "safe"]
    assert m.threshold_free(gold, column)["p_harmful_missing"] == 1
    assert m.threshold_free(gold, column)["auprc"] == m.average_precision(["harmful", "safe"], [0.9, 0.2])
