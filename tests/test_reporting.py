"""Tests of keras_bert_min.reporting's fill-mask probes, on a model rigged to one answer."""

import re

import numpy as np

from keras_bert_min import reporting
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.fixtures import SPECIAL_TOKENS, tiny_config, write_vocab_file


def test_probes_count_top1_hits(tmp_path):
    words = sorted({w for text, answer in reporting.PROBES
                    for w in re.findall(r"[a-z]+", text.lower().replace("[mask]", ""))}
                   | {answer for _, answer in reporting.PROBES})
    vocab = SPECIAL_TOKENS + words + [".", "?", ","]
    preprocessor = BertPreprocessor(write_vocab_file(tmp_path / "vocab.txt", vocab), 32)
    pretrainer = BertPretrainer(BertEncoder(tiny_config(len(vocab))))
    # A model that always answers "night": only the first probe expects it.
    bias = np.zeros(len(vocab), np.float32)
    bias[vocab.index("night")] = 100.0
    pretrainer.get_layer("masked_lm").output_bias.assign(bias)
    result, lines = reporting.probe_report(pretrainer, preprocessor)
    assert (result["hits"], result["of"]) == (1, 8)
    assert all(answer["guesses"][0][0] == "night" for answer in result["answers"])
    assert lines[0] == "Fill-mask probes (top-1 hits: 1 of 8):"
    assert lines[1].endswith("(hit)") and lines[2].endswith("(expected 'much')")
