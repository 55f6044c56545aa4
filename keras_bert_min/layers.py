"""The four layers of BERT, in the order data flows through them, and one helper layer.

    BertEmbedding            word + segment + position embeddings, summed, LayerNorm, dropout
    TransformerEncoderBlock  post-LN block: self-attention -> add & norm -> feed-forward -> add & norm
    MaskedLMHead             gather masked positions -> dense -> act -> norm -> tied word-embedding logits
    NextSentenceHead         pooled [CLS] vector -> 2-way logits
    PaddingMask              attaches `input_mask` as the Keras mask of per-token outputs

Each follows Google's `modeling.py` to the letter (post-LN, -10000 attention bias, truncated-normal
init) and holds weights that map one to one onto Google's and Hugging Face's variable names (see
`weights.py`). Under a mixed-precision policy, LayerNorm and softmax compute in float32 and the heads
return float32 logits.
"""

import math

import keras
import tensorflow as tf
from keras import ops

from keras_bert_min.config import ACTIVATIONS

_register = keras.saving.register_keras_serializable(package="keras_bert_min")


def activation_fn(name):
    """Maps a `BertConfig.hidden_act` name to a function of one tensor."""
    functions = {
        "gelu": lambda x: ops.gelu(x, approximate=False),
        "gelu_tanh": lambda x: ops.gelu(x, approximate=True),
        "relu": ops.relu,
        "tanh": ops.tanh,
        "silu": ops.silu,
        "linear": lambda x: x,
    }
    if name not in functions:
        raise ValueError(f"Unknown activation {name!r}; expected one of {ACTIVATIONS}.")
    return functions[name]


def bert_initializer(initializer_range):
    """Google's `create_initializer`: truncated normal with stddev `initializer_range`."""
    return keras.initializers.TruncatedNormal(stddev=initializer_range)


@_register
class BertEmbedding(keras.layers.Layer):
    """Sum of word, segment (token type) and learned position embeddings, then LayerNorm and dropout.

    The position table holds `max_position_embeddings` rows and is sliced to the actual
    sequence length, so any length up to that works, including a `None` length.

    Args:
        vocab_size, type_vocab_size, max_position_embeddings, hidden_size: table sizes.
        initializer_range: stddev of the truncated-normal initializer.
        layer_norm_eps: LayerNorm epsilon.
        hidden_dropout_prob: dropout on the normalised sum (`BertConfig`'s name).

    Example:
    >>> layer = BertEmbedding(vocab_size=100, type_vocab_size=2, max_position_embeddings=16,
    ...                       hidden_size=8)
    >>> layer(ops.ones((2, 5), "int32"), ops.zeros((2, 5), "int32")).shape
    (2, 5, 8)
    """

    def __init__(self, vocab_size, type_vocab_size, max_position_embeddings, hidden_size,
                 initializer_range=0.02, layer_norm_eps=1e-12, hidden_dropout_prob=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.type_vocab_size = type_vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
        # The tables stay float32 and are gathered from directly; autocasting them would
        # cast the whole vocabulary table to the compute dtype on every step.
        self.autocast = False
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm")
        self.dropout = keras.layers.Dropout(hidden_dropout_prob, dtype=self.dtype_policy,
                                          name="dropout")

    def build(self, input_word_ids_shape, input_type_ids_shape=None):
        init = bert_initializer(self.initializer_range)
        # autocast=False on each table: `self.autocast = False` alone is ignored when the
        # embedding is the outermost layer of a call (Keras opens an autocast scope then).
        self.word_embeddings = self.add_weight(
            shape=(self.vocab_size, self.hidden_size), initializer=init, name="word_embeddings",
            autocast=False)
        self.token_type_embeddings = self.add_weight(
            shape=(self.type_vocab_size, self.hidden_size), initializer=init,
            name="token_type_embeddings", autocast=False)
        self.position_embeddings = self.add_weight(
            shape=(self.max_position_embeddings, self.hidden_size), initializer=init,
            name="position_embeddings", autocast=False)
        self.layer_norm.build((*input_word_ids_shape, self.hidden_size))

    def call(self, input_word_ids, input_type_ids, training=None):
        seq_length = input_word_ids.shape[1]
        if seq_length is not None and seq_length > self.max_position_embeddings:
            raise ValueError(
                f"Sequence length {seq_length} exceeds max_position_embeddings "
                f"({self.max_position_embeddings}); truncate the input or use a config with a "
                "longer position table.")
        # The lookups read the ids only after the checks pass, so a bad id fails with our message.
        with tf.control_dependencies(self._input_checks(input_word_ids, input_type_ids)):
            input_word_ids = tf.identity(input_word_ids)
            input_type_ids = tf.identity(input_type_ids)
        seq_length = ops.shape(input_word_ids)[1]
        word = ops.take(self.word_embeddings, input_word_ids, axis=0)
        segment = ops.take(self.token_type_embeddings, input_type_ids, axis=0)
        position = self.position_embeddings[:seq_length]
        embeddings = word + segment + position[None, :, :]
        embeddings = self.layer_norm(embeddings)
        return self.dropout(ops.cast(embeddings, self.compute_dtype), training=training)

    def _input_checks(self, input_word_ids, input_type_ids):
        """In-graph range checks. A GPU or TPU gather returns zeros for an out-of-range id
        instead of failing, so a wrong id would silently train on garbage; these name it."""
        return [
            tf.debugging.assert_less_equal(
                tf.shape(input_word_ids)[1], self.max_position_embeddings,
                message=f"input_word_ids is longer than max_position_embeddings "
                        f"({self.max_position_embeddings}); truncate the input"),
            tf.debugging.assert_non_negative(input_word_ids, message="input_word_ids has a negative id"),
            tf.debugging.assert_less(
                input_word_ids, tf.constant(self.vocab_size, input_word_ids.dtype),
                message=f"input_word_ids has an id >= vocab_size ({self.vocab_size}); "
                        "the vocabulary and the model do not match"),
            tf.debugging.assert_non_negative(input_type_ids, message="input_type_ids has a negative id"),
            tf.debugging.assert_less(
                input_type_ids, tf.constant(self.type_vocab_size, input_type_ids.dtype),
                message=f"input_type_ids has an id >= type_vocab_size ({self.type_vocab_size})"),
        ]

    def compute_output_shape(self, input_word_ids_shape, input_type_ids_shape=None):
        return (*input_word_ids_shape, self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "type_vocab_size": self.type_vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_dropout_prob": self.hidden_dropout_prob,
        }


@_register
class TransformerEncoderBlock(keras.layers.Layer):
    """One post-LN Transformer encoder block, as Google's `transformer_model` loop body.

        x = LayerNorm(x + Dropout(Dense_o(SelfAttention(x, mask))))
        x = LayerNorm(x + Dropout(Dense_out(act(Dense_in(x)))))

    Args:
        hidden_size: width H of the input and output.
        num_attention_heads: N; each head has H / N dimensions.
        intermediate_size: width of the feed-forward layer.
        hidden_act: an activation name of `BertConfig`.
        hidden_dropout_prob: dropout after the attention output and the feed-forward output.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        initializer_range: stddev of the truncated-normal initializer.
        layer_norm_eps: LayerNorm epsilon.

    Call arguments:
        hidden_states: [B, S, H] floats.
        input_mask: [B, S] ints, 1 on real tokens and 0 on padding; padding is never attended to.

    Example:
    >>> block = TransformerEncoderBlock(8, 2, 16)
    >>> block(ops.ones((2, 5, 8)), ops.ones((2, 5), "int32")).shape
    (2, 5, 8)
    """

    def __init__(self, hidden_size, num_attention_heads, intermediate_size, hidden_act="gelu_tanh",
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02,
                 layer_norm_eps=1e-12, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by "
                             f"num_attention_heads ({num_attention_heads}).")
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.head_size = hidden_size // num_attention_heads
        self.activation = activation_fn(hidden_act)

        def dense(units, name):
            return keras.layers.Dense(units, kernel_initializer=bert_initializer(initializer_range),
                                      dtype=self.dtype_policy, name=name)

        def layer_norm(name):
            # Keras' LayerNormalization computes in at least float32 whatever the policy.
            return keras.layers.LayerNormalization(epsilon=layer_norm_eps, dtype=self.dtype_policy,
                                                   name=name)

        # Self-attention: Google's attention/self/{query,key,value} and attention/output.
        self.query = dense(hidden_size, "query")
        self.key = dense(hidden_size, "key")
        self.value = dense(hidden_size, "value")
        self.attention_output = dense(hidden_size, "attention_output")
        self.attention_layer_norm = layer_norm("attention_layer_norm")
        # Feed-forward: Google's intermediate/dense and output/dense.
        self.intermediate = dense(intermediate_size, "intermediate")
        self.output_dense = dense(hidden_size, "output")
        self.output_layer_norm = layer_norm("output_layer_norm")
        self.attention_dropout = keras.layers.Dropout(attention_probs_dropout_prob,
                                                      dtype=self.dtype_policy)
        self.hidden_dropout = keras.layers.Dropout(hidden_dropout_prob, dtype=self.dtype_policy)

    def build(self, hidden_states_shape, input_mask_shape=None):
        hidden_shape = tuple(hidden_states_shape)
        for layer in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            layer.build(hidden_shape)
        self.output_dense.build((*hidden_shape[:-1], self.intermediate_size))
        self.attention_layer_norm.build(hidden_shape)
        self.output_layer_norm.build(hidden_shape)

    def call(self, hidden_states, input_mask, training=None):
        attention = self._self_attention(hidden_states, input_mask, training)
        attention = self.hidden_dropout(self.attention_output(attention), training=training)
        hidden_states = self.attention_layer_norm(hidden_states + attention)

        feed_forward = self.activation(self.intermediate(hidden_states))
        feed_forward = self.hidden_dropout(self.output_dense(feed_forward), training=training)
        return self.output_layer_norm(hidden_states + feed_forward)

    def _self_attention(self, hidden_states, input_mask, training):
        # An input_mask of another shape would broadcast (a batch of 1 over any batch).
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(input_mask), tf.shape(hidden_states)[:2],
                message="input_mask must have the shape of input_word_ids [B, S]")]):
            input_mask = tf.identity(input_mask)
        batch_size, seq_length = ops.shape(hidden_states)[0], ops.shape(hidden_states)[1]
        heads_shape = (batch_size, seq_length, self.num_attention_heads, self.head_size)
        query = ops.reshape(self.query(hidden_states), heads_shape)  # [B, S, N, D]
        key = ops.reshape(self.key(hidden_states), heads_shape)
        value = ops.reshape(self.value(hidden_states), heads_shape)

        scores = ops.einsum("bqnd,bknd->bnqk", query, key) * (1.0 / math.sqrt(self.head_size))
        # Softmax in float32; padded keys get Google's -10000 bias, which underflows to an
        # exact 0 probability in float32.
        # [B, S] -> [B, 1, 1, S] by expand_dims, not [:, None, None, :]: the slice form becomes a
        # StridedSlice that TFLite's builtin ops refuse.
        keys_mask = ops.expand_dims(ops.expand_dims(ops.cast(input_mask, "float32"), 1), 1)
        mask_bias = (1.0 - keys_mask) * -10000.0  # [B, 1, 1, S]
        probabilities = ops.softmax(ops.cast(scores, "float32") + mask_bias, axis=-1)
        probabilities = self.attention_dropout(ops.cast(probabilities, self.compute_dtype),
                                               training=training)

        context = ops.einsum("bnqk,bknd->bqnd", probabilities, value)
        return ops.reshape(context, (batch_size, seq_length, self.hidden_size))

    def compute_output_shape(self, hidden_states_shape, input_mask_shape=None):
        return hidden_states_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
        }


@_register
class MaskedLMHead(keras.layers.Layer):
    """Masked-LM logits, computed only at `masked_lm_positions`, against the word-embedding table.

        x = LayerNorm(act(Dense(gather(sequence_output, masked_lm_positions))))
        logits = x @ word_embeddings^T + output_bias

    The output projection is the embedding layer's own `word_embeddings` variable (tied, not a
    copy), so the head adds only H*H + 3H + V weights.

    Args:
        embedding: the encoder's `BertEmbedding`, whose word table is shared.
        hidden_act: an activation name of `BertConfig`.
        initializer_range: stddev of the truncated-normal initializer.
        layer_norm_eps: LayerNorm epsilon.

    Call arguments:
        sequence_output: [B, S, H]; masked_lm_positions: [B, P] ints.
    Returns:
        [B, P, vocab_size] float32 logits.

    Example:
    >>> embedding = BertEmbedding(vocab_size=100, type_vocab_size=2, max_position_embeddings=16,
    ...                           hidden_size=8)
    >>> _ = embedding(ops.ones((2, 5), "int32"), ops.zeros((2, 5), "int32"))
    >>> MaskedLMHead(embedding)(ops.ones((2, 5, 8)), ops.ones((2, 3), "int32")).shape
    (2, 3, 100)
    """

    def __init__(self, embedding, hidden_act="gelu_tanh", initializer_range=0.02,
                 layer_norm_eps=1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(embedding, dict):  # from get_config: a standalone copy (see get_config)
            embedding = keras.saving.deserialize_keras_object(embedding)
        self.embedding = embedding
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.activation = activation_fn(hidden_act)
        self.transform = keras.layers.Dense(
            embedding.hidden_size, kernel_initializer=bert_initializer(initializer_range),
            dtype=self.dtype_policy, name="transform")
        self.transform_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="transform_layer_norm")

    def build(self, sequence_output_shape, masked_lm_positions_shape=None):
        hidden_shape = (None, None, self.embedding.hidden_size)
        self.transform.build(hidden_shape)
        self.transform_layer_norm.build(hidden_shape)
        # Added to the float32 logits, so it is read in float32 under a mixed policy.
        self.output_bias = self.add_weight(shape=(self.embedding.vocab_size,), initializer="zeros",
                                           name="output_bias", autocast=False)

    def call(self, sequence_output, masked_lm_positions):
        masked_lm_positions = ops.cast(masked_lm_positions, "int32")
        # A negative position would wrap around to the end of the sequence, silently.
        with tf.control_dependencies([
                tf.debugging.assert_non_negative(
                    masked_lm_positions, message="masked_lm_positions has a negative position"),
                tf.debugging.assert_less(
                    masked_lm_positions, tf.shape(sequence_output)[1],
                    message="masked_lm_positions has a position past the sequence")]):
            masked_lm_positions = tf.identity(masked_lm_positions)
        # Gather first: the vocabulary projection is the costliest matmul of pretraining, and
        # only the P masked positions of each sequence need it.
        hidden = ops.take_along_axis(sequence_output, masked_lm_positions[:, :, None], axis=1)
        hidden = self.transform_layer_norm(self.activation(self.transform(hidden)))
        word_embeddings = ops.cast(self.embedding.word_embeddings, self.compute_dtype)
        logits = ops.matmul(hidden, ops.transpose(word_embeddings))
        return ops.cast(logits, "float32") + self.output_bias

    def compute_output_shape(self, sequence_output_shape, masked_lm_positions_shape):
        return (*masked_lm_positions_shape, self.embedding.vocab_size)

    def get_config(self):
        # The embedding is serialised so the head can be rebuilt on its own; that copy is then
        # a separate table. Models that tie it (BertPretrainer) rebuild the head from their
        # encoder instead of from this config.
        return {
            **super().get_config(),
            "embedding": keras.saving.serialize_keras_object(self.embedding),
            "hidden_act": self.hidden_act,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
        }


@_register
class NextSentenceHead(keras.layers.Layer):
    """Two-way next-sentence logits from the pooled output (index 0: B follows A; 1: random B).

    Example:
    >>> NextSentenceHead()(ops.ones((2, 8))).shape
    (2, 2)
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(2, kernel_initializer=bert_initializer(initializer_range),
                                        dtype=self.dtype_policy, name="dense")

    def build(self, pooled_output_shape):
        self.dense.build(pooled_output_shape)

    def call(self, pooled_output):
        return ops.cast(self.dense(pooled_output), "float32")

    def compute_output_shape(self, pooled_output_shape):
        return (*pooled_output_shape[:-1], 2)

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


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
