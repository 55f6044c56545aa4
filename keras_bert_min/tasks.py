"""Fine-tuning models around a `BertEncoder`, each with its loss, metrics and decoding.

    BertClassifier       pooled [CLS] -> dropout -> dense: `logits` [B, C] (C = 1: regression)
    BertTokenClassifier  sequence output -> dropout -> dense: `logits` [B, S, C], padding masked
    BertSpanPredictor    sequence output -> dense(2): `start_logits`, `end_logits` [B, S]
    BertMultipleChoice   each of K pairs -> pooled [CLS] -> dropout -> dense(1): `logits` [B, K]

Each model shares the encoder it is given (training the task trains the encoder) and compiles
with the loss and metrics of its head by default (`task_metrics.py`), so `model.compile()` then
`model.fit(inputs, labels)` works.

Predicted spans are decoded with `decode_span`. Labelled text files become `tf.data` batches
in `keras_bert_min.text.labelled`.
"""

import keras
import numpy as np
from keras import ops

from keras_bert_min import optimization
from keras_bert_min._checks import check_int
from keras_bert_min.layers import PaddingMask, bert_initializer
from keras_bert_min.models import BertEncoder, IntegerIds, bert_encoder, encoder_inputs

from keras_bert_min.task_metrics import (
    DEFAULT_IGNORE_LABEL, SPAN_LOSS_WEIGHTS, classifier_loss, classifier_metrics,
    multiple_choice_loss, multiple_choice_metrics, span_losses, span_metrics,
    token_classifier_loss, token_classifier_metrics)

_register = keras.saving.register_keras_serializable(package="keras_bert_min")


# --- the models -------------------------------------------------------------------------------

def _shared_encoder(encoder, model_name):
    """The encoder a fine-tuning model wraps: a `BertEncoder`, or its serialised config."""
    if isinstance(encoder, dict):
        encoder = keras.saving.deserialize_keras_object(encoder)
    if not isinstance(encoder, BertEncoder):
        raise ValueError(f"{model_name} needs a BertEncoder, got {type(encoder).__name__}; build "
                         "one with bert_encoder(config) or pretrained.from_pretrained(directory).")
    return encoder


def _float32_dense(units, config, name):
    # float32 whatever the dtype policy: logits and losses stay float32 under mixed precision.
    return keras.layers.Dense(units, kernel_initializer=bert_initializer(config.initializer_range),
                              dtype="float32", name=name)


class _FineTuningModel(IntegerIds, keras.Model):
    """What the fine-tuning models share: an encoder shared with the caller (not copied), and
    `compile` defaults that fit their head, so `compile()` then `fit(inputs, labels)` works."""

    @property
    def bert_config(self):
        return self.encoder.bert_config

    def default_loss(self):
        raise NotImplementedError

    def default_metrics(self):
        raise NotImplementedError

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`keras.Model.compile`, where "auto" means this head's loss and metrics, and
        `optimization.finetuning_optimizer()` (AdamW at 3e-5, constant: pass
        `finetuning_optimizer(total_steps)` for Google's warmup and linear decay)."""
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = optimization.finetuning_optimizer()
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def set_label_names(self, label_names):
        """The class names in id order, or None; checked against the class count."""
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(label_names) != self.num_classes or len(set(label_names)) != len(label_names):
                raise ValueError(f"label_names must be {self.num_classes} distinct names, one "
                                 f"per class, got {label_names}.")
        self.label_names = label_names

    def compile_from_config(self, config):
        # Keras will not replay the saved compile() arguments of a model whose compile() is
        # overridden; ours only fills in defaults, so replaying them is safe.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class BertClassifier(_FineTuningModel):
    """Sentence (or sentence-pair) classification from the pooled [CLS] output, as Google's
    `run_classifier.py`: dropout, then one dense layer to `num_classes` logits.

    Inputs: the encoder's three; a pair is just `input_type_ids` 1 on its second segment.
    Output: `logits` float32 [B, num_classes]. With `num_classes=1` it is a regressor, and
    compiles with mean squared error instead of cross-entropy.

    Args:
        encoder: the `BertEncoder` to fine-tune, shared, not copied.
        num_classes: number of labels, or 1 for regression.
        dropout: dropout rate on the pooled output.
        label_names: optional name of each class, in id order (saved with the model, served
            by exports as `label_name`).

    Example:
    >>> classifier = BertClassifier(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)), 2)
    >>> classifier.compile()
    >>> ids = ops.ones((2, 6), "int32")
    >>> classifier({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})["logits"].shape
    (2, 2)
    """

    def __init__(self, encoder, num_classes, dropout=0.1, label_names=None, **kwargs):
        encoder = _shared_encoder(encoder, "BertClassifier")
        check_int("num_classes", num_classes)
        kwargs.setdefault("name", "bert_classifier")
        inputs = encoder_inputs()
        pooled_output = encoder(inputs)["pooled_output"]
        pooled_output = keras.layers.Dropout(dropout, name="dropout")(pooled_output)
        logits = _float32_dense(num_classes, encoder.bert_config, "logits")(pooled_output)
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout
        self.set_label_names(label_names)

    def default_loss(self):
        return classifier_loss(self.num_classes)

    def default_metrics(self):
        return classifier_metrics(self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout,
                "label_names": self.label_names}


@_register
class BertTokenClassifier(_FineTuningModel):
    """Per-token classification (tagging, NER) from the sequence output: dropout, dense.

    Output: `logits` float32 [B, S, num_classes], carrying `input_mask` as its Keras mask, so
    the default loss and accuracy skip padding, and also tokens labelled `ignore_label` (e.g.
    the later word pieces of a word).

    Args:
        encoder: the `BertEncoder` to fine-tune, shared, not copied.
        num_classes: number of tags.
        dropout: dropout rate on the sequence output.
        ignore_label: label value that the loss and accuracy skip.
        label_names: optional name of each tag, in id order (saved with the model).

    Example:
    >>> tagger = BertTokenClassifier(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)), 5)
    >>> ids = ops.ones((2, 6), "int32")
    >>> tagger({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})["logits"].shape
    (2, 6, 5)
    """

    def __init__(self, encoder, num_classes, dropout=0.1, ignore_label=DEFAULT_IGNORE_LABEL,
                 label_names=None, **kwargs):
        encoder = _shared_encoder(encoder, "BertTokenClassifier")
        check_int("num_classes", num_classes)
        kwargs.setdefault("name", "bert_token_classifier")
        inputs = encoder_inputs()
        sequence_output = encoder(inputs)["sequence_output"]
        sequence_output = keras.layers.Dropout(dropout, name="dropout")(sequence_output)
        logits = _float32_dense(num_classes, encoder.bert_config, "classifier")(sequence_output)
        logits = PaddingMask(name="logits")([logits, inputs["input_mask"]])
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout
        self.ignore_label = ignore_label
        self.set_label_names(label_names)

    def default_loss(self):
        return token_classifier_loss(self.ignore_label)

    def default_metrics(self):
        return token_classifier_metrics(self.ignore_label)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout,
                "ignore_label": self.ignore_label, "label_names": self.label_names}


@_register
class BertSpanPredictor(_FineTuningModel):
    """SQuAD-style answer spans, as Google's `run_squad.py`: one dense layer to 2 units on the
    sequence output, read as start and end logits over the positions.

    Outputs: `start_logits` and `end_logits`, float32 [B, S]. Labels are the start and end
    positions, int [B]; the default loss is the mean of their two cross-entropies. Decode
    predictions with `decode_span`.

    Args:
        encoder: the `BertEncoder` to fine-tune, shared, not copied.

    Example:
    >>> reader = BertSpanPredictor(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)))
    >>> ids = ops.ones((2, 6), "int32")
    >>> reader({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})["end_logits"].shape
    (2, 6)
    """

    def __init__(self, encoder, **kwargs):
        encoder = _shared_encoder(encoder, "BertSpanPredictor")
        kwargs.setdefault("name", "bert_span_predictor")
        inputs = encoder_inputs()
        sequence_output = encoder(inputs)["sequence_output"]
        span_logits = _float32_dense(2, encoder.bert_config, "span_logits")(sequence_output)
        super().__init__(inputs=inputs,
                         outputs={"start_logits": span_logits[..., 0],
                                  "end_logits": span_logits[..., 1]}, **kwargs)
        self.encoder = encoder

    def default_loss(self):
        return span_losses()

    def default_metrics(self):
        return span_metrics()

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        if isinstance(loss, str) and loss == "auto":
            kwargs.setdefault("loss_weights", SPAN_LOSS_WEIGHTS)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)


@_register
class FlattenChoices(keras.layers.Layer):
    """[B, K, S] ids -> [B * K, S]: each (context, choice) pair becomes one encoder example."""

    def call(self, ids):
        return ops.reshape(ids, (-1, ops.shape(ids)[-1]))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@_register
class ChoiceLogits(keras.layers.Layer):
    """[B * K, 1] scores and the [B, K, S] ids they came from -> logits [B, K]."""

    def call(self, scores, ids):
        shape = ops.shape(ids)
        return ops.reshape(scores, (shape[0], shape[1]))

    def compute_output_shape(self, scores_shape, ids_shape):
        return tuple(ids_shape[:2])


@_register
class BertMultipleChoice(_FineTuningModel):
    """Multiple choice (SWAG), as the BERT paper: every (context, choice) pair goes through the
    encoder, the pooled [CLS] output through dropout and a dense layer to one score, and the K
    scores of an example are its logits, a softmax over the choices.

    Inputs: the encoder's three, int32 [B, K, S]: K packed pairs `[CLS] context [SEP] choice
    [SEP]` per example (`text.choices.choice_inputs`). Output: `logits` float32 [B, K]. Labels
    are the index of the right choice, int [B].

    Args:
        encoder: the `BertEncoder` to fine-tune, shared, not copied.
        dropout: dropout rate on the pooled output.

    Example:
    >>> chooser = BertMultipleChoice(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)))
    >>> ids = ops.ones((2, 4, 6), "int32")  # 2 examples, 4 choices, 6 tokens
    >>> inputs = {"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids}
    >>> chooser(inputs)["logits"].shape
    (2, 4)
    """

    def __init__(self, encoder, dropout=0.1, **kwargs):
        encoder = _shared_encoder(encoder, "BertMultipleChoice")
        kwargs.setdefault("name", "bert_multiple_choice")
        inputs = {name: keras.Input(shape=(None, None), dtype="int32", name=name)
                  for name in encoder_inputs()}
        flatten = FlattenChoices(name="flatten_choices")
        pairs = {name: flatten(ids) for name, ids in inputs.items()}  # [B * K, S]
        pooled_output = encoder(pairs)["pooled_output"]  # [B * K, H]
        pooled_output = keras.layers.Dropout(dropout, name="dropout")(pooled_output)
        scores = _float32_dense(1, encoder.bert_config, "choice_score")(pooled_output)
        logits = ChoiceLogits(name="logits", dtype="float32")(scores, inputs["input_word_ids"])
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self.encoder = encoder
        self.dropout = dropout

    def default_loss(self):
        return multiple_choice_loss()

    def default_metrics(self):
        return multiple_choice_metrics()

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout}


def _as_encoder(config_or_encoder):
    if isinstance(config_or_encoder, BertEncoder):
        return config_or_encoder
    return bert_encoder(config_or_encoder)


def bert_classifier(config_or_encoder, num_classes, dropout=0.1):
    """A `BertClassifier` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertClassifier(_as_encoder(config_or_encoder), num_classes, dropout=dropout)


def bert_token_classifier(config_or_encoder, num_classes, dropout=0.1,
                          ignore_label=DEFAULT_IGNORE_LABEL):
    """A `BertTokenClassifier` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertTokenClassifier(_as_encoder(config_or_encoder), num_classes, dropout=dropout,
                               ignore_label=ignore_label)


def bert_span_predictor(config_or_encoder):
    """A `BertSpanPredictor` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertSpanPredictor(_as_encoder(config_or_encoder))


def bert_multiple_choice(config_or_encoder, dropout=0.1):
    """A `BertMultipleChoice` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertMultipleChoice(_as_encoder(config_or_encoder), dropout=dropout)


# --- span decoding ------------------------------------------------------------------------------

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
    check_int("max_answer_length", max_answer_length)
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
