"""Tests of keras_bert_min.hf_weights (Hugging Face safetensors) against independent references.

- A real model: all-MiniLM-L6-v2's `model.safetensors` (6 layers, H=384, exact GELU), renamed to
  Google's names by a table of tests/reference_checkpoints.py, run through the NumPy float64
  BERT of `tests/reference_bert.py`.
- Files written here from Google-named weights by the same table, in the layout of
  `BertForPreTraining` (with the old `gamma`/`beta` LayerNorm names too).
- Every refusal: the message names the problem, and the model is left exactly as it was.
"""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_bert_min.hf_weights import load_hf_weights
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.weights import LoadReport
from tests import reference_bert
from tests.fixtures import CHECKPOINT_TINY, MINILM_HEADS, minilm_padded_batch, token_ids
from tests.helpers import assert_unchanged, max_abs, run_encoder, snapshot
from tests.reference_checkpoints import hf_from_google


# --- the real model: all-MiniLM-L6-v2 -------------------------------------------------------------

def test_hand_checked_token_ids(minilm_vocab):
    # bert-base-uncased ids, as its tokenizer gives them.
    assert token_ids(minilm_vocab, "the cat") == ([101, 1996, 4937, 102], [0, 0, 0, 0])
    assert minilm_vocab["[PAD]"] == 0


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
def test_minilm_single_sentence_matches_reference(minilm_encoder, minilm_params, minilm_vocab,
                                                  sentence):
    ids, types = token_ids(minilm_vocab, sentence)
    ours = run_encoder(minilm_encoder[0], [ids], [[1] * len(ids)], [types])
    sequence, pooled = reference_bert.encoder(minilm_params, np.array([ids]),
                                              np.ones((1, len(ids))), np.array([types]),
                                              MINILM_HEADS, "gelu")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def test_minilm_sentence_pair_matches_reference(minilm_encoder, minilm_params, minilm_vocab):
    ids, types = token_ids(minilm_vocab, "how old are you", "i am six years old")
    assert types == [0] * 6 + [1] * 6
    ours = run_encoder(minilm_encoder[0], [ids], [[1] * len(ids)], [types])
    sequence, pooled = reference_bert.encoder(minilm_params, np.array([ids]),
                                              np.ones((1, len(ids))), np.array([types]),
                                              MINILM_HEADS, "gelu")
    assert max_abs(ours["sequence_output"], sequence) < 1e-5
    assert max_abs(ours["pooled_output"], pooled) < 1e-5


def test_minilm_padded_batch_matches_reference(minilm_encoder, minilm_params, minilm_vocab):
    rows, ids, mask, types = minilm_padded_batch(minilm_vocab)
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
                                                               minilm_vocab):
    def sentence_embedding(sequence_output, mask):
        # The model card: mean of the token vectors over the attention mask, then L2-normalise.
        mask = np.asarray(mask, np.float64)[:, :, None]
        mean = (np.asarray(sequence_output, np.float64) * mask).sum(1) / mask.sum(1)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    _, ids, mask, types = minilm_padded_batch(minilm_vocab)
    ours = sentence_embedding(run_encoder(minilm_encoder[0], ids, mask, types)["sequence_output"],
                              mask)
    sequence, _ = reference_bert.encoder(minilm_params, ids, mask, types, MINILM_HEADS, "gelu")
    assert max_abs(ours, sentence_embedding(sequence, mask)) < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0)



# --- files written here from Google-named weights ------------------------------------------

def hf_failure(tmp_path, tensors, model, **kwargs):
    path = tmp_path / "model.safetensors"
    save_file(tensors, path)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        load_hf_weights(model, path, **kwargs)
    assert_unchanged(model, before)
    return str(error.value)


@pytest.mark.parametrize("old_layer_norm_names", [False, True])
def test_hf_pretraining_file_loads_into_pretrainer(tmp_path, checkpoint_params,
                                                   old_layer_norm_names):
    path = tmp_path / "model.safetensors"
    save_file(hf_from_google(checkpoint_params, 2, old_layer_norm_names), path)
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    report = load_hf_weights(pretrainer, path)
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], checkpoint_params[name]) for name in checkpoint_params)
    assert len(report.loaded) == len(checkpoint_params)
    assert report.skipped == {"bert.embeddings.position_ids": "buffer(s)",
                              "cls.predictions.decoder.bias": "duplicate(s)",
                              "cls.predictions.decoder.weight": "tied copy of the word embeddings"}


def test_hf_pretraining_file_into_encoder_skips_heads(tmp_path, checkpoint_params):
    path = tmp_path / "model.safetensors"
    # The MLM and NSP heads, and a BertForSequenceClassification head.
    classifier = {"classifier.weight": np.zeros((3, 16), np.float32),
                  "classifier.bias": np.zeros((3,), np.float32)}
    save_file({**hf_from_google(checkpoint_params, 2), **classifier}, path)
    report = load_hf_weights(BertEncoder(CHECKPOINT_TINY), path)
    assert len(report.loaded) == 39
    heads = [name for name, reason in report.skipped.items()
             if reason == "head variable(s) (the model is an encoder)"]
    assert sorted(heads) == sorted([name for name in load_file(path)
                                    if name.startswith(("cls.", "classifier."))])
    assert len(heads) == 9 + 2


def test_hf_untied_decoder_is_refused(tmp_path, checkpoint_params, checkpoint_pretrainer):
    tensors = hf_from_google(checkpoint_params, 2)
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1.0
    message = hf_failure(tmp_path, tensors, checkpoint_pretrainer)
    assert "cls.predictions.decoder.weight" in message and "ties" in message


def test_hf_conflicting_bias_copies_are_refused(tmp_path, checkpoint_params, checkpoint_pretrainer):
    tensors = hf_from_google(checkpoint_params, 2)
    tensors["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"] + 1.0
    message = hf_failure(tmp_path, tensors, checkpoint_pretrainer)
    assert "cls.predictions.bias" in message and "cls.predictions.decoder.bias" in message


def test_hf_transposed_shape(tmp_path, checkpoint_params, checkpoint_pretrainer):
    tensors = hf_from_google(checkpoint_params, 2)
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    tensors[name] = np.ascontiguousarray(tensors[name].T)
    message = hf_failure(tmp_path, tensors, checkpoint_pretrainer)
    assert "encoder.layer.0.intermediate.dense.weight: expected shape (24, 16), found (16, 24)" \
        in message


def test_hf_missing_and_unexpected_variables(tmp_path, checkpoint_params, checkpoint_pretrainer):
    tensors = hf_from_google(checkpoint_params, 2)
    del tensors["bert.encoder.layer.1.attention.self.key.bias"]
    tensors["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros((16,), np.float32)
    message = hf_failure(tmp_path, tensors, checkpoint_pretrainer)
    assert "encoder.layer.1.attention.self.key.bias" in message
    assert "bert.encoder.layer.0.attention.self.rotary.weight" in message


def test_hf_file_without_heads_into_pretrainer(tmp_path, checkpoint_params, checkpoint_pretrainer):
    tensors = {k: v for k, v in hf_from_google(checkpoint_params, 2).items()
               if not k.startswith("cls.")}
    message = hf_failure(tmp_path, tensors, checkpoint_pretrainer)
    assert "cls.predictions.transform.dense.weight" in message and "load it into a BertEncoder" \
        in message


def test_hf_missing_pooler(tmp_path, checkpoint_params):
    tensors = {k: v for k, v in hf_from_google(checkpoint_params, 2).items() if "pooler" not in k}
    encoder = BertEncoder(CHECKPOINT_TINY)
    message = hf_failure(tmp_path, tensors, encoder)
    assert "pooler.dense.weight" in message and "allow_missing_pooler=True" in message

    pooler_before = [np.array(encoder.pooler.kernel), np.array(encoder.pooler.bias)]
    report = load_hf_weights(encoder, tmp_path / "model.safetensors", allow_missing_pooler=True)
    assert report.kept == ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
    assert "kept the model's own bert/pooler/dense/kernel" in str(report)
    np.testing.assert_array_equal(encoder.pooler.kernel, pooler_before[0])
    loaded = reference_bert.google_params_from_model(encoder)
    np.testing.assert_array_equal(loaded["bert/encoder/layer_1/output/dense/kernel"],
                                  checkpoint_params["bert/encoder/layer_1/output/dense/kernel"])


@pytest.mark.parametrize("keep_bytes", [5, 100, -64])
def test_hf_truncated_file(tmp_path, checkpoint_params, keep_bytes):
    whole = tmp_path / "whole.safetensors"
    save_file(hf_from_google(checkpoint_params, 2), whole)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole.read_bytes()[:keep_bytes])
    encoder = BertEncoder(CHECKPOINT_TINY)
    before = snapshot(encoder)
    with pytest.raises(ValueError, match=r"truncated\.safetensors.*download it again"):
        load_hf_weights(encoder, truncated)
    assert_unchanged(encoder, before)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_hf_weights(encoder, tmp_path / "missing.safetensors")
