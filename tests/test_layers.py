"""Every layer: config round trip, None sequence length, mixed precision, strategy scope; and the
numbers of each against an independent NumPy formulation."""

import numpy as np
import pytest
import keras
import tensorflow as tf
from keras import ops

from keras_bert_min import BertEmbedding, MaskedLMHead, NextSentenceHead, TransformerEncoderBlock
from tests import reference_bert

V, T, P, H, N, I = 50, 3, 16, 8, 2, 12


def make_embedding(**kwargs):
    return BertEmbedding(V, T, P, H, **kwargs)


def embedding_inputs(batch=2, seq=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, V, (batch, seq)).astype("int32"),
            rng.integers(0, T, (batch, seq)).astype("int32"))


def built_embedding():
    layer = make_embedding()
    layer(*embedding_inputs())
    return layer


def block_inputs(batch=2, seq=5):
    return (np.random.default_rng(1).normal(size=(batch, seq, H)).astype("float32"),
            np.ones((batch, seq), "int32"))


def head_inputs(batch=2, seq=5):
    return (np.random.default_rng(2).normal(size=(batch, seq, H)).astype("float32"),
            np.array([[1, 3, 0], [4, 4, 2]], "int32")[:batch])


# Each case: a factory for the layer, and a factory for its call arguments.
CASES = {
    "embedding": (make_embedding, embedding_inputs),
    "block": (lambda: TransformerEncoderBlock(H, N, I, "gelu"), block_inputs),
    "mlm_head": (lambda: MaskedLMHead(built_embedding()), head_inputs),
    "nsp_head": (NextSentenceHead, lambda batch=2, seq=5: (np.ones((batch, H), "float32"),)),
}


@pytest.mark.parametrize("case", CASES)
def test_get_config_round_trip(case):
    make_layer, make_inputs = CASES[case]
    layer = make_layer()
    inputs = make_inputs()
    layer(*inputs)
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(*inputs)
    # Same weights give the same outputs: the config captures everything that shapes the math.
    for source, target in zip(layer.weights, clone.weights):
        target.assign(source)
    np.testing.assert_allclose(clone(*inputs), layer(*inputs), atol=1e-6)
    # Registered under our package, so .keras files find it by name.
    name = keras.saving.get_registered_name(layer.__class__)
    assert name == f"keras_bert_min>{layer.__class__.__name__}"


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
def test_mixed_bfloat16(case, mixed_bfloat16):
    make_layer, make_inputs = CASES[case]
    layer = make_layer()
    out = layer(*make_inputs())
    assert all(w.dtype == "float32" for w in layer.weights)
    expected = "float32" if case.endswith("head") else "bfloat16"
    assert out.dtype == expected
    assert np.isfinite(ops.convert_to_numpy(ops.cast(out, "float32"))).all()


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
