"""Tests of keras_bert_min.mask_filling: the [MASK]s written in a text, packed by hand here."""

import numpy as np
import pytest

from keras_bert_min import fill_mask
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.pretrained import save_pretrained
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.fixtures import CHECKPOINT_TINY, CHECKPOINT_VOCAB, write_vocab_file

WORD = {token: i for i, token in enumerate(CHECKPOINT_VOCAB)}


@pytest.fixture(scope="module")
def model_and_preprocessor(tmp_path_factory):
    vocab = write_vocab_file(tmp_path_factory.mktemp("vocab") / "vocab.txt", CHECKPOINT_VOCAB)
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    rng = np.random.default_rng(0)
    for variable in pretrainer.weights:  # spread-out logits: a wrong position shows
        variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(np.float32))
    return pretrainer, BertPreprocessor(vocab, 10)


def expected_answers(pretrainer, ids, positions, top_k):
    """Top-k of a softmax over the logits at `positions` of hand-packed `ids`."""
    inputs = {"input_word_ids": np.array([ids], np.int32),
              "input_mask": np.ones((1, len(ids)), np.int32),
              "input_type_ids": np.zeros((1, len(ids)), np.int32),
              "masked_lm_positions": np.array([positions], np.int32)}
    logits = np.asarray(pretrainer(inputs)["mlm_logits"], np.float64)[0]
    answers = []
    for row in logits:
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        best = sorted(range(len(row)), key=lambda t: -probabilities[t])[:top_k]
        answers.append([(CHECKPOINT_VOCAB[t], probabilities[t]) for t in best])
    return answers


def assert_same_answers(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert [token for token, _ in got] == [token for token, _ in want]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in want], atol=1e-6)


def test_every_written_mask_is_answered_at_its_place(model_and_preprocessor):
    pretrainer, preprocessor = model_and_preprocessor
    [answers] = fill_mask(pretrainer, preprocessor, ["word3 [MASK] word5 [MASK]"], top_k=3)
    # [CLS] word3 [MASK] word5 [MASK] [SEP]: the masks at positions 2 and 4.
    ids = [WORD["[CLS]"], WORD["word3"], WORD["[MASK]"], WORD["word5"], WORD["[MASK]"],
           WORD["[SEP]"]]
    assert_same_answers(answers, expected_answers(pretrainer, ids, [2, 4], 3))


def test_a_batch_answers_as_each_text_alone(model_and_preprocessor):
    pretrainer, preprocessor = model_and_preprocessor
    texts = ["[MASK] word1", "word2 word3 word4 [MASK] word6 [MASK] word7", "no mask word8"]
    together = fill_mask(pretrainer, preprocessor, texts)
    assert [len(answers) for answers in together] == [1, 2, 0]
    for text, answers in zip(texts, together):
        assert_same_answers(answers, fill_mask(pretrainer, preprocessor, text)[0])


def test_masks_past_seq_length_are_not_answered(model_and_preprocessor):
    pretrainer, preprocessor = model_and_preprocessor  # seq_length 10: [CLS] + 8 + [SEP]
    [answers] = fill_mask(pretrainer, preprocessor, [" ".join(["word1"] * 7 + ["[MASK]"] * 3)])
    assert len(answers) == 1


def test_reads_a_saved_pretrainer_directory(model_and_preprocessor, tmp_path):
    pretrainer, preprocessor = model_and_preprocessor
    save_pretrained(pretrainer, tmp_path / "run", preprocessor)
    text = ["word9 [MASK] word10"]
    assert_same_answers(fill_mask(str(tmp_path / "run"), texts=text)[0],
                        fill_mask(pretrainer, preprocessor, text)[0])


def test_bad_arguments_are_named(model_and_preprocessor):
    pretrainer, preprocessor = model_and_preprocessor
    with pytest.raises(ValueError, match="needs a BertPretrainer"):
        fill_mask(pretrainer.encoder, preprocessor, ["[MASK]"])
    with pytest.raises(ValueError, match="top_k must be an integer of at least 1"):
        fill_mask(pretrainer, preprocessor, ["[MASK]"], top_k=0)
    with pytest.raises(ValueError, match="needs the model's BertPreprocessor"):
        fill_mask(pretrainer, None, ["[MASK]"])
