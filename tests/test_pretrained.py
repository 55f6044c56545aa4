"""Tests of keras_bert_min.pretrained: directories of pretrained files, as Google and Hugging Face
ship them, to a model and its preprocessor.

- A real Hugging Face directory: all-MiniLM-L6-v2's, checked against the same weights loaded by
  `load_hf_weights`, and its tokens against bert-base-uncased's ids.
- A Google release directory written here (`bert_config.json`, a TF1 checkpoint, `vocab.txt`).
- Every refusal: a missing or mismatched file is named in the message.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.pretrained import from_pretrained
from tests import reference_bert
from tests.fixtures import (CHECKPOINT_TINY, CHECKPOINT_VOCAB, MINILM_DIR, token_ids,
                            write_vocab_file)
from tests.helpers import run_encoder
from tests.reference_checkpoints import hf_from_google, write_tf1_checkpoint


def write_tiny_vocab(directory, tokens=CHECKPOINT_VOCAB):
    """A vocab.txt of CHECKPOINT_TINY.vocab_size tokens."""
    write_vocab_file(os.path.join(directory, "vocab.txt"), tokens)


def link_minilm_files(directory, names=("config.json", "model.safetensors", "vocab.txt")):
    os.makedirs(directory, exist_ok=True)
    for name in names:
        os.symlink(os.path.join(MINILM_DIR, name), os.path.join(directory, name))
    return directory


def test_from_pretrained_minilm(minilm_encoder, minilm_vocab):
    encoder, preprocessor = from_pretrained(MINILM_DIR, seq_length=16)
    assert isinstance(encoder, BertEncoder)
    # tokenizer_config.json says do_lower_case: true.
    assert preprocessor.lower_case is True and preprocessor.seq_length == 16
    inputs = preprocessor(tf.constant(["The cat sat on the mat."]))
    ids, _ = token_ids(minilm_vocab, "the cat sat on the mat .")
    np.testing.assert_array_equal(inputs["input_word_ids"][0], ids + [0] * (16 - len(ids)))
    ours = run_encoder(encoder, inputs["input_word_ids"], inputs["input_mask"],
                       inputs["input_type_ids"])
    expected = run_encoder(minilm_encoder[0], inputs["input_word_ids"], inputs["input_mask"],
                           inputs["input_type_ids"])
    np.testing.assert_array_equal(ours["pooled_output"], expected["pooled_output"])


def test_from_pretrained_google_directory_pretrainer(tmp_path, checkpoint_params):
    directory = tmp_path / "cased_L-2_H-16_A-4"  # a cased Google name, and no tokenizer_config
    directory.mkdir()
    CHECKPOINT_TINY.to_json_file(directory / "bert_config.json", format="google")
    write_tf1_checkpoint(directory / "bert_model.ckpt", checkpoint_params)
    write_tiny_vocab(directory)

    pretrainer, preprocessor = from_pretrained(directory, model="pretrainer", seq_length=8)
    assert isinstance(pretrainer, BertPretrainer) and preprocessor.lower_case is False
    assert pretrainer.bert_config.hidden_act == "gelu_tanh"  # Google's "gelu"
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], checkpoint_params[name]) for name in checkpoint_params)

    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    _, preprocessor = from_pretrained(directory, seq_length=8)
    assert preprocessor.lower_case is True


def test_from_pretrained_hidden_size_mismatch(tmp_path):
    directory = link_minilm_files(tmp_path / "mismatch", names=("model.safetensors", "vocab.txt"))
    with open(os.path.join(MINILM_DIR, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config.update(hidden_size=256, num_attention_heads=4)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        from_pretrained(directory)
    message = str(error.value)
    assert ("embeddings.word_embeddings.weight: expected shape (30522, 256), found (30522, 384)"
            in message)
    assert "config that came with these weights" in message


def test_from_pretrained_bad_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileNotFoundError, match="a_file"):
        from_pretrained(tmp_path / "a_file")

    no_config = link_minilm_files(tmp_path / "no_config", names=("model.safetensors", "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="bert_config.json.*config.json"):
        from_pretrained(no_config)

    no_weights = link_minilm_files(tmp_path / "no_weights", names=("config.json", "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="No BERT weights.*model.safetensors"):
        from_pretrained(no_weights)
    (no_weights / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin.*convert"):
        from_pretrained(no_weights)

    no_vocab = link_minilm_files(tmp_path / "no_vocab", names=("config.json", "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="No vocab.txt"):
        from_pretrained(no_vocab)

    short_vocab = link_minilm_files(tmp_path / "short_vocab",
                                    names=("config.json", "model.safetensors"))
    write_tiny_vocab(short_vocab)
    with pytest.raises(ValueError, match="30 tokens but the config's vocab_size is 30522"):
        from_pretrained(short_vocab)

    with pytest.raises(ValueError, match="'encoder' or 'pretrainer'"):
        from_pretrained(MINILM_DIR, model="classifier")
    with pytest.raises(ValueError, match=r"seq_length must be an integer in \[3, 512\]"):
        from_pretrained(MINILM_DIR, seq_length=1000)


def test_from_pretrained_truncated_weights(tmp_path, checkpoint_params):
    directory = tmp_path / "truncated"
    directory.mkdir()
    hf_config = {"model_type": "bert", **CHECKPOINT_TINY.to_dict(), "hidden_act": "gelu_new"}
    (directory / "config.json").write_text(json.dumps(hf_config))
    write_tiny_vocab(directory)
    save_file(hf_from_google(checkpoint_params, 2), directory / "whole.safetensors")
    whole = (directory / "whole.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(whole[:-8])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated"):
        from_pretrained(directory, model="pretrainer", seq_length=8)
