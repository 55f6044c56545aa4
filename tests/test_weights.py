"""Tests of keras_bert_min.weights (Google's TF1 checkpoints, the checks every load shares,
copying weights between our models) against independent references.

- Google's TF1 format: checkpoints written here the way Google's `run_pretraining.py` left them
  (tests/reference_checkpoints.py: TF1 variables by name, `adam_m`/`adam_v` slots,
  `global_step`), and our saved checkpoints read back by TF1 code (`init_from_checkpoint`), as
  Google's `modeling.py` reads them; values compared through tests/reference_bert.py's own
  reading of our layers and its NumPy float64 BERT.
- Every refusal: the message names the problem, and the model is left exactly as it was.
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.weights import copy_weights, load_google_checkpoint, save_google_checkpoint
from tests import reference_bert
from tests.fixtures import CHECKPOINT_TINY, minilm_padded_batch
from tests.helpers import assert_unchanged, max_abs, run_encoder, snapshot
from tests.reference_checkpoints import google_shapes, write_tf1_checkpoint


# --- Google TF1 checkpoints ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, checkpoint_params):
    prefix = tmp_path_factory.mktemp("google") / "model.ckpt"
    write_tf1_checkpoint(prefix, checkpoint_params)
    return str(prefix)


def test_save_google_checkpoint_round_trip(tmp_path, minilm_config, minilm_encoder, minilm_params,
                                           minilm_vocab):
    prefix = save_google_checkpoint(minilm_encoder[0], tmp_path / "bert_model.ckpt")
    assert prefix == str(tmp_path / "bert_model.ckpt")
    # Exactly Google's names and shapes, and no temporary files left behind.
    assert {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)} == \
        google_shapes(minilm_config, heads=False)
    assert sorted(os.listdir(tmp_path)) == ["bert_model.ckpt.data-00000-of-00001",
                                            "bert_model.ckpt.index"]

    fresh = BertEncoder(minilm_config)
    report = load_google_checkpoint(fresh, prefix)
    assert len(report.loaded) == 103 and report.skipped == {}
    fresh_params = reference_bert.google_params_from_model(fresh)
    assert all(np.array_equal(fresh_params[name], minilm_params[name]) for name in minilm_params)
    _, ids, mask, types = minilm_padded_batch(minilm_vocab)
    original, reloaded = (run_encoder(m, ids, mask, types) for m in (minilm_encoder[0], fresh))
    for name in original:
        np.testing.assert_array_equal(reloaded[name], original[name])


TINY_IDS = np.array([[2, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 3, 0, 0, 0, 0]])
TINY_MASK = np.array([[1] * 8, [1] * 4 + [0] * 4])
TINY_TYPES = np.array([[0] * 5 + [1] * 3, [0] * 8])
TINY_POSITIONS = np.array([[1, 5, 6], [2, 1, 0]])


def test_tf1_checkpoint_loads_into_encoder(tiny_checkpoint, checkpoint_params):
    encoder = BertEncoder(CHECKPOINT_TINY)
    report = load_google_checkpoint(encoder, tiny_checkpoint)
    encoder_names = google_shapes(CHECKPOINT_TINY, heads=False)
    assert sorted(report.loaded) == sorted(encoder_names)
    reasons = list(report.skipped.values())
    assert reasons.count("optimizer slot(s)") == 2 * len(checkpoint_params)
    assert reasons.count("training-state variable(s)") == 1 and "global_step" in report.skipped
    assert reasons.count("head variable(s) (the model is an encoder)") == 7
    loaded = reference_bert.google_params_from_model(encoder)
    assert all(np.array_equal(loaded[name], checkpoint_params[name]) for name in encoder_names)

    ours = run_encoder(encoder, TINY_IDS, TINY_MASK, TINY_TYPES)
    sequence, pooled = reference_bert.encoder(checkpoint_params, TINY_IDS, TINY_MASK, TINY_TYPES,
                                              CHECKPOINT_TINY.num_attention_heads, "gelu_tanh")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def test_tf1_checkpoint_loads_into_pretrainer(tiny_checkpoint, checkpoint_params):
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    report = load_google_checkpoint(pretrainer, tiny_checkpoint)
    assert sorted(report.loaded) == sorted(checkpoint_params)
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], checkpoint_params[name]) for name in checkpoint_params)

    outputs = pretrainer({"input_word_ids": TINY_IDS, "input_mask": TINY_MASK,
                          "input_type_ids": TINY_TYPES, "masked_lm_positions": TINY_POSITIONS})
    sequence, pooled = reference_bert.encoder(checkpoint_params, TINY_IDS, TINY_MASK, TINY_TYPES,
                                              CHECKPOINT_TINY.num_attention_heads, "gelu_tanh")
    mlm, nsp = reference_bert.pretraining_heads(checkpoint_params, sequence, pooled, TINY_POSITIONS,
                                                "gelu_tanh")
    assert max_abs(outputs["mlm_logits"], mlm) < 1e-5
    assert max_abs(outputs["nsp_logits"], nsp) < 1e-5


def test_saved_checkpoint_is_read_by_google_tf1_code(tmp_path, tiny_checkpoint, checkpoint_params):
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    load_google_checkpoint(pretrainer, tiny_checkpoint)
    prefix = save_google_checkpoint(pretrainer, tmp_path / "out" / "bert_model.ckpt")
    # As Google's run_classifier.py does: TF1 variables by name, initialised from the checkpoint.
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape, tf.float32)
                     for name, shape in google_shapes(CHECKPOINT_TINY).items()}
        tf.compat.v1.train.init_from_checkpoint(prefix, {name: name for name in variables})
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = session.run(variables)
    assert all(np.array_equal(values[name], checkpoint_params[name]) for name in checkpoint_params)


def test_save_replaces_an_existing_checkpoint(tmp_path, checkpoint_params):
    prefix = tmp_path / "model.ckpt"
    write_tf1_checkpoint(prefix, checkpoint_params)  # also leaves a .meta graph of the old variables
    encoder = BertEncoder(CHECKPOINT_TINY)
    save_google_checkpoint(encoder, prefix)
    assert not os.path.exists(f"{prefix}.meta")
    assert sorted(name for name, _ in tf.train.list_variables(str(prefix))) == \
        sorted(google_shapes(CHECKPOINT_TINY, heads=False))


def test_interrupted_save_leaves_no_complete_looking_checkpoint(tmp_path, checkpoint_params,
                                                                 monkeypatch):
    prefix = tmp_path / "model.ckpt"
    write_tf1_checkpoint(prefix, checkpoint_params)
    real_replace, moved = os.replace, []

    def replace_then_die(source, destination):
        if moved:  # the second of the two files (.index and .data-*)
            raise KeyboardInterrupt("killed while moving the new checkpoint into place")
        real_replace(source, destination)
        moved.append(destination)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_google_checkpoint(BertEncoder(CHECKPOINT_TINY), prefix)
    monkeypatch.undo()
    # Neither the old checkpoint nor a half-written new one can be mistaken for a whole one.
    assert not os.path.exists(f"{prefix}.index")
    with pytest.raises(FileNotFoundError, match="No TF1 checkpoint"):
        load_google_checkpoint(BertEncoder(CHECKPOINT_TINY), prefix)
    # ...and the staging directory ("<prefix>.partial") is gone too.
    assert not [name for name in os.listdir(tmp_path)
                if name.endswith(".partial") or ".tmp-" in name]


def test_save_refuses_a_directory_and_load_refuses_an_object_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is a directory.*bert_model.ckpt"):
        save_google_checkpoint(BertEncoder(CHECKPOINT_TINY), tmp_path)
    prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "keras" / "ckpt"))
    with pytest.raises(ValueError, match="object-based"):
        load_google_checkpoint(BertEncoder(CHECKPOINT_TINY), prefix)


def google_failure(tmp_path, params, model):
    """Writes params as a TF1 checkpoint, loads it into model, and returns the ValueError text."""
    prefix = tmp_path / "bad.ckpt"
    write_tf1_checkpoint(prefix, params, training_state=False)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        load_google_checkpoint(model, prefix)
    assert_unchanged(model, before)
    return str(error.value)


def test_google_missing_variable(tmp_path, checkpoint_params, checkpoint_pretrainer):
    params = dict(checkpoint_params)
    del params["bert/encoder/layer_1/output/dense/bias"]
    message = google_failure(tmp_path, params, checkpoint_pretrainer)
    assert "missing from the file" in message
    assert "bert/encoder/layer_1/output/dense/bias" in message


def test_google_unexpected_variable(tmp_path, checkpoint_params, checkpoint_pretrainer):
    params = {**checkpoint_params,
              "bert/encoder/layer_2/output/dense/bias": np.zeros(16, np.float32)}
    message = google_failure(tmp_path, params, checkpoint_pretrainer)
    assert "no place for" in message and "bert/encoder/layer_2/output/dense/bias" in message


def test_google_transposed_shape(tmp_path, checkpoint_params, checkpoint_pretrainer):
    name = "bert/encoder/layer_0/intermediate/dense/kernel"
    params = {**checkpoint_params, name: checkpoint_params[name].T.copy()}
    message = google_failure(tmp_path, params, checkpoint_pretrainer)
    assert f"{name}: expected shape (16, 24), found (24, 16)" in message


def test_a_truncated_data_file_is_named(tmp_path, checkpoint_params, checkpoint_pretrainer):
    """A .data file cut short made TF's reader raise a bare IndexError ("Read less bytes than
    requested"); the error names the file, says it is truncated, and assigns nothing."""
    prefix = tmp_path / "cut.ckpt"
    write_tf1_checkpoint(prefix, checkpoint_params, training_state=False)
    (data,) = tmp_path.glob("cut.ckpt.data-*")
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    before = snapshot(checkpoint_pretrainer)
    with pytest.raises(ValueError, match=rf"nothing was assigned\. {re.escape(str(data))} is "
                                         r"probably truncated: copy or download"):
        load_google_checkpoint(checkpoint_pretrainer, prefix)
    assert_unchanged(checkpoint_pretrainer, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_google_weights_with_nan_or_inf_are_refused(tmp_path, checkpoint_params,
                                                    checkpoint_pretrainer, bad):
    name = "bert/encoder/layer_1/attention/self/query/kernel"
    array = checkpoint_params[name].copy()
    array[0, :3] = bad
    message = google_failure(tmp_path, {**checkpoint_params, name: array}, checkpoint_pretrainer)
    assert message.startswith(f"{name} in ") and "holds 3 NaN or infinite values" in message
    assert "nothing was assigned" in message


def test_google_task_heads_into_encoder_are_skipped_but_other_extras_are_not(tmp_path,
                                                                             checkpoint_params):
    # The heads of run_squad.py and run_classifier.py, as a fine-tuned checkpoint holds them.
    heads = {"cls/squad/output_weights": np.zeros((2, 16), np.float32),
             "output_weights": np.zeros((3, 16), np.float32),
             "output_bias": np.zeros((3,), np.float32)}
    prefix = tmp_path / "finetuned.ckpt"
    write_tf1_checkpoint(prefix, {**checkpoint_params, **heads}, training_state=False)
    report = load_google_checkpoint(BertEncoder(CHECKPOINT_TINY), prefix)
    assert all(report.skipped[name] == "head variable(s) (the model is an encoder)"
               for name in heads)
    # A pretrainer has no place for them, and an encoder none for an unknown variable.
    message = google_failure(tmp_path, {**checkpoint_params, **heads},
                             BertPretrainer(BertEncoder(CHECKPOINT_TINY)))
    assert "3 variable(s) of the file" in message and "cls/squad/output_weights" in message
    extra = {**checkpoint_params, "bert/embeddings/extra_table": np.zeros((2, 16), np.float32)}
    message = google_failure(tmp_path, extra, BertEncoder(CHECKPOINT_TINY))
    assert "1 variable(s) of the file" in message and "bert/embeddings/extra_table" in message


def test_google_bad_paths_and_models(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        load_google_checkpoint(BertEncoder(CHECKPOINT_TINY), tmp_path / "no_such.ckpt")
    with pytest.raises(ValueError, match="BertEncoder, a BertPretrainer or a task model"):
        load_google_checkpoint(object(), tiny_checkpoint)
    # One of the checkpoint's files, or its directory, stands for the checkpoint.
    encoder = BertEncoder(CHECKPOINT_TINY)
    assert len(load_google_checkpoint(encoder, tiny_checkpoint + ".index").loaded) == 39
    assert len(load_google_checkpoint(encoder, os.path.dirname(tiny_checkpoint)).loaded) == 39




# --- copying between our models ------------------------------------------------------------------

def randomized(model, seed):
    """`model` with every variable drawn anew, so each copied value is recognisable."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    return model


def encoder_names(params):
    return {name for name in params if name.startswith("bert/")}


@pytest.mark.parametrize("source_kind, target_kind", [
    ("encoder", "encoder"), ("pretrainer", "pretrainer"), ("pretrainer", "encoder"),
    ("encoder", "pretrainer")])
def test_copy_weights_copies_every_variable_by_name(source_kind, target_kind):
    make = {"encoder": lambda: BertEncoder(CHECKPOINT_TINY),
            "pretrainer": lambda: BertPretrainer(BertEncoder(CHECKPOINT_TINY))}
    source = randomized(make[source_kind](), seed=1)
    target = randomized(make[target_kind](), seed=2)
    target_before = reference_bert.google_params_from_model(target)
    report = copy_weights(source, target)

    # What each side holds, read by layer attribute (tests/reference_bert.py), not by the map
    # under test; the names expected are Google's, from modeling.py's shapes.
    copied = encoder_names(google_shapes(CHECKPOINT_TINY)) if "encoder" in (source_kind,
                                                                             target_kind) \
        else set(google_shapes(CHECKPOINT_TINY))
    assert set(report.loaded) == copied
    source_params = reference_bert.google_params_from_model(source)
    target_params = reference_bert.google_params_from_model(target)
    for name in copied:
        np.testing.assert_array_equal(target_params[name], source_params[name], err_msg=name)
    # An encoder copied into a pretrainer leaves its heads as they were.
    for name in set(target_params) - copied:
        np.testing.assert_array_equal(target_params[name], target_before[name], err_msg=name)
    # A copy, not a share: the two models keep separate variables.
    assert not {id(v) for v in source.weights} & {id(v) for v in target.weights}


@pytest.mark.parametrize("change, expected", [
    ({"intermediate_size": 32},
     "bert/encoder/layer_0/intermediate/dense/kernel: expected shape (16, 32), found (16, 24)"),
    ({"num_hidden_layers": 1}, "bert/encoder/layer_1/attention/self/query/kernel"),
    ({"vocab_size": 31},
     "bert/embeddings/word_embeddings: expected shape (31, 16), found (30, 16)"),
])
def test_copy_weights_refuses_another_config_and_assigns_nothing(change, expected):
    source = randomized(BertPretrainer(BertEncoder(CHECKPOINT_TINY)), seed=1)
    target = BertPretrainer(BertEncoder(CHECKPOINT_TINY.replace(**change)))
    before = snapshot(target)
    with pytest.raises(ValueError, match="nothing was assigned") as error:
        copy_weights(source, target)
    assert expected in str(error.value)
    assert_unchanged(target, before)
