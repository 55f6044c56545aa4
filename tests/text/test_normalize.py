"""keras_bert_min.text.normalize (Google's BasicTokenizer rules as TF string ops) against the
pure-Python transcription of Google's tokenization.py in tests/text/reference_tokenization.py."""

import unicodedata

import pytest
import tensorflow as tf

from keras_bert_min.text.normalize import normalize_text, split_words
from tests.text import reference_tokenization as reference

# Characters added in Unicode 14, which Python 3.11 lower-cases but TensorFlow's ICU does not
# know yet. The only difference in lower-casing; everything else matches (test below).
KNOWN_LOWER_CASE_DIFFERENCES = frozenset(
    [0x2C2F, 0xA7C0, 0xA7D0, 0xA7D6, 0xA7D8] + list(range(0x10570, 0x10596)))

# Cleaning, case, accents (precomposed and combining), wide forms, ligatures, scripts without
# case, and the characters Google deletes (NUL, U+FFFD, controls, format characters).
STRINGS = [
    "Héllo Wörld! Ça va? Ñandú, crème brûlée.",
    "ＦＵＬＬ－ｗｉｄｔｈ Ａｂｃ １２３ ！",
    "ﬁnance ﬂow ǅemal Ĳssel",
    "ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ İstanbul ß ẞ",
    "e\u0301 a\u0308 n\u0303 vs é ä ñ",
    "中文字符测试，日本語のテキスト。",
    "zero\u200bwidth\u200djoiner\ufeffbom soft\u00adhyphen",
    "nul\x00byte and replacement\ufffdchar",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeed\x1cfile sep\x85next line",
    "nbsp\u00a0thin\u2009ideographic\u3000space\u202fnarrow",
    "",
]


def test_normalize_text_by_hand():
    assert normalize_text(tf.constant(["Café\u200b au\tLAIT"])).numpy().tolist() == \
        [b"cafe au lait"]
    assert normalize_text(tf.constant(["Café\u200b au\tLAIT"]), lower_case=False) \
        .numpy().tolist() == ["Café au LAIT".encode()]
    # Invalid UTF-8 bytes vanish, as Google's decode(errors="ignore") drops them.
    assert normalize_text(tf.constant([b"caf\xc3 ok\xff"])).numpy().tolist() == [b"caf ok"]


@pytest.mark.parametrize("lower_case", [True, False])
def test_normalize_text_is_googles_clean_lower_and_strip_accents(lower_case):
    """Google's `_clean_text`, then per word `lower()` and `_strip_accents`: compared word by
    word, since Google splits on whitespace before lower-casing."""
    def google(text):
        text = reference._clean_text(text)
        return reference._strip_accents(text.lower()) if lower_case else text

    normalized = normalize_text(tf.constant(STRINGS), lower_case).numpy().tolist()
    for string, ours in zip(STRINGS, normalized):
        assert ours.decode().split() == google(string).split(), string


def test_split_words_by_hand():
    assert split_words(tf.constant(["Hello, world!", "中文 ok", ""])).to_list() == \
        [[b"hello", b",", b"world", b"!"], ["中".encode(), "文".encode(), b"ok"], []]


@pytest.mark.parametrize("lower_case", [True, False])
def test_word_splitting_matches_google_for_every_assigned_character(lower_case):
    """Each character of Unicode, in a context that exercises case, spaces and punctuation."""
    code_points = [c for c in range(0x110000)
                   if unicodedata.category(chr(c)) not in ("Cn", "Cs")
                   and not (unicodedata.category(chr(c)) == "Co" and c > 0xFFFF)]
    texts = [f"xA{chr(c)}Yb {chr(c)}" for c in code_points]
    words = split_words(tf.constant(texts), lower_case).to_list()
    differences = {c for c, string, got in zip(code_points, texts, words)
                   if [w.decode() for w in got] != reference.basic_tokenize(string, lower_case)}
    known = KNOWN_LOWER_CASE_DIFFERENCES if lower_case else frozenset()
    assert differences <= known, sorted(hex(c) for c in differences - known)
