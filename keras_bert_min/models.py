"""BERT as functional Keras models: the encoder and the pretrainer built around it. The
fine-tuning models are in `keras_bert_min.tasks`.

Every model takes and returns dicts with the TF Hub BERT names (see docs/design.md), has a `None`
sequence length, and rebuilds itself from its config, so `.keras` files reload with the word
embedding still tied to the MLM head.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_bert_min.config import ENCODER_INPUTS, BertConfig
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead,
                                   TransformerEncoderBlock, bert_initializer)

_register = keras.saving.register_keras_serializable(package="keras_bert_min")
_INT32 = np.iinfo(np.int32)


def check_integer_inputs(inputs, model_name):
    """A ValueError for ids that Keras would convert silently: floats (floored), booleans or
    strings, and int64 values beyond int32 (wrapped). Our models take int32 ids; the value
    ranges (ids < vocab_size, positions < S) are checked inside the graph, by the layers.

    Only concrete values (NumPy arrays, lists, eager tensors) are checked: symbolic ones are
    Keras' own while it traces (it builds some with float placeholders)."""
    values = inputs.items() if isinstance(inputs, dict) else [("inputs", inputs)]
    for name, value in values:
        eager = isinstance(value, tf.Tensor) and hasattr(value, "numpy")
        if not (eager or isinstance(value, (np.ndarray, list, tuple))):
            continue
        dtype = keras.backend.standardize_dtype(value.dtype if eager else
                                                np.asarray(value).dtype)
        if not dtype.startswith(("int", "uint")):
            raise ValueError(f"{model_name} takes integer ids, but {name} holds {dtype} values "
                             "(which Keras would floor or refuse silently); pass int32 ids.")
        if dtype in ("int32", "int16", "int8", "uint8", "uint16"):
            continue  # fits in int32: no copy of the values needed
        array = value.numpy() if eager else np.asarray(value)
        if array.size and (array.max() > _INT32.max or array.min() < _INT32.min):
            raise ValueError(f"{name} holds values beyond int32 (e.g. {array.max()}), which "
                             f"{model_name} would wrap around; ids must be int32.")


class IntegerIds:
    """Checks the ids (`check_integer_inputs`) before Keras converts them to int32."""

    def __call__(self, inputs, *args, **kwargs):
        check_integer_inputs(inputs, self.name)
        return super().__call__(inputs, *args, **kwargs)


def encoder_inputs():
    """The three int32 [batch, seq_length] inputs of every BERT model, seq_length `None`."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in ENCODER_INPUTS}


@_register
class BertEncoder(IntegerIds, keras.Model):
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

        # Token + segment + position embeddings, summed, normalised: [B, S, H].
        hidden_states = BertEmbedding(
            vocab_size=config.vocab_size,
            type_vocab_size=config.type_vocab_size,
            max_position_embeddings=config.max_position_embeddings,
            hidden_size=config.hidden_size,
            initializer_range=config.initializer_range,
            layer_norm_eps=config.layer_norm_eps,
            hidden_dropout_prob=config.hidden_dropout_prob,
            name="embeddings",
        )(inputs["input_word_ids"], inputs["input_type_ids"])

        # L post-LN blocks; padding (input_mask 0) is never attended to.
        for index in range(config.num_hidden_layers):
            hidden_states = TransformerEncoderBlock(
                hidden_size=config.hidden_size,
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                hidden_act=config.hidden_act,
                hidden_dropout_prob=config.hidden_dropout_prob,
                attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                initializer_range=config.initializer_range,
                layer_norm_eps=config.layer_norm_eps,
                name=f"transformer_layer_{index}",
            )(hidden_states, inputs["input_mask"])

        # The pooler: tanh(Dense(first token)), the [CLS] vector, [B, H].
        first_token = hidden_states[:, 0, :]
        pooled_output = keras.layers.Dense(
            config.hidden_size, activation="tanh",
            kernel_initializer=bert_initializer(config.initializer_range), name="pooler",
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
class BertPretrainer(IntegerIds, keras.Model):
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
            encoder.embedding,
            hidden_act=config.hidden_act,
            initializer_range=config.initializer_range,
            layer_norm_eps=config.layer_norm_eps,
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
