"""Byte offsets of words and word pieces in the original text (normalize.split_words_with_offsets,
BertPreprocessor.tokenize_with_offsets, pack(offsets=...)).

The reference is Google's own normalisation (tests/text/reference_tokenization.py, never
importing keras_bert_min): the bytes an offset pair cuts out of the original text, normalised
by Google's rules, must be exactly the piece's text. Hand-written offsets pin a few cases.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bert_min.text.normalize import split_words, split_words_with_offsets
from keras_bert_min.text.serving_ops import unservable_ops
from tests.text import reference_tokenization as reference
from tests.text.test_preprocessor import HARD_STRINGS, VOCAB, preprocessor_for


def google_normalized(text, lower_case):
    """What Google's BasicTokenizer makes of a piece of text, without splitting it.

    Capital sigma lower-cases to final sigma at a word's end (Unicode's Final_Sigma, the one
    context-dependent rule of `str.lower`), which a piece cut out of its word cannot know:
    the two sigmas compare equal here."""
    return "".join(reference.basic_tokenize(text, do_lower_case=lower_case)).replace("ς", "σ")


def check_piece_offsets(texts, lower_case):
    """Each piece's bytes, normalised by Google's rules, are the piece. Where normalisation
    splits one character into several pieces (Hangul syllables decompose into jamo under
    NFD), those pieces share that character's bytes: overlapping pieces are checked as one
    group, whose bytes must normalise to the group's pieces joined."""
    preprocessor = preprocessor_for(lower_case=lower_case)
    ids, starts, ends = preprocessor.tokenize_with_offsets(texts)
    assert ids.to_list() == preprocessor.tokenize(texts).to_list()
    for text, row_ids, row_starts, row_ends in zip(texts, ids.to_list(), starts.to_list(),
                                                   ends.to_list()):
        data = text.encode("utf-8") if isinstance(text, str) else text
        groups = []  # [start, end, pieces]
        for piece_id, start, end in zip(row_ids, row_starts, row_ends):
            assert 0 <= start < end <= len(data), (text, start, end)
            if groups and start < groups[-1][1]:
                assert start >= groups[-1][0], (text, groups[-1], start)
                groups[-1][1] = max(groups[-1][1], end)
                groups[-1][2].append(piece_id)
            else:
                groups.append([start, end, [piece_id]])
        for start, end, pieces in groups:
            cut = data[start:end].decode("utf-8", "ignore")
            # Offsets fall on character boundaries: the cut decodes whole.
            assert data[start:end].decode("utf-8", "replace") == cut, (text, start, end)
            names = [VOCAB[piece] for piece in pieces]
            if "[UNK]" in names:  # a whole word: its bytes are one word of Google's
                assert names == ["[UNK]"], (text, names)
                assert len(reference.basic_tokenize(cut, lower_case)) == 1, (text, cut)
            else:
                assert google_normalized(cut, lower_case) == "".join(
                    name.removeprefix("##") for name in names).replace("ς", "σ"), (
                    text, names, cut)


@pytest.mark.parametrize("lower_case", [True, False])
def test_piece_offsets_cut_out_each_piece_on_hard_strings(lower_case):
    check_piece_offsets(HARD_STRINGS, lower_case)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3), st.booleans())
def test_piece_offsets_cut_out_each_piece_on_any_unicode(texts, lower_case):
    check_piece_offsets(texts, lower_case)


def test_hand_written_offsets():
    preprocessor = preprocessor_for()
    text = ["Café unaffable! 日本", "a\xffb".encode("latin-1"), "", "x" * 201 + " ok"]
    text[1] = b"a\xffb"  # an invalid byte inside a word: dropped, the word spans it
    ids, starts, ends = preprocessor.tokenize_with_offsets(tf.constant(text))
    assert [[VOCAB[i] for i in row] for row in ids.to_list()][0] == [
        "cafe", "una", "##ffa", "##ble", "!", "日", "本"]
    # C a f é = 5 bytes; 日 and 本 3 bytes each.
    assert starts.to_list()[0] == [0, 6, 9, 12, 15, 17, 20]
    assert ends.to_list()[0] == [5, 9, 12, 15, 16, 20, 23]
    assert (starts.to_list()[1], ends.to_list()[1]) == ([0], [3])
    assert (starts.to_list()[2], ends.to_list()[2]) == ([], [])
    # A word over 200 characters is one [UNK] spanning it.
    assert [VOCAB[i] for i in ids.to_list()[3]] == ["[UNK]", "ok"]
    assert (starts.to_list()[3], ends.to_list()[3]) == ([0, 202], [201, 204])


def test_word_offsets_and_words_equal_split_words():
    strings = tf.constant([text.encode("utf-8") for text in HARD_STRINGS])
    words, starts, ends = split_words_with_offsets(strings)
    assert words.to_list() == split_words(strings).to_list()
    assert starts.shape.as_list() == words.shape.as_list()
    w, s, e = split_words_with_offsets(tf.constant(["Café, ok"]))
    assert (w.to_list(), s.to_list(), e.to_list()) == ([[b"cafe", b",", b"ok"]], [[0, 5, 7]],
                                                      [[5, 6, 9]])


def test_pack_offsets_follow_the_kept_pieces_with_minus_one_on_specials():
    preprocessor = preprocessor_for(seq_length=8)
    question, context = ["Who?"], ["Anna went home to see her old cat today"]
    q_ids, q_starts, q_ends = preprocessor.tokenize_with_offsets(question)
    c_ids, c_starts, c_ends = preprocessor.tokenize_with_offsets(context)
    packed = preprocessor.pack([q_ids, c_ids], offsets=[(q_starts, q_ends), (c_starts, c_ends)])
    plain = preprocessor.pack([q_ids, c_ids])
    for name in plain:
        np.testing.assert_array_equal(packed[name], plain[name])
    # [CLS] who ? [SEP] anna went home [SEP]: Google's pair trimming keeps 3 context pieces.
    assert packed["start_offsets"].numpy().tolist() == [[-1, 0, 3, -1, 0, 5, 10, -1]]
    assert packed["end_offsets"].numpy().tolist() == [[-1, 3, 4, -1, 4, 9, 14, -1]]
    single = preprocessor.pack([c_ids], padding="longest", offsets=[(c_starts, c_ends)])
    assert single["start_offsets"].dtype == tf.int64
    assert single["start_offsets"].numpy().tolist() == [[-1, 0, 5, 10, 15, 18, 22, -1]]
    with pytest.raises(ValueError, match="offsets for 1 segments, and 2 segments"):
        preprocessor.pack([q_ids, c_ids], offsets=[(q_starts, q_ends)])


def test_offsets_graph_is_servable():
    preprocessor = preprocessor_for()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def offsets(text):
        ids, starts, ends = preprocessor.tokenize_with_offsets(text)
        return preprocessor.pack([ids], offsets=[(starts, ends)])

    graph = offsets.get_concrete_function()
    assert unservable_ops(graph) == []
    assert offsets(tf.constant(["", "ok"]))["start_offsets"].numpy().tolist()[1][:3] == [-1, 0,
                                                                                         -1]
