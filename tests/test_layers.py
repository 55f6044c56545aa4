"""Every layer: the shared checks of tests/helpers.py (weights built without a call, output
shapes, JSON round trip, mixed precision per sublayer, one fit step), None sequence length,
strategy scope; and the numbers of each against an independent NumPy formulation."""

import numpy as np
import pytest
import keras
import tensorflow as tf
from keras import ops

from keras_bert_min.config import BertConfig
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead, PaddingMask,
                                   TransformerEncoderBlock)
from keras_bert_min.models import bert_encoder
from tests import helpers, reference_bert

V, T, P, H, N, I = 50, 3, 16, 8, 2, 12


def make_embedding(**kwargs):
    return BertEmbedding(V, T, P, H, name="embedding", **kwargs)


def embedding_inputs(batch=2, seq=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, V, (batch, seq)).astype("int32"),
            rng.integers(0, T, (batch, seq)).astype("int32"))


def built_embedding():
    # Built, not called: the head under test is then the only layer that has run.
    layer = make_embedding()
    layer.build((None, None))
    return layer


def block_inputs(batch=2, seq=5):
    return (np.random.default_rng(1).normal(size=(batch, seq, H)).astype("float32"),
            np.ones((batch, seq), "int32"))


def head_inputs(batch=2, seq=5):
    return (np.random.default_rng(2).normal(size=(batch, seq, H)).astype("float32"),
            np.array([[1, 3, 0], [4, 4, 2]], "int32")[:batch])


def padding_mask_inputs(batch=2, seq=5):
    values = np.random.default_rng(3).normal(size=(batch, seq, 3)).astype("float32")
    mask = (np.arange(seq)[None, :] < np.array([seq, 2])[:batch, None]).astype("int32")
    return ([values, mask],)


# Each case: a factory for the layer, and a factory for its call arguments.
CASES = {
    "embedding": (make_embedding, embedding_inputs),
    "block": (lambda: TransformerEncoderBlock(H, N, I, "gelu"), block_inputs),
    "mlm_head": (lambda: MaskedLMHead(built_embedding()), head_inputs),
    "nsp_head": (NextSentenceHead, lambda batch=2, seq=5: (np.ones((batch, H), "float32"),)),
}

# Weight counts by formula: a Dense of n -> m has n*m + m, a LayerNorm of width H has 2H.
EMBEDDING_PARAMS = (V + T + P) * H + 2 * H
BLOCK_PARAMS = 4 * (H * H + H) + (H * I + I) + (I * H + H) + 2 * (2 * H)
MLM_HEAD_OWN_PARAMS = (H * H + H) + 2 * H + V  # transform, its LayerNorm, output bias

# The arguments of helpers.run_layer_test for each layer, every number written out here.
SHARED_CHECKS = {
    "embedding": dict(
        make_layer=lambda: make_embedding(hidden_dropout_prob=0.1), args=embedding_inputs(),
        expected_output_shape=(2, 5, H), expected_num_weights=5,
        expected_num_params=EMBEDDING_PARAMS),
    "block": dict(
        make_layer=lambda: TransformerEncoderBlock(H, N, I, "gelu", hidden_dropout_prob=0.1,
                                                   attention_probs_dropout_prob=0.1),
        args=block_inputs(), expected_output_shape=(2, 5, H), expected_num_weights=16,
        expected_num_params=BLOCK_PARAMS),
    # The head holds the embedding whose word table it projects with, so its weights are the
    # embedding's five and its own five; one fit step through the head alone moves the word
    # table (the tied projection) but not the tables and LayerNorm it never reads.
    "mlm_head": dict(
        make_layer=lambda: MaskedLMHead(built_embedding()), args=head_inputs(),
        expected_output_shape=(2, 3, V), expected_num_weights=5 + 5,
        expected_num_params=EMBEDDING_PARAMS + MLM_HEAD_OWN_PARAMS, float32_outputs=True,
        unchanged=("embedding/token_type_embeddings", "embedding/position_embeddings",
                   "embedding/layer_norm/gamma", "embedding/layer_norm/beta")),
    "nsp_head": dict(
        make_layer=NextSentenceHead, args=(np.ones((2, H), "float32"),),
        expected_output_shape=(2, 2), expected_num_weights=2, expected_num_params=2 * H + 2,
        float32_outputs=True),
    # No weights, so no fit step of its own (see test_padding_mask_in_training); float32
    # values stay float32 under a mixed policy.
    "padding_mask": dict(
        make_layer=PaddingMask, args=padding_mask_inputs(), expected_output_shape=(2, 5, 3),
        expected_num_weights=0, expected_num_params=0, float32_outputs=True,
        run_training_check=False),
}


@pytest.mark.parametrize("case", SHARED_CHECKS)
def test_layer_passes_the_shared_checks(case):
    helpers.run_layer_test(**SHARED_CHECKS[case])


@pytest.mark.parametrize("case", ["embedding", "block", "mlm_head"])
def test_none_sequence_length(case):
    make_layer, make_inputs = CASES[case]
    layer = make_layer()
    layer(*make_inputs())
    specs = [tf.TensorSpec([None] * np.ndim(x), tf.as_dtype(x.dtype)) for x in make_inputs()]
    traced = tf.function(layer.__call__, input_signature=specs)
    for seq in (5, 9):
        out = traced(*make_inputs(seq=seq))
        assert out.shape[0] == 2
    symbolic = layer(*[keras.Input(shape=(None,) * (np.ndim(x) - 1), dtype=x.dtype)
                       for x in make_inputs()])
    assert symbolic.shape[1] is None or case == "mlm_head"


@pytest.mark.parametrize("case", CASES)
def test_builds_inside_strategy_scope(case, two_cpu_strategy):
    make_layer, make_inputs = CASES[case]
    with two_cpu_strategy.scope():
        layer = make_layer()
        layer(*make_inputs())
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in layer.weights)


def test_embedding_equals_one_hot_formulation():
    """The summed lookups equal [one_hot(token) | one_hot(segment) | one_hot(position)] @ the
    stacked tables: the embedding sum is a single linear map of the concatenated one-hots."""
    layer = built_embedding()
    for w in (layer.layer_norm.gamma, layer.layer_norm.beta):
        w.assign(np.random.default_rng(3).normal(size=w.shape))
    ids, types = embedding_inputs(batch=3, seq=7, seed=4)
    seq = ids.shape[1]
    one_hot = np.concatenate([np.eye(V)[ids], np.eye(T)[types],
                              np.broadcast_to(np.eye(P)[np.arange(seq)], (3, seq, P))], axis=-1)
    tables = np.concatenate([ops.convert_to_numpy(layer.word_embeddings),
                             ops.convert_to_numpy(layer.token_type_embeddings),
                             ops.convert_to_numpy(layer.position_embeddings)], axis=0)
    expected = reference_bert.layer_norm(one_hot @ tables, ops.convert_to_numpy(layer.layer_norm.gamma),
                                         ops.convert_to_numpy(layer.layer_norm.beta), 1e-12)
    np.testing.assert_allclose(layer(ids, types), expected, atol=1e-5)


def test_embedding_rejects_too_long_sequences_and_bad_ids():
    layer = built_embedding()
    with pytest.raises(ValueError, match="Sequence length 17 exceeds max_position_embeddings"):
        layer(np.ones((1, P + 1), "int32"), np.zeros((1, P + 1), "int32"))
    # With an unknown static length the check runs in the graph.
    traced = tf.function(layer.__call__, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than max_position_embeddings"):
        traced(np.ones((1, P + 1), "int32"), np.zeros((1, P + 1), "int32"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="type_vocab_size"):
        traced(np.ones((1, 4), "int32"), np.full((1, 4), T, "int32"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size"):
        traced(np.full((1, 4), V, "int32"), np.zeros((1, 4), "int32"))


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "relu"])
def test_block_matches_numpy_reference(act):
    block = TransformerEncoderBlock(H, N, I, act)
    hidden, _ = block_inputs(batch=3, seq=6)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5], "int32")
    block(hidden, mask)
    rng = np.random.default_rng(5)
    for w in block.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    prefix = "bert/encoder/layer_0/"
    params = {}
    for name, layer in [("attention/self/query", block.query), ("attention/self/key", block.key),
                        ("attention/self/value", block.value),
                        ("attention/output/dense", block.attention_output),
                        ("intermediate/dense", block.intermediate), ("output/dense", block.output_dense)]:
        params[prefix + name + "/kernel"] = ops.convert_to_numpy(layer.kernel)
        params[prefix + name + "/bias"] = ops.convert_to_numpy(layer.bias)
    for name, layer in [("attention/output/LayerNorm", block.attention_layer_norm),
                        ("output/LayerNorm", block.output_layer_norm)]:
        params[prefix + name + "/gamma"] = ops.convert_to_numpy(layer.gamma)
        params[prefix + name + "/beta"] = ops.convert_to_numpy(layer.beta)
    expected = reference_bert.encoder_block(params, prefix, hidden, mask, N, act)
    actual = ops.convert_to_numpy(block(hidden, mask))
    # Padded query rows are computed too (they attend to the real keys); all rows must match.
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_mlm_head_gathers_only_masked_positions_and_ties_the_table():
    embedding = built_embedding()
    head = MaskedLMHead(embedding)
    sequence_output, positions = head_inputs()
    logits = head(sequence_output, positions)
    assert logits.shape == (2, 3, V)
    # No second vocab x hidden matrix: the head's own weights are H*H + 2H (transform + bias),
    # 2H (LayerNorm) and V (output bias).
    own = [w for w in head.trainable_weights if not any(w is e for e in embedding.weights)]
    assert sum(int(np.prod(w.shape)) for w in own) == H * H + H + 2 * H + V
    # Changing the sequence at unmasked positions does not change the logits.
    changed = sequence_output.copy()
    changed[0, 2] += 10.0
    np.testing.assert_allclose(head(changed, positions), logits, atol=1e-6)
    # Changing the word table changes the logits: the projection reads it.
    embedding.word_embeddings.assign(embedding.word_embeddings * 2.0)
    assert not np.allclose(head(sequence_output, positions), logits)


def cast_input_shapes(function, *args):
    """The shapes of the tensors that the traced graph of `function(*args)` casts."""
    graph = tf.function(function).get_concrete_function(*args).graph
    return {tuple(op.inputs[0].shape) for op in graph.get_operations() if op.type == "Cast"}


def embedding_model():
    """The embedding called inside a model, as BertEncoder calls it."""
    ids, types = (keras.Input((None,), dtype="int32") for _ in range(2))
    return keras.Model([ids, types], built_embedding()(ids, types))


TABLE_SHAPES = {(V, H), (T, H), (P, H)}


@pytest.mark.parametrize("policy", helpers.POLICIES)
def test_embedding_tables_are_read_uncast_under_mixed_precision(policy):
    """Autocasting would cast each whole table to the compute dtype on every step; the lookups
    read the float32 tables and only the [B, S, H] result is cast."""
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = embedding_model()
        casts = cast_input_shapes(lambda a, b: model([a, b]), *embedding_inputs())
        assert not casts & TABLE_SHAPES
        # The check can see a table cast: the MLM head casts the word table on purpose, to
        # project in the compute dtype.
        head = MaskedLMHead(model.layers[-1])
        assert (V, H) in cast_input_shapes(lambda s, p: head(s, p), *head_inputs())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# An embedding called on its own (the outermost layer of the call) reads its tables uncast too.
@pytest.mark.parametrize("policy", helpers.POLICIES)
def test_embedding_called_on_its_own_reads_its_tables_uncast(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        embedding = built_embedding()
        assert not cast_input_shapes(lambda a, b: embedding(a, b), *embedding_inputs()) \
            & TABLE_SHAPES
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_padding_mask_passes_values_and_attaches_the_mask():
    (values, mask), = padding_mask_inputs()
    layer = PaddingMask()
    np.testing.assert_array_equal(layer([values, mask]), values)
    assert ops.convert_to_numpy(layer.compute_mask([values, mask])).tolist() == \
        mask.astype(bool).tolist()


def test_padding_mask_in_training():
    """PaddingMask has no weights: a Dense before it trains through it, and the loss averages
    over real tokens only, so targets at padding change nothing."""
    keras.utils.set_random_seed(0)
    (values, mask), = padding_mask_inputs()
    inputs = [keras.Input((None, 3)), keras.Input((None,), dtype="int32")]
    outputs = PaddingMask()([keras.layers.Dense(2, name="dense")(inputs[0]), inputs[1]])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    targets = np.random.default_rng(4).normal(size=(2, 5, 2)).astype("float32")
    at_padding = np.where(mask[..., None] == 1, targets, 100.0).astype("float32")
    predictions = ops.convert_to_numpy(model([values, mask]))
    real = mask.astype(bool)
    expected = np.mean((predictions[real] - targets[real]) ** 2)
    for y in (targets, at_padding):
        np.testing.assert_allclose(model.evaluate([values, mask], y, verbose=0), expected,
                                   rtol=1e-5)
    before = [np.array(w) for w in model.trainable_weights]
    model.fit([values, mask], targets, batch_size=2, epochs=1, verbose=0)
    assert all(not np.array_equal(a, np.array(b)) for a, b in zip(before, model.trainable_weights))


def test_attention_mask_converts_to_builtins_only_tflite_with_dynamic_shapes(tmp_path):
    """The [B, S] -> [B, 1, 1, S] mask is built with expand_dims: the slice form
    `[:, None, None, :]` becomes a tf.StridedSlice that TFLite's builtin ops refuse once batch
    and length are dynamic. The converted encoder must also match Keras to 1e-5 (float32)."""
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    encoder = bert_encoder(config)
    names = ("input_word_ids", "input_mask", "input_type_ids")
    specs = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in names}
    encoder.export(str(tmp_path / "sm"), format="tf_saved_model", input_signature=[specs],
                   verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Select TF ops
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    rng = np.random.default_rng(0)
    batch = {"input_word_ids": rng.integers(0, 50, (2, 8)).astype(np.int32),
             "input_mask": np.array([[1] * 8, [1] * 5 + [0] * 3], np.int32),
             "input_type_ids": np.array([[0] * 4 + [1] * 4] * 2, np.int32)}
    # The signature runner resizes each input (by name) to the batch's [2, 8] and allocates.
    got = interpreter.get_signature_runner()(**batch)
    want = encoder(batch, training=False)
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(got[name], np.asarray(want[name]), atol=1e-5)
