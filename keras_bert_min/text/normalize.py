"""Google's BasicTokenizer rules as TF string ops: clean, lower-case, strip accents, split.

    normalize_text            `_clean_text`, and (lower_case) `str.lower()`, NFD and dropping
                              marks (Mn)
    split_words               normalised words, punctuation and CJK ideographs words of their own
    split_words_with_offsets  the same words, with their byte offsets in the original text
    original_offsets          offsets in the normalised text -> offsets in the original

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
    return split_normalized(normalize_text(strings, lower_case))



def split_words_with_offsets(strings, lower_case=True):
    """`split_words`, with each word's byte offsets in the original (unnormalised) string.

    The words are exactly those of `split_words`. Offsets come from normalising each
    character on its own (`original_offsets`): a word spans the characters whose normalised
    bytes it covers, so "Café" lower-cased to "cafe" spans all 5 bytes, and a word never starts
    on a character that normalisation deleted (a control character, an invalid byte, an accent
    stripped from a decomposed letter).

    Args:
        strings: tf.string tensor [B].
        lower_case: as in `normalize_text`.

    Returns:
        `(words, starts, ends)`: tf.string RaggedTensor [B, (words)] and int64 RaggedTensors
        of the same shape, `[start, end)` byte offsets into `strings`.

    Example:
    >>> words, starts, ends = split_words_with_offsets(tf.constant(["Café, ok"]))
    >>> words.to_list(), starts.to_list(), ends.to_list()
    ([[b'cafe', b',', b'ok']], [[0, 5, 7]], [[5, 6, 9]])
    """
    words, starts, ends = split_normalized(normalize_text(strings, lower_case), offsets=True)
    to_original = original_offsets(strings, lower_case)
    return words, to_original(starts, "start"), to_original(ends, "end")


def split_normalized(normalized, offsets=False):
    """The words of normalised text (`split_words` without the normalising), with their byte
    offsets in it if `offsets`: `(words, starts, ends)`."""
    split = tf_text.regex_split_with_offsets if offsets else tf_text.regex_split
    return split(normalized, delim_regex_pattern=f" +|{_PUNCTUATION}|{_CJK}",
                 keep_delim_regex_pattern=f"{_PUNCTUATION}|{_CJK}")


def original_offsets(strings, lower_case=True):
    """A function mapping byte offsets in `normalize_text(strings)` back to `strings`.

    Each original character is normalised on its own; its normalised bytes are the span of
    the running sum of those lengths. A start offset maps to the start of the character its
    byte came from, an end offset to the end of the character holding its last byte.

    Args:
        strings: tf.string tensor [B].
        lower_case: as in `normalize_text`.

    Returns:
        `to_original(offsets, kind)`: offsets an int64 RaggedTensor [B, (n)] into the
        normalised strings, kind "start" or "end"; returns int64 offsets into `strings`.
    """
    code_points, char_starts = tf.strings.unicode_decode_with_offsets(strings, "UTF-8",
                                                                      errors="ignore")
    chars = tf.strings.unicode_encode(tf.expand_dims(code_points, -1), "UTF-8")
    char_ends = char_starts + tf.cast(tf.strings.length(chars), tf.int64)
    normalized_ends = tf.cumsum(tf.cast(tf.strings.length(normalize_text(chars, lower_case)),
                                        tf.int64), axis=1)
    # Padding past every real end keeps each row sorted for searchsorted; one more column for
    # all rows makes every index valid, even in a batch of empty strings.
    extra = tf.fill(tf.stack([tf.shape(strings, tf.int64)[0], 1]), tf.int64.max)
    sorted_ends = tf.concat([normalized_ends.to_tensor(tf.int64.max), extra], axis=1)
    char_offsets = {"start": tf.concat([char_starts.to_tensor(0), 0 * extra], axis=1),
                    "end": tf.concat([char_ends.to_tensor(0), 0 * extra], axis=1)}

    def to_original(offsets, kind):
        # The character a start byte falls in: the first whose normalised end passes it; the
        # character an end (exclusive) closes: the first whose normalised end reaches it.
        index = tf.searchsorted(sorted_ends, offsets.to_tensor(0),
                                side="right" if kind == "start" else "left", out_type=tf.int64)
        found = tf.gather(char_offsets[kind], index, batch_dims=1)
        return tf.RaggedTensor.from_tensor(found, lengths=offsets.row_lengths())

    return to_original
