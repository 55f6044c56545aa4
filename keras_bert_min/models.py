"""BERT as functional Keras models: the encoder, the pretrainer and the fine-tuning models
built around it.

Every model takes and returns dicts with the TF Hub BERT names (see DESIGN.md), has a `None`
sequence length, and rebuilds itself from its config, so `.keras` files reload with the word
embedding still tied to the MLM head.
"""

import keras
from keras import ops

from keras_bert_min import finetuning
from keras_bert_min.config import BertConfig
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead,
                                   TransformerEncoderBlock, _initializer)

_register = keras.saving.register_keras_serializable(package="keras_bert_min")

ENCODER_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")


def encoder_inputs():
    """The three int32 [batch, seq_length] inputs of every BERT model, seq_length `None`."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in ENCODER_INPUTS}


@_register
class BertEncoder(keras.Model):
    """The BERT encoder: embeddings, `num_hidden_layers` blocks and the [CLS] pooler.

    Inputs: `input_word_ids`, `input_mask`, `input_type_ids`, int32 [B, S].
    Outputs: `sequence_output` [B, S, H] and `pooled_output` [B, H] (tanh(Dense([CLS]))).

    Example:
    >>> encoder = BertEncoder(BertConfig.from_preset("tiny", vocab_size=100))
    >>> ids = ops.ones((2, 6), "int32")
    >>> outputs = encoder({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})
    >>> outputs["pooled_output"].shape
    (2, 128)
    """

    def __init__(self, config, **kwargs):
        if isinstance(config, dict):
            config = BertConfig.from_dict(config)
        kwargs.setdefault("name", "bert_encoder")
        inputs = encoder_inputs()

        hidden_states = BertEmbedding(
            config.vocab_size, config.type_vocab_size, config.max_position_embeddings,
            config.hidden_size, config.initializer_range, config.layer_norm_eps,
            config.hidden_dropout_prob, name="embeddings",
        )(inputs["input_word_ids"], inputs["input_type_ids"])

        for index in range(config.num_hidden_layers):
            hidden_states = TransformerEncoderBlock(
                config.hidden_size, config.num_attention_heads, config.intermediate_size,
                config.hidden_act, config.hidden_dropout_prob, config.attention_probs_dropout_prob,
                config.initializer_range, config.layer_norm_eps, name=f"transformer_layer_{index}",
            )(hidden_states, inputs["input_mask"])

        first_token = hidden_states[:, 0, :]
        pooled_output = keras.layers.Dense(
            config.hidden_size, activation="tanh",
            kernel_initializer=_initializer(config.initializer_range), name="pooler",
        )(first_token)

        super().__init__(inputs=inputs,
                         outputs={"sequence_output": hidden_states, "pooled_output": pooled_output},
                         **kwargs)
        self.bert_config = config

    @property
    def embedding(self):
        return self.get_layer("embeddings")

    @property
    def transformer_layers(self):
        return [self.get_layer(f"transformer_layer_{i}")
                for i in range(self.bert_config.num_hidden_layers)]

    @property
    def pooler(self):
        return self.get_layer("pooler")

    def get_config(self):
        return {"config": self.bert_config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class BertPretrainer(keras.Model):
    """An encoder with the masked-LM and next-sentence heads, for pretraining.

    Inputs: the encoder's three, plus `masked_lm_positions` int32 [B, P].
    Outputs: `mlm_logits` float32 [B, P, vocab_size] and `nsp_logits` float32 [B, 2].

    The MLM head projects with the encoder's own word-embedding table, and the encoder is
    shared, not copied: training the pretrainer trains `pretrainer.encoder`.

    Example:
    >>> pretrainer = BertPretrainer(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)))
    >>> ids = ops.ones((2, 6), "int32")
    >>> outputs = pretrainer({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids,
    ...                       "masked_lm_positions": ops.ones((2, 3), "int32")})
    >>> outputs["mlm_logits"].shape
    (2, 3, 100)
    """

    def __init__(self, encoder, **kwargs):
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if not isinstance(encoder, BertEncoder):
            raise ValueError(f"BertPretrainer needs a BertEncoder, got {type(encoder).__name__}.")
        config = encoder.bert_config
        kwargs.setdefault("name", "bert_pretrainer")
        inputs = encoder_inputs()
        inputs["masked_lm_positions"] = keras.Input(shape=(None,), dtype="int32",
                                                    name="masked_lm_positions")
        encoder_outputs = encoder({name: inputs[name] for name in ENCODER_INPUTS})

        mlm_logits = MaskedLMHead(
            encoder.embedding, config.hidden_act, config.initializer_range, config.layer_norm_eps,
            name="masked_lm",
        )(encoder_outputs["sequence_output"], inputs["masked_lm_positions"])
        nsp_logits = NextSentenceHead(config.initializer_range, name="next_sentence")(
            encoder_outputs["pooled_output"])

        super().__init__(inputs=inputs,
                         outputs={"mlm_logits": mlm_logits, "nsp_logits": nsp_logits}, **kwargs)
        self.encoder = encoder

    @property
    def bert_config(self):
        return self.encoder.bert_config

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def bert_encoder(config):
    """A `BertEncoder` for a `BertConfig`, a preset name or a config dict."""
    if isinstance(config, str):
        config = BertConfig.from_preset(config)
    return BertEncoder(config)


def bert_pretrainer(config_or_encoder):
    """A `BertPretrainer` around an existing `BertEncoder` (weights shared) or a new one."""
    if isinstance(config_or_encoder, BertEncoder):
        return BertPretrainer(config_or_encoder)
    return BertPretrainer(bert_encoder(config_or_encoder))


# --- fine-tuning models ------------------------------------------------------------------------


def _shared_encoder(encoder, model_name):
    """The encoder a fine-tuning model wraps: a `BertEncoder`, or its serialised config."""
    if isinstance(encoder, dict):
        encoder = keras.saving.deserialize_keras_object(encoder)
    if not isinstance(encoder, BertEncoder):
        raise ValueError(f"{model_name} needs a BertEncoder, got {type(encoder).__name__}; build "
                         "one with bert_encoder(config) or pretrained.from_pretrained(directory).")
    return encoder


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def _float32_dense(units, config, name):
    # float32 whatever the dtype policy: logits and losses stay float32 under mixed precision.
    return keras.layers.Dense(units, kernel_initializer=_initializer(config.initializer_range),
                              dtype="float32", name=name)


class _FineTuningModel(keras.Model):
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
        `finetuning_optimizer()` (AdamW at 3e-5, constant: pass
        `finetuning_optimizer(total_steps)` for Google's warmup and linear decay)."""
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = finetuning.finetuning_optimizer()
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

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

    Example:
    >>> classifier = BertClassifier(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)), 2)
    >>> classifier.compile()
    >>> ids = ops.ones((2, 6), "int32")
    >>> classifier({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})["logits"].shape
    (2, 2)
    """

    def __init__(self, encoder, num_classes, dropout=0.1, **kwargs):
        encoder = _shared_encoder(encoder, "BertClassifier")
        _positive_int(num_classes, "num_classes")
        kwargs.setdefault("name", "bert_classifier")
        inputs = encoder_inputs()
        pooled_output = encoder(inputs)["pooled_output"]
        pooled_output = keras.layers.Dropout(dropout, name="dropout")(pooled_output)
        logits = _float32_dense(num_classes, encoder.bert_config, "logits")(pooled_output)
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout

    def default_loss(self):
        return finetuning.classifier_loss(self.num_classes)

    def default_metrics(self):
        return finetuning.classifier_metrics(self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout}


@_register
class PaddingMask(keras.layers.Layer):
    """Passes `values` through with `input_mask` attached as their Keras mask.

    Keras losses and metrics skip masked positions, so a per-token loss averages over real
    tokens only, with no extra sample weights in the data.

    Example:
    >>> PaddingMask()([ops.ones((1, 3, 2)), ops.convert_to_tensor([[1, 1, 0]])]).shape
    (1, 3, 2)
    """

    def __init__(self, **kwargs):
        # The values pass through as they are, not cast to the policy's compute dtype: float32
        # logits stay float32 under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs):
        values, _ = inputs
        return values

    def compute_mask(self, inputs, previous_mask=None):
        _, input_mask = inputs
        return ops.cast(input_mask, "bool")

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@_register
class BertTokenClassifier(_FineTuningModel):
    """Per-token classification (tagging, NER) from the sequence output: dropout, dense.

    Output: `logits` float32 [B, S, num_labels], carrying `input_mask` as its Keras mask, so
    the default loss and accuracy skip padding, and also tokens labelled `ignore_label` (e.g.
    the later word pieces of a word).

    Args:
        encoder: the `BertEncoder` to fine-tune, shared, not copied.
        num_labels: number of tags.
        dropout: dropout rate on the sequence output.
        ignore_label: label value that the loss and accuracy skip.

    Example:
    >>> tagger = BertTokenClassifier(BertEncoder(BertConfig.from_preset("tiny", vocab_size=100)), 5)
    >>> ids = ops.ones((2, 6), "int32")
    >>> tagger({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})["logits"].shape
    (2, 6, 5)
    """

    def __init__(self, encoder, num_labels, dropout=0.1,
                 ignore_label=finetuning.DEFAULT_IGNORE_LABEL, **kwargs):
        encoder = _shared_encoder(encoder, "BertTokenClassifier")
        _positive_int(num_labels, "num_labels")
        kwargs.setdefault("name", "bert_token_classifier")
        inputs = encoder_inputs()
        sequence_output = encoder(inputs)["sequence_output"]
        sequence_output = keras.layers.Dropout(dropout, name="dropout")(sequence_output)
        logits = _float32_dense(num_labels, encoder.bert_config, "classifier")(sequence_output)
        logits = PaddingMask(name="logits")([logits, inputs["input_mask"]])
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self.encoder = encoder
        self.num_labels = num_labels
        self.dropout = dropout
        self.ignore_label = ignore_label

    def default_loss(self):
        return finetuning.token_classifier_loss(self.ignore_label)

    def default_metrics(self):
        return finetuning.token_classifier_metrics(self.ignore_label)

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels, "dropout": self.dropout,
                "ignore_label": self.ignore_label}


@_register
class BertSpanPredictor(_FineTuningModel):
    """SQuAD-style answer spans, as Google's `run_squad.py`: one dense layer to 2 units on the
    sequence output, read as start and end logits over the positions.

    Outputs: `start_logits` and `end_logits`, float32 [B, S]. Labels are the start and end
    positions, int [B]; the default loss is the mean of their two cross-entropies. Decode
    predictions with `finetuning.decode_span`.

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
        return finetuning.span_losses()

    def default_metrics(self):
        return finetuning.span_metrics()

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        if isinstance(loss, str) and loss == "auto":
            kwargs.setdefault("loss_weights", finetuning.SPAN_LOSS_WEIGHTS)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)


def _as_encoder(config_or_encoder):
    if isinstance(config_or_encoder, BertEncoder):
        return config_or_encoder
    return bert_encoder(config_or_encoder)


def bert_classifier(config_or_encoder, num_classes, dropout=0.1):
    """A `BertClassifier` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertClassifier(_as_encoder(config_or_encoder), num_classes, dropout=dropout)


def bert_token_classifier(config_or_encoder, num_labels, dropout=0.1,
                          ignore_label=finetuning.DEFAULT_IGNORE_LABEL):
    """A `BertTokenClassifier` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertTokenClassifier(_as_encoder(config_or_encoder), num_labels, dropout=dropout,
                               ignore_label=ignore_label)


def bert_span_predictor(config_or_encoder):
    """A `BertSpanPredictor` around an existing `BertEncoder` (weights shared) or a new one."""
    return BertSpanPredictor(_as_encoder(config_or_encoder))
