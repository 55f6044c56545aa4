"""Google's BasicTokenizer rules as TF string ops: clean, lower-case, strip accents, split.

    normalize_text  `_clean_text`, and (lower_case) `str.lower()`, NFD and dropping marks (Mn)
    split_words     normalised words, with punctuation and CJK ideographs as words of their own

Both the vocab learner (`vocab.py`) and the tokenizer (`preprocessor.py`) split words here, so
every learned piece can be produced by the tokenizer. See `preprocessor.py` for why these are
core string ops rather than tensorflow-text's `BertTokenizer` normaliser.
"""

import tensorflow as tf
import tensorflow_text as tf_text

# Google's `_is_whitespace`, plus U+2028 and U+2029, on which its `str.split()` also splits.
_WHITESPACE = r"[\t\n\r\p{Zs}\x{2028}\x{2029}]"
# Google's `_clean_text` deletes these (\t \n \r were turned into spaces before).
_DELETED = r"[\x00\x{FFFD}\p{Cc}\p{Cf}]"
# Google's `_is_punctuation`: all non-alphanumeric ASCII, and every Unicode P* category.
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
# Google's `_is_chinese_char`: the CJK Unified Ideographs blocks and compatibility ideographs.
_CJK = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")


def normalize_text(strings, lower_case=True):
    """Google's `_clean_text`, and with `lower_case` its lower-casing and accent stripping.

    Args:
        strings: tf.string tensor of any shape.
        lower_case: lower-case, NFD-decompose and drop combining marks (Mn).

    Returns:
        tf.string tensor of the same shape.

    Example:
    >>> normalize_text(tf.constant(["Café\\u200b au\\tLAIT"])).numpy()
    array([b'cafe au lait'], dtype=object)
    """
    # Google decodes bytes with errors="ignore": invalid UTF-8 bytes vanish.
    strings = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="ignore")
    strings = tf.strings.regex_replace(strings, _WHITESPACE, " ")
    strings = tf.strings.regex_replace(strings, _DELETED, "")
    if lower_case:
        strings = tf.strings.lower(strings, encoding="utf-8")
        strings = tf_text.normalize_utf8(strings, "NFD")
        strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
    return strings


def split_words(strings, lower_case=True):
    """Google's `BasicTokenizer`: normalised words, punctuation and CJK characters on their own.

    Args:
        strings: tf.string tensor [B].
        lower_case: as in `normalize_text`.

    Returns:
        tf.string RaggedTensor [B, (words)].

    Example:
    >>> split_words(tf.constant(["Hello, world!"])).to_list()
    [[b'hello', b',', b'world', b'!']]
    """
    strings = normalize_text(strings, lower_case)
    return tf_text.regex_split(strings, delim_regex_pattern=f" +|{_PUNCTUATION}|{_CJK}",
                            keep_delim_regex_pattern=f"{_PUNCTUATION}|{_CJK}")
