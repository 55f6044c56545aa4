"""The fine-tuning heads' metrics and split scores (keras_bert_min.task_metrics) against SciPy's
and NumPy's definitions: Pearson's r (`scipy.stats.pearsonr`, `np.corrcoef`), Spearman's rho
(`scipy.stats.spearmanr`) and average ranks (`scipy.stats.rankdata`)."""

import keras
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bert_min.task_metrics import (PearsonCorrelation, average_ranks, classifier_metrics,
                                         regression_scores)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_streamed_pearson_is_the_correlation_of_the_whole_split(batch_size):
    rng = np.random.default_rng(0)
    targets = rng.normal(3.0, 2.0, 100)
    predictions = 0.7 * targets + rng.normal(0, 1.0, 100) + 1000.0  # a large offset
    metric = PearsonCorrelation()
    for start in range(0, 100, batch_size):
        metric.update_state(targets[start:start + batch_size],
                            predictions[start:start + batch_size, None])
    expected = scipy.stats.pearsonr(targets, predictions).statistic
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-4)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_keras_pearson_is_not_the_split_correlation():
    """Why the metric is ours: Keras' averages per-batch correlations."""
    targets = np.array([0.0, 1.0, 10.0, 11.0])
    predictions = np.array([1.0, 0.0, 11.0, 10.0])
    ours, theirs = PearsonCorrelation(), keras.metrics.PearsonCorrelation(axis=0)
    for start in (0, 2):
        ours.update_state(targets[start:start + 2], predictions[start:start + 2])
        theirs.update_state(targets[start:start + 2], predictions[start:start + 2])
    assert float(ours.result()) == pytest.approx(np.corrcoef(targets, predictions)[0, 1],
                                                 rel=1e-5)
    assert float(theirs.result()) == pytest.approx(-1.0)  # each batch anti-correlated


def test_pearson_of_a_constant_is_zero():
    metric = PearsonCorrelation()
    metric.update_state([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert float(metric.result()) == 0.0


def test_regression_metrics_compile_into_a_regressor():
    names = [metric.name for metric in classifier_metrics(1)]
    assert names == ["mae", "pearson"]
    assert [metric.name for metric in classifier_metrics(3)] == ["accuracy"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=30))
def test_average_ranks_are_scipys(values):
    np.testing.assert_allclose(average_ranks(values), scipy.stats.rankdata(values))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(-10, 10)), min_size=3, max_size=40))
def test_regression_scores_are_scipys(pairs):
    targets, predictions = (np.array(column, dtype="float64") for column in zip(*pairs))
    scores = regression_scores(targets, predictions)
    if np.ptp(targets) == 0 or np.ptp(predictions) == 0:
        assert scores["pearson"] == 0.0
        return
    np.testing.assert_allclose(scores["pearson"],
                               scipy.stats.pearsonr(targets, predictions).statistic, atol=1e-9)
    np.testing.assert_allclose(scores["spearman"],
                               scipy.stats.spearmanr(targets, predictions).statistic, atol=1e-9)
    np.testing.assert_allclose(scores["mse"], np.mean((targets - predictions) ** 2))


def test_regression_scores_by_hand_and_bad_input():
    assert regression_scores([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0]) == {
        "pearson": pytest.approx(0.8), "spearman": pytest.approx(0.8), "mse": 0.5}
    with pytest.raises(ValueError, match="as many predictions as targets"):
        regression_scores([1, 2, 3], [1.0, 2.0])


def test_pearson_summed_over_replicas_is_the_split_correlation():
    """Under a tf.distribute strategy each replica keeps its own variables and Keras sums them:
    two metrics fed half the batch each, their variables added, give the split's r."""
    targets = np.array([0.0, 1.0, 10.0, 11.0])
    predictions = np.array([1.0, 0.0, 11.0, 10.0])
    replicas = [PearsonCorrelation(), PearsonCorrelation()]
    replicas[0].update_state(targets[:2], predictions[:2])
    replicas[1].update_state(targets[2:], predictions[2:])
    merged = PearsonCorrelation()
    for variable, a, b in zip(merged.variables, replicas[0].variables, replicas[1].variables):
        variable.assign(np.asarray(a) + np.asarray(b))
    assert float(merged.result()) == pytest.approx(np.corrcoef(targets, predictions)[0, 1],
                                                   rel=1e-6)
