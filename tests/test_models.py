"""BertEncoder and BertPretrainer: the shared checks of tests/helpers.py, published parameter
counts, the NumPy float64 reference of tests/reference_bert.py, masking, ties and training."""

import numpy as np
import pytest
import keras
import tensorflow as tf
from keras import ops

from keras_bert_min.config import ENCODER_INPUTS, PRESETS, BertConfig
from keras_bert_min.models import BertEncoder, BertPretrainer, bert_encoder, bert_pretrainer
from keras_bert_min.training import compile_pretrainer, split_pretraining_features
from tests import helpers, reference_bert
from tests.fixtures import TINY

def inputs(batch=3, seq=9, seed=0, vocab=TINY.vocab_size, positions=4):
    """A padded batch: row 0 full, row 1 with 3 pads, row 2 with only 2 real tokens."""
    rng = np.random.default_rng(seed)
    lengths = [seq, max(1, seq - 3), min(2, seq)][:batch] + [seq] * max(0, batch - 3)
    mask = (np.arange(seq)[None, :] < np.array(lengths)[:, None]).astype("int32")
    return {
        "input_word_ids": (rng.integers(1, vocab, (batch, seq)) * mask).astype("int32"),
        "input_mask": mask,
        "input_type_ids": ((np.arange(seq)[None, :] >= 3) * mask).astype("int32"),
        "masked_lm_positions": np.stack([rng.integers(0, n, positions) for n in lengths]).astype("int32"),
    }


def encoder_only(x):
    return {name: x[name] for name in ENCODER_INPUTS}


def randomize(model, seed=0, scale=0.3):
    """Weights far from their init (LayerNorm gammas and biases included) so the reference
    comparison exercises every term."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))


# --- the shared checks ----------------------------------------------------------------------

H, V = TINY.hidden_size, TINY.vocab_size


def test_encoder_passes_the_shared_checks(tmp_path):
    helpers.run_model_test(
        lambda: bert_encoder(TINY), (encoder_only(inputs()),),
        expected_output_shape={"sequence_output": (3, 9, H), "pooled_output": (3, H)},
        expected_num_weights=reference_bert.variable_count(TINY),
        expected_num_params=reference_bert.parameter_count(TINY), directory=tmp_path)


def test_pretrainer_passes_the_shared_checks(tmp_path):
    # Logits are float32 under every policy (DESIGN.md, Tensors).
    helpers.run_model_test(
        lambda: bert_pretrainer(TINY), (inputs(),),
        expected_output_shape={"mlm_logits": (3, 4, V), "nsp_logits": (3, 2)},
        expected_num_weights=reference_bert.variable_count(TINY, heads=True),
        expected_num_params=reference_bert.parameter_count(TINY, heads=True),
        directory=tmp_path, float32_outputs=True)


# --- sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, encoder_count, pretrainer_count", [
    ("base", 109_482_240, 110_106_428), ("large", 335_141_888, 336_226_108)])
def test_published_parameter_counts(name, encoder_count, pretrainer_count):
    encoder = bert_encoder(name)
    assert encoder.count_params() == encoder_count
    assert bert_pretrainer(encoder).count_params() == pretrainer_count


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_grid_builds_with_the_analytic_count(name):
    # A small vocabulary keeps the 30 builds fast; the count formula covers the vocab term.
    config = BertConfig.from_preset(name, vocab_size=64)
    pretrainer = bert_pretrainer(config)
    assert pretrainer.encoder.count_params() == reference_bert.parameter_count(config)
    assert pretrainer.count_params() == reference_bert.parameter_count(config, heads=True)
    assert len(pretrainer.weights) == reference_bert.variable_count(config, heads=True)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_pretrainer_matches_numpy_reference(act):
    config = TINY.replace(hidden_act=act)
    pretrainer = bert_pretrainer(config)
    randomize(pretrainer)
    x = inputs()
    outputs = pretrainer(x)
    encoder_outputs = pretrainer.encoder(encoder_only(x))
    params = reference_bert.google_params_from_model(pretrainer)
    sequence, pooled = reference_bert.encoder(params, x["input_word_ids"], x["input_mask"],
                                              x["input_type_ids"], config.num_attention_heads, act)
    mask = x["input_mask"].astype(bool)
    np.testing.assert_allclose(ops.convert_to_numpy(encoder_outputs["sequence_output"])[mask],
                               sequence[mask], atol=1e-5)
    np.testing.assert_allclose(encoder_outputs["pooled_output"], pooled, atol=1e-5)
    mlm, nsp = reference_bert.pretraining_heads(params, sequence, pooled, x["masked_lm_positions"], act)
    np.testing.assert_allclose(outputs["mlm_logits"], mlm, atol=1e-5 * np.abs(mlm).max())
    np.testing.assert_allclose(outputs["nsp_logits"], nsp, atol=1e-5)


def test_padding_is_masked():
    encoder = bert_encoder(TINY)
    randomize(encoder)
    x = encoder_only(inputs())
    before = encoder(x)
    changed = dict(x)
    changed["input_word_ids"] = np.where(x["input_mask"] == 1, x["input_word_ids"], 7).astype("int32")
    assert not np.array_equal(changed["input_word_ids"], x["input_word_ids"])
    after = encoder(changed)
    mask = x["input_mask"].astype(bool)
    np.testing.assert_allclose(ops.convert_to_numpy(after["sequence_output"])[mask],
                               ops.convert_to_numpy(before["sequence_output"])[mask], atol=1e-6)
    np.testing.assert_allclose(after["pooled_output"], before["pooled_output"], atol=1e-6)


def test_ids_keras_would_convert_silently_are_refused():
    """Float ids used to be floored, int64 ids past int32 wrapped, negative masked positions
    read from the end of the sequence, and an input_mask of batch 1 broadcast over the batch."""
    pretrainer = bert_pretrainer(TINY)
    x = inputs()
    pretrainer(x)  # well-formed ids pass
    for model, bad in ((pretrainer.encoder, {"input_word_ids": x["input_word_ids"] + 0.5}),
                       (pretrainer, {"masked_lm_positions": x["masked_lm_positions"] * 1.0}),
                       (pretrainer.encoder, {"input_type_ids": x["input_type_ids"] > 0})):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=rf"takes integer ids, but {name} holds "
                                             r"(float64|bool) values"):
            model(encoder_only({**x, **bad}) if model is pretrainer.encoder else {**x, **bad})
    wrapped = x["input_word_ids"].astype("int64") + 2**32  # int32 would wrap these to the ids
    with pytest.raises(ValueError, match="input_word_ids holds values beyond int32"):
        pretrainer.encoder(encoder_only({**x, "input_word_ids": wrapped}))
    negative = x["masked_lm_positions"].copy()
    negative[0, 0] = -1
    with pytest.raises(tf.errors.InvalidArgumentError, match="masked_lm_positions has a "
                                                             "negative position"):
        pretrainer({**x, "masked_lm_positions": negative})
    with pytest.raises(tf.errors.InvalidArgumentError, match="masked_lm_positions has a "
                                                             "position past the sequence"):
        pretrainer({**x, "masked_lm_positions": x["masked_lm_positions"] + 9})
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_mask must have the shape "
                                                             "of input_word_ids"):
        pretrainer.encoder(encoder_only({**x, "input_mask": x["input_mask"][:1]}))


def test_variable_sequence_length():
    encoder = bert_encoder(TINY)
    for seq in (3, 11, TINY.max_position_embeddings):
        x = encoder_only(inputs(seq=seq))
        assert encoder(x)["sequence_output"].shape == (3, seq, TINY.hidden_size)
    assert encoder.input["input_word_ids"].shape == (None, None)
    too_long = encoder_only(inputs(seq=33))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        encoder(too_long)


def test_mlm_head_is_tied_to_the_word_embedding():
    pretrainer = bert_pretrainer(TINY)
    vocab_by_hidden = [w for w in pretrainer.weights
                       if tuple(w.shape) in ((TINY.vocab_size, TINY.hidden_size),
                                             (TINY.hidden_size, TINY.vocab_size))]
    assert len(vocab_by_hidden) == 1
    assert pretrainer.get_layer("masked_lm").embedding is pretrainer.encoder.embedding
    # A gradient step through the MLM loss alone moves rows of the word table that no input
    # token looked up: only the tied output projection reaches them.
    x = inputs()
    unused_rows = sorted(set(range(TINY.vocab_size)) - set(x["input_word_ids"].ravel()))
    table = pretrainer.encoder.embedding.word_embeddings
    before = ops.convert_to_numpy(table).copy()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(np.full((3, 4), 5), pretrainer(x)["mlm_logits"])
    gradient = tape.gradient(loss, table.value)
    keras.optimizers.SGD(1.0).apply([gradient], [table])
    moved = np.abs(ops.convert_to_numpy(table) - before).max(axis=1)
    assert (moved[unused_rows] > 0).all()


def test_pretrainer_shares_an_existing_encoder():
    encoder = bert_encoder(TINY)
    pretrainer = bert_pretrainer(encoder)
    assert pretrainer.encoder is encoder
    assert all(any(w is v for v in pretrainer.weights) for w in encoder.weights)
    with pytest.raises(ValueError, match="needs a BertEncoder"):
        BertPretrainer(keras.Sequential([keras.layers.Dense(2)]))


def test_model_config_round_trip():
    pretrainer = bert_pretrainer(TINY)
    clone = BertPretrainer.from_config(pretrainer.get_config())
    assert clone.get_config() == pretrainer.get_config()
    assert clone.bert_config == TINY
    assert clone.get_layer("masked_lm").embedding is clone.encoder.embedding
    encoder_clone = BertEncoder.from_config(pretrainer.encoder.get_config())
    assert encoder_clone.bert_config == TINY


def test_keras_file_round_trip(tmp_path):
    pretrainer = bert_pretrainer(TINY)
    randomize(pretrainer, seed=3)
    x = inputs()
    path = str(tmp_path / "pretrainer.keras")
    pretrainer.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, BertPretrainer)
    for key, value in pretrainer(x).items():
        np.testing.assert_array_equal(reloaded(x)[key], value)
    # Still tied after reloading: one table, read by the embedding and the MLM head.
    assert reloaded.get_layer("masked_lm").embedding is reloaded.encoder.embedding
    assert len(reloaded.weights) == len(pretrainer.weights)


def test_mixed_bfloat16_pretraining_step(mixed_bfloat16):
    pretrainer = compile_pretrainer(bert_pretrainer(TINY), keras.optimizers.Adam(1e-3))
    features = pretraining_batch()
    outputs = pretrainer(split_pretraining_features(features)[0])
    assert outputs["mlm_logits"].dtype == "float32" and outputs["nsp_logits"].dtype == "float32"
    assert all(w.dtype == "float32" for w in pretrainer.weights)
    x, y, sample_weight = split_pretraining_features(features)
    history = pretrainer.fit(x, y, sample_weight=sample_weight, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()


def pretraining_batch(batch=8, seq=12, predictions=4, seed=0):
    rng = np.random.default_rng(seed)
    features = {k: v for k, v in inputs(batch=batch, seq=seq, seed=seed,
                                          positions=predictions).items()}
    features["masked_lm_ids"] = rng.integers(5, TINY.vocab_size, (batch, predictions)).astype("int32")
    features["masked_lm_weights"] = np.ones((batch, predictions), "float32")
    features["masked_lm_weights"][:, -1] = 0.0
    features["next_sentence_labels"] = rng.integers(0, 2, (batch, 1)).astype("int32")
    return features


def test_overfits_one_batch():
    keras.utils.set_random_seed(0)
    pretrainer = compile_pretrainer(bert_pretrainer(TINY), keras.optimizers.Adam(1e-2))
    x, y, sample_weight = split_pretraining_features(pretraining_batch())
    history = pretrainer.fit(x, y, sample_weight=sample_weight, epochs=40, batch_size=8,
                             verbose=0).history
    mlm = history["mlm_logits_loss"]
    assert mlm[-1] < 0.25 * mlm[0]
    # Not 1.0: a random position drawn twice in one row carries two different labels.
    assert history["mlm_logits_accuracy"][-1] > 0.85


def test_fit_under_mirrored_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        pretrainer = compile_pretrainer(bert_pretrainer(TINY), keras.optimizers.Adam(1e-3))
    assert two_cpu_strategy.num_replicas_in_sync == 2
    dataset = (tf.data.Dataset.from_tensor_slices(pretraining_batch(batch=16))
               .batch(8, drop_remainder=True).map(split_pretraining_features).repeat())
    history = pretrainer.fit(dataset, steps_per_epoch=4, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0]
