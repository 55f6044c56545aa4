"""The losses and metrics of each fine-tuning head (`tasks.py`), and the scores computed
once over a whole split after prediction.

    classifier        sparse cross-entropy on `logits` [B, C], accuracy; for regression (C = 1)
                      mean squared error, mean absolute error and Pearson's r
    token classifier  sparse cross-entropy on `logits` [B, S, C] and `TokenAccuracy`, both
                      skipping padding (the logits' Keras mask) and `ignore_label`
    span predictor    (cross-entropy(start) + cross-entropy(end)) / 2, as Google's run_squad.py
    multiple choice   sparse cross-entropy on `logits` [B, K], accuracy

    regression_scores  Pearson's and Spearman's correlations (GLUE's STS-B scores) in NumPy

Why a Pearson metric of our own: `keras.metrics.PearsonCorrelation` averages a correlation per
batch (or per row), which is not the correlation of the split; `PearsonCorrelation` here keeps
float64 sums that replicas add up, and is the split's correlation over any batching.
"""

import keras
import numpy as np
from keras import ops

_register = keras.saving.register_keras_serializable(package="keras_bert_min")

# The ignore label of Hugging Face's token-classification datasets (and PyTorch's default).
DEFAULT_IGNORE_LABEL = -100

SPAN_OUTPUTS = ("start_logits", "end_logits")
SPAN_LOSS_WEIGHTS = {"start_logits": 0.5, "end_logits": 0.5}


def classifier_loss(num_classes):
    """Sparse cross-entropy on logits for `num_classes >= 2`, mean squared error for 1."""
    if num_classes == 1:
        return keras.losses.MeanSquaredError(name="mse_loss", dtype="float32")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="loss",
                                                      dtype="float32")


def classifier_metrics(num_classes):
    """Accuracy for classes; mean absolute error and Pearson's r for regression (1 class)."""
    if num_classes == 1:
        return [keras.metrics.MeanAbsoluteError(name="mae", dtype="float32"),
                PearsonCorrelation(name="pearson", dtype="float32")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")]


def token_classifier_loss(ignore_label=DEFAULT_IGNORE_LABEL):
    """Sparse cross-entropy averaged over the tokens whose label is not `ignore_label`.

    Padding is skipped through the Keras mask that `BertTokenClassifier` puts on its logits.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_label,
                                                      name="loss", dtype="float32")


def token_classifier_metrics(ignore_label=DEFAULT_IGNORE_LABEL):
    return [TokenAccuracy(ignore_label, name="accuracy", dtype="float32")]


def span_losses():
    """One sparse cross-entropy per output; compile with `SPAN_LOSS_WEIGHTS` to average them."""
    return {name: keras.losses.SparseCategoricalCrossentropy(from_logits=True, name=f"{name}_loss",
                                                             dtype="float32")
            for name in SPAN_OUTPUTS}


def span_metrics():
    return {name: [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")]
            for name in SPAN_OUTPUTS}


def multiple_choice_loss():
    """Sparse cross-entropy over the K choices' logits [B, K]."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="loss",
                                                      dtype="float32")


def multiple_choice_metrics():
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")]


@_register
class TokenAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Token accuracy that skips `ignore_label` labels (and padding, through the logits' mask).

    Args:
        ignore_label: the label of tokens that are not scored, e.g. -100.

    Example:
    >>> metric = TokenAccuracy(ignore_label=-100)
    >>> metric.update_state([[1, -100]], [[[0.0, 1.0], [1.0, 0.0]]])
    >>> float(metric.result())
    1.0
    """

    def __init__(self, ignore_label=DEFAULT_IGNORE_LABEL, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_label = ignore_label

    def update_state(self, y_true, y_pred, sample_weight=None):
        scored = ops.cast(ops.not_equal(y_true, self.ignore_label), self.dtype)
        if sample_weight is not None:
            scored = scored * ops.cast(sample_weight, self.dtype)
        return super().update_state(y_true, y_pred, sample_weight=scored)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


@_register
class PearsonCorrelation(keras.metrics.Metric):
    """Pearson's correlation of predictions and targets over everything seen (unlike
    `keras.metrics.PearsonCorrelation`, a mean of per-batch correlations).

    Keeps float64 sums (count, sums, sums of squares and of products), which replicas add up
    as Keras sums a metric's variables under a tf.distribute strategy, so the result is the
    split's correlation whatever the batching and the number of replicas (float64: the sums'
    differences would cancel in float32; TPUs, without float64, should score with
    `regression_scores` instead). Both inputs are flattened, so [B] and [B, 1] are alike.
    Fewer than two examples, or a constant input, give 0.

    Example:
    >>> metric = PearsonCorrelation()
    >>> metric.update_state([1.0, 2.0], [[2.0], [4.0]])
    >>> metric.update_state([3.0], [[6.5]])
    >>> round(float(metric.result()), 4)
    0.9979
    """

    _SUMS = ("count", "sum_true", "sum_pred", "sum_true2", "sum_pred2", "sum_product")

    def __init__(self, name="pearson", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.sums = [self.add_variable(shape=(), initializer="zeros", dtype="float64", name=n)
                     for n in self._SUMS]

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("PearsonCorrelation takes no sample_weight.")
        t = ops.reshape(ops.cast(y_true, "float64"), (-1,))
        p = ops.reshape(ops.cast(y_pred, "float64"), (-1,))
        for variable, value in zip(self.sums, (ops.cast(ops.shape(t)[0], "float64"), ops.sum(t),
                                               ops.sum(p), ops.sum(t * t), ops.sum(p * p),
                                               ops.sum(t * p))):
            variable.assign_add(value)

    def result(self):
        n, st, sp, stt, spp, stp = (variable.value for variable in self.sums)
        safe_n = ops.maximum(n, 1.0)
        covariance = stp - st * sp / safe_n
        variances = ops.maximum(stt - st * st / safe_n, 0.0) * ops.maximum(spp - sp * sp / safe_n,
                                                                           0.0)
        r = ops.where(variances > 0, covariance / ops.sqrt(ops.maximum(variances, 1e-300)), 0.0)
        return ops.cast(r, self.dtype)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros_like(variable))


# --- scores over a whole split ------------------------------------------------------------------

def _pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    # r does not change with scale: scaled to at most 1, tiny deviations cannot underflow.
    x, y = (v / np.abs(v).max() if np.abs(v).max() > 0 else v for v in (x, y))
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def average_ranks(values):
    """1-based ranks of `values`, ties sharing the mean of the ranks they span (as Spearman's
    correlation and `scipy.stats.rankdata` take them)."""
    values = np.asarray(values, dtype="float64").reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Each run of equal values [first, last] gets the rank (first + last) / 2 + 1.
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = (first[run] + last[run]) / 2.0 + 1.0
    return ranks


def regression_scores(targets, predictions):
    """GLUE's STS-B scores of a split: Pearson's and Spearman's correlations, and the mean
    squared error.

    Args:
        targets, predictions: numbers, one per example ([N] or [N, 1]).

    Returns:
        dict "pearson", "spearman", "mse" of floats (a correlation is 0 when either side is
        constant).

    Example:
    >>> regression_scores([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])["spearman"]
    0.8
    """
    x = np.asarray(targets, dtype="float64").reshape(-1)
    y = np.asarray(predictions, dtype="float64").reshape(-1)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"regression_scores needs as many predictions as targets, at least two; "
                         f"got {len(y)} and {len(x)}.")
    return {"pearson": _pearson(x, y), "spearman": _pearson(average_ranks(x), average_ranks(y)),
            "mse": float(np.mean((x - y) ** 2))}
