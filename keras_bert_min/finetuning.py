"""What fine-tuning needs besides the models: losses and metrics for each head, the optimizer,
SQuAD-style span decoding and label names to ids. Labelled text files become `tf.data` batches
in `keras_bert_min.text.labelled`.

The heads (`keras_bert_min.models`) compile with these by default, so `model.fit` works with
plain `(inputs, labels)` batches:

    classifier        sparse cross-entropy on `logits` [B, C]; mean squared error when C = 1
    token classifier  sparse cross-entropy on `logits` [B, S, C], skipping padding (the model
                      marks it with a Keras mask from `input_mask`) and `ignore_label`
    span predictor    (cross-entropy(start) + cross-entropy(end)) / 2, as Google's run_squad.py

This module imports nothing else from the package at load time: the models import it.
"""

import json
import os

import keras
import numpy as np
from keras import ops

_register = keras.saving.register_keras_serializable(package="keras_bert_min")

# Google's fine-tuning recipe: peak learning rate in 2e-5..5e-5, warmup over the first 10%.
DEFAULT_LEARNING_RATE = 3e-5
DEFAULT_WARMUP_FRACTION = 0.1
# The ignore label of Hugging Face's token-classification datasets (and PyTorch's default).
DEFAULT_IGNORE_LABEL = -100

SPAN_OUTPUTS = ("start_logits", "end_logits")


# --- losses, metrics, optimizer ----------------------------------------------------------------

def classifier_loss(num_classes):
    """Sparse cross-entropy on logits for `num_classes >= 2`, mean squared error for 1."""
    if num_classes == 1:
        return keras.losses.MeanSquaredError(name="mse_loss", dtype="float32")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="loss",
                                                      dtype="float32")


def classifier_metrics(num_classes):
    """Accuracy for classes, mean absolute error for regression (`num_classes == 1`)."""
    if num_classes == 1:
        return [keras.metrics.MeanAbsoluteError(name="mae", dtype="float32")]
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


SPAN_LOSS_WEIGHTS = {"start_logits": 0.5, "end_logits": 0.5}


def span_metrics():
    return {name: [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")]
            for name in SPAN_OUTPUTS}


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


def finetuning_optimizer(total_steps=None, learning_rate=DEFAULT_LEARNING_RATE,
                         warmup_fraction=DEFAULT_WARMUP_FRACTION):
    """Google's fine-tuning optimizer: AdamW (decay 0.01 except LayerNorm and bias, clip 1.0).

    Args:
        total_steps: steps of the whole run. Given, the rate warms up linearly over the first
            `warmup_fraction` of them and decays linearly to 0 at the end (`create_optimizer`);
            None gives a constant rate, for when the run length is not known.
        learning_rate: the peak rate; BERT's paper searches 2e-5..5e-5.
        warmup_fraction: share of `total_steps` spent warming up.

    Example:
    >>> optimizer = finetuning_optimizer(total_steps=3 * 265)
    """
    # Imported here: training imports models, which import this module.
    from keras_bert_min.training import create_optimizer

    warmup_steps = 0 if total_steps is None else round(warmup_fraction * total_steps)
    return create_optimizer(learning_rate, total_steps, warmup_steps)


# --- span decoding -------------------------------------------------------------------------------

def answer_positions(input_type_ids, input_mask):
    """Where an answer may start or end: the second segment's tokens, without its final [SEP].

    Args:
        input_type_ids, input_mask: int arrays [B, S] as `BertPreprocessor` packs
            `[CLS] question [SEP] context [SEP]`.

    Returns:
        bool array [B, S].
    """
    in_context = (np.asarray(input_type_ids) == 1) & (np.asarray(input_mask) == 1)
    # The last position of the second segment is its [SEP].
    length = in_context.shape[-1]
    last = length - 1 - np.argmax(in_context[..., ::-1], axis=-1)
    is_last = np.arange(length) == last[..., None]
    return in_context & ~is_last


def decode_span(start_logits, end_logits, input_type_ids, input_mask, max_answer_length=30):
    """The best answer span of each example: argmax of `start_logits[i] + end_logits[j]` over
    valid spans, i.e. `i <= j < i + max_answer_length`, both inside the second segment and not
    on its [SEP] or on padding (`answer_positions`).

    Args:
        start_logits, end_logits: float arrays [B, S] (tensors are converted).
        input_type_ids, input_mask: the model inputs, int [B, S].
        max_answer_length: longest answer in tokens (Google's run_squad.py default: 30).

    Returns:
        `(starts, ends)`, int arrays [B] of token positions, inclusive. An example with no
        valid position (no second segment) gets `(-1, -1)`: never an invalid span.

    Example:
    >>> outputs = span_predictor.predict(inputs)
    >>> starts, ends = decode_span(outputs["start_logits"], outputs["end_logits"],
    ...                            inputs["input_type_ids"], inputs["input_mask"])
    """
    if isinstance(max_answer_length, bool) or not isinstance(max_answer_length, int) \
            or max_answer_length < 1:
        raise ValueError(f"max_answer_length must be a positive int, got {max_answer_length!r}.")
    start = np.asarray(ops.convert_to_numpy(start_logits), dtype="float64")
    end = np.asarray(ops.convert_to_numpy(end_logits), dtype="float64")
    if start.ndim != 2 or start.shape != end.shape:
        raise ValueError(f"start_logits and end_logits must both be [batch, seq_length], got "
                         f"shapes {start.shape} and {end.shape}.")
    allowed = answer_positions(ops.convert_to_numpy(input_type_ids),
                               ops.convert_to_numpy(input_mask))
    if allowed.shape != start.shape:
        raise ValueError(f"input_type_ids and input_mask have shape {allowed.shape}, the logits "
                         f"{start.shape}; pass the inputs the logits were computed from.")

    length = start.shape[1]
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]  # [i, j] -> j - i
    valid = ((offset >= 0) & (offset < max_answer_length))[None] \
        & allowed[:, :, None] & allowed[:, None, :]
    scores = np.where(valid, start[:, :, None] + end[:, None, :], -np.inf)
    best = scores.reshape(len(scores), -1).argmax(axis=1)
    starts, ends = np.divmod(best, length)
    found = valid.reshape(len(valid), -1).any(axis=1)
    return np.where(found, starts, -1), np.where(found, ends, -1)


# --- label names ---------------------------------------------------------------------------------

class LabelMap:
    """Label names to class ids and back: id i is the i-th of the sorted names.

    Names sort as integers when they all are integers ("2" before "10"), else as strings, so
    the same labels always get the same ids.

    Args:
        names: the label names, in id order, without repeats.

    Example:
    >>> labels = LabelMap.from_labels(["pos", "neg", "pos"])
    >>> labels.names, labels.encode(["pos", "neg"]).tolist()
    (['neg', 'pos'], [1, 0])
    """

    FILE_NAME = "labels.json"

    def __init__(self, names):
        names = [str(name) for name in names]
        if not names:
            raise ValueError("A LabelMap needs at least one label name.")
        if len(set(names)) != len(names):
            raise ValueError(f"Label names repeat: {names}.")
        self.names = names
        self._ids = {name: i for i, name in enumerate(names)}

    @classmethod
    def from_labels(cls, labels):
        """The sorted distinct names of `labels` (any iterable of str or int)."""
        names = sorted({str(label) for label in labels})
        if names and all(_is_int(name) for name in names):
            names.sort(key=int)
        return cls(names)

    def __len__(self):
        return len(self.names)

    def __eq__(self, other):
        return isinstance(other, LabelMap) and self.names == other.names

    def encode(self, labels, where="the data"):
        """Class ids of `labels`, an int32 array; a name not in the map is a ValueError."""
        unknown = sorted({str(label) for label in labels} - set(self._ids))
        if unknown:
            raise ValueError(f"{where} has labels {unknown[:10]} that training never saw "
                             f"(known: {self.names[:20]}); every label must occur in the "
                             "training data.")
        return np.array([self._ids[str(label)] for label in labels], dtype="int32")

    def decode(self, ids):
        """Label names of class ids."""
        return [self.names[int(i)] for i in np.asarray(ids).reshape(-1)]

    def save(self, path):
        """Writes the names, id order, as a JSON list (to a temporary name, then renamed)."""
        _write_json_atomically(path, self.names)

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No label file {path!r}; a fine-tuned classifier directory "
                                    f"holds its label names as {cls.FILE_NAME}.")
        with open(path, encoding="utf-8") as f:
            names = json.load(f)
        if not isinstance(names, list):
            raise ValueError(f"{path!r} must hold a JSON list of label names, got {names!r:.80}.")
        return cls(names)


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def _write_json_atomically(path, value):
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
