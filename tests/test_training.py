"""Pretraining (keras_bert_min.training): Google's losses written out in NumPy, the feature
split, MLM-only training, and the start from an earlier run's weights (read back through
tests/reference_bert.py). The callbacks of a run are in test_callbacks.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.tasks import bert_classifier
from keras_bert_min.training import (compile_pretrainer, init_checkpoint_path,
                                     initialize_from_checkpoint, pretraining_losses,
                                     pretraining_metrics, split_pretraining_features,
                                     with_mlm_loss)
from tests import reference_bert
from tests.fixtures import CHECKPOINT_TINY
from tests.helpers import assert_unchanged, snapshot
from tests.reference_checkpoints import google_shapes, write_tf1_checkpoint


def log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def googles_mlm_loss(logits, label_ids, label_weights):
    """`get_masked_lm_output` of Google's run_pretraining.py, transcribed in float64:
    numerator = sum(label_weights * per_example_loss); denominator = sum(label_weights) + 1e-5."""
    per_example = -np.take_along_axis(log_softmax(logits.astype(np.float64)),
                                      label_ids[..., None], -1)[..., 0]
    return (per_example * label_weights).sum() / (label_weights.sum() + 1e-5)


def test_mlm_loss_is_weighted_mean_over_real_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 11)).astype("float32")
    labels = rng.integers(0, 11, (3, 4))
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], "float32")
    loss = pretraining_losses()["mlm_logits"](labels, logits, sample_weight=weights)
    assert loss.dtype == "float32"
    np.testing.assert_allclose(loss, googles_mlm_loss(logits, labels, weights), rtol=1e-6)
    # Padding predictions change nothing: neither their logits nor their count matter.
    padded_logits = logits.copy()
    padded_logits[0, 2:] += 100.0
    np.testing.assert_allclose(
        pretraining_losses()["mlm_logits"](labels, padded_logits, sample_weight=weights), loss,
        rtol=1e-6)
    # One real prediction: Google's 1e-5 is then a relative 1e-5 of the loss, ten times this test's
    # tolerance, so the test tells Google's denominator from a plain weighted mean.
    one = np.zeros_like(weights)
    one[2, 3] = 1.0
    np.testing.assert_allclose(pretraining_losses()["mlm_logits"](labels, logits, sample_weight=one),
                               googles_mlm_loss(logits, labels, one), rtol=1e-6)


def test_all_zero_weights_give_zero_loss_not_nan():
    logits = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")
    loss = pretraining_losses()["mlm_logits"](np.zeros((2, 3)), logits, sample_weight=np.zeros((2, 3)))
    assert float(loss) == 0.0


def test_nsp_loss_and_accuracy():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.5]], "float32")
    labels = np.array([[0], [1], [1]])
    loss = pretraining_losses()["nsp_logits"](labels, logits)
    expected = -np.take_along_axis(log_softmax(logits), labels, -1).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    accuracy = pretraining_metrics()["nsp_logits"][0]
    accuracy.update_state(labels, logits)
    np.testing.assert_allclose(accuracy.result(), 2 / 3, rtol=1e-6)


def test_mlm_accuracy_ignores_padding_predictions():
    logits = np.zeros((1, 3, 4), "float32")
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 3] = 5.0
    labels = np.array([[2, 0, 1]])  # first right, second wrong, third wrong but padding
    accuracy = pretraining_metrics()["mlm_logits"][0]
    accuracy.update_state(labels, logits, sample_weight=np.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(accuracy.result(), 0.5)


def test_split_pretraining_features():
    features = {name: np.zeros((2, 3), "int32") for name in (
        "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions", "masked_lm_ids")}
    features["masked_lm_weights"] = np.ones((2, 3), "float32")
    features["next_sentence_labels"] = np.array([[0], [1]], "int32")
    x, y, sample_weight = split_pretraining_features(features)
    assert sorted(x) == ["input_mask", "input_type_ids", "input_word_ids", "masked_lm_positions"]
    assert y["mlm_logits"] is features["masked_lm_ids"]
    assert sample_weight["mlm_logits"] is features["masked_lm_weights"]
    np.testing.assert_array_equal(sample_weight["nsp_logits"], [[1.0], [1.0]])
    del features["masked_lm_weights"]
    with pytest.raises(ValueError, match=r"lack \['masked_lm_weights'\]"):
        split_pretraining_features(features)


def test_mlm_only_pretraining_trains_no_nsp_weights():
    """Without next-sentence prediction the targets are the MLM's alone and the NSP head (and
    the pooler, which only it reads) keep their initial values while the rest trains."""
    features = next(iter(pretraining_batches(batch=8, steps=1).unbatch().batch(8)))
    flat = {**features[0], "masked_lm_ids": features[1]["mlm_logits"],
            "masked_lm_weights": features[2]["mlm_logits"],
            "next_sentence_labels": features[1]["nsp_logits"]}
    x, y, sample_weight = split_pretraining_features(flat)
    keras.utils.set_random_seed(4)
    pretrainer = compile_pretrainer(BertPretrainer(BertEncoder(CHECKPOINT_TINY)),
                                    keras.optimizers.Adam(1e-2), next_sentence=False)
    before = {w.path: np.array(w) for w in pretrainer.weights}
    history = pretrainer.fit(tf.data.Dataset.from_tensors((x, y, sample_weight)).repeat(3),
                             epochs=1, verbose=0)
    assert sorted(history.history) == ["loss", "mlm_logits_accuracy"]
    logs = with_mlm_loss(pretrainer.evaluate(x, y, sample_weight=sample_weight, verbose=0,
                                             return_dict=True))
    assert sorted(logs) == ["loss", "mlm_logits_accuracy", "mlm_logits_loss"]
    assert logs["loss"] == logs["mlm_logits_loss"]
    changed = {path for path, value in before.items()
               if not np.array_equal(value, np.asarray(
                   next(w for w in pretrainer.weights if w.path == path)))}
    assert set(before) - changed == {"pooler/kernel", "pooler/bias", "next_sentence/dense/kernel",
                                     "next_sentence/dense/bias"}
    assert any("embeddings" in path for path in changed)


# --- batches for the tests (also test_callbacks.py's) ------------------------------------------

def pretraining_batches(batch=4, seq=8, predictions=2, steps=4, seed=0):
    """`steps` batches of random CHECKPOINT_TINY features, split for `fit`."""
    rng = np.random.default_rng(seed)
    n = batch * steps
    features = {
        "input_word_ids": rng.integers(5, CHECKPOINT_TINY.vocab_size, (n, seq)).astype("int32"),
        "input_mask": np.ones((n, seq), "int32"),
        "input_type_ids": (np.arange(seq)[None] >= seq // 2).repeat(n, 0).astype("int32"),
        "masked_lm_positions": rng.integers(1, seq, (n, predictions)).astype("int32"),
        "masked_lm_ids": rng.integers(5, CHECKPOINT_TINY.vocab_size,
                                      (n, predictions)).astype("int32"),
        "masked_lm_weights": np.ones((n, predictions), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype("int32"),
    }
    return tf.data.Dataset.from_tensor_slices(features).batch(batch).map(
        split_pretraining_features)


# --- starting from an earlier run ----------------------------------------------------------------

def randomized_pretrainer(seed=1):
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    rng = np.random.default_rng(seed)
    for variable in pretrainer.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    return pretrainer


def assert_holds(model, params, names):
    loaded = reference_bert.google_params_from_model(model)
    for name in names:
        np.testing.assert_array_equal(loaded[name], params[name], err_msg=name)


ENCODER_NAMES = sorted(google_shapes(CHECKPOINT_TINY, heads=False))
ALL_NAMES = sorted(google_shapes(CHECKPOINT_TINY))


def test_init_checkpoint_path_takes_a_run_directory_for_its_model_file(tmp_path):
    assert init_checkpoint_path(str(tmp_path)) == os.path.join(str(tmp_path), "model.keras")
    assert init_checkpoint_path("runs/phase1/model.keras") == "runs/phase1/model.keras"
    assert init_checkpoint_path("google/bert_model.ckpt") == "google/bert_model.ckpt"


def test_initialize_from_a_keras_file(tmp_path):
    source = randomized_pretrainer()
    params = reference_bert.google_params_from_model(source)
    source.save(tmp_path / "model.keras")
    # The file, or the run directory holding it, into a pretrainer: every variable.
    for path in (tmp_path / "model.keras", tmp_path):
        pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
        report = initialize_from_checkpoint(pretrainer, path)
        assert report.source == str(tmp_path / "model.keras")
        assert sorted(report.loaded) == ALL_NAMES
        assert_holds(pretrainer, params, ALL_NAMES)
    # Into an encoder: the pretrainer's encoder part.
    encoder = BertEncoder(CHECKPOINT_TINY)
    assert sorted(initialize_from_checkpoint(encoder, tmp_path / "model.keras").loaded) == \
        ENCODER_NAMES
    assert_holds(encoder, params, ENCODER_NAMES)
    # A fine-tuning model's file gives its encoder.
    classifier = bert_classifier(source.encoder, 2)
    classifier.save(tmp_path / "classifier.keras")
    encoder = BertEncoder(CHECKPOINT_TINY)
    initialize_from_checkpoint(encoder, tmp_path / "classifier.keras")
    assert_holds(encoder, params, ENCODER_NAMES)


def test_initialize_from_a_google_checkpoint_prefix(tmp_path, checkpoint_params):
    prefix = str(tmp_path / "bert_model.ckpt")
    write_tf1_checkpoint(prefix, checkpoint_params)  # with Adam slots and global_step
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    report = initialize_from_checkpoint(pretrainer, prefix)
    assert sorted(report.loaded) == ALL_NAMES and "global_step" in report.skipped
    assert_holds(pretrainer, checkpoint_params, ALL_NAMES)
    encoder = BertEncoder(CHECKPOINT_TINY)
    assert sorted(initialize_from_checkpoint(encoder, prefix).loaded) == ENCODER_NAMES
    assert_holds(encoder, checkpoint_params, ENCODER_NAMES)


def test_initialize_refuses_another_config_or_model_and_assigns_nothing(tmp_path):
    randomized_pretrainer().save(tmp_path / "model.keras")
    other = BertPretrainer(BertEncoder(CHECKPOINT_TINY.replace(intermediate_size=32)))
    before = snapshot(other)
    with pytest.raises(ValueError, match="model.keras was trained with config .*intermediate_size"
                                         "=24.*; pass the same config and vocab"):
        initialize_from_checkpoint(other, tmp_path / "model.keras")
    assert_unchanged(other, before)

    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "dense.keras")
    encoder = BertEncoder(CHECKPOINT_TINY)
    with pytest.raises(ValueError, match="dense.keras holds a Sequential, not a BERT model"):
        initialize_from_checkpoint(encoder, tmp_path / "dense.keras")


@pytest.mark.parametrize("static_masking", [False, True])
def test_whole_word_mask_masks_a_word_with_all_its_pieces(tmp_path, static_masking):
    from keras_bert_min.text.preprocessor import BertPreprocessor
    from keras_bert_min.text.pretraining import SpecialTokenIds
    from keras_bert_min.training import pretraining_input_fn, pretraining_instances
    from tests.fixtures import SPECIAL_TOKENS, write_vocab_file

    # Every word splits into pieces: "unbreakable" -> un ##break ##able, and so on.
    vocab = SPECIAL_TOKENS + ["un", "##break", "##able", "re", "##do", "##ne", "a", "."]
    preprocessor = BertPreprocessor(write_vocab_file(tmp_path / "vocab.txt", vocab), 32)
    sentences = ["unbreakable redone a.", "a redone unbreakable.", "redone a unbreakable."]
    documents = [[sentences[(d + s) % 3] for s in range(4)] for d in range(12)]
    instances = pretraining_instances(documents, preprocessor, 32, 6, dupe_factor=2,
                                      static_masking=static_masking, seed=3,
                                      whole_word_mask=True)
    dataset = pretraining_input_fn(4, 32, 6, instances=instances,
                                   special_ids=SpecialTokenIds.from_preprocessor(preprocessor),
                                   static_masking=static_masking, seed=3, whole_word_mask=True)()
    masked_any = 0
    for x, y, weights in dataset.take(8):
        for ids, row_y, row_positions, row_weights in zip(
                x["input_word_ids"].numpy(), y["mlm_logits"].numpy(),
                x["masked_lm_positions"].numpy(), weights["mlm_logits"].numpy()):
            masked = {int(p): vocab[t] for p, t, w in zip(row_positions, row_y, row_weights) if w}
            masked_any += len(masked)

            def original(position):
                return masked.get(position, vocab[ids[position]])

            # A word is masked whole or not at all: a masked piece's neighbours of the same word
            # (a ## piece after it, or the piece before a masked ## piece) are masked too. A
            # segment may start with a ## piece (Google's truncation cuts either end); that
            # piece is then a word of its own, as in Google's whole-word masking.
            for position, token in masked.items():
                if token.startswith("##") and original(position - 1) not in SPECIAL_TOKENS:
                    assert position - 1 in masked, (masked, position)
                if original(position + 1).startswith("##"):
                    assert position + 1 in masked, (masked, position)
    assert masked_any > 0
