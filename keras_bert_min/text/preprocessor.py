"""BertPreprocessor: text to the three BERT encoder inputs, as TF ops, with Google's exact ids.

The pipeline is Google's `FullTokenizer` (`tokenization.py`) followed by the packing of
`run_classifier.py`, one TF op per rule, so it runs eagerly, inside `tf.data` and inside a
SavedModel served by stock TF Serving:

    clean      drop invalid UTF-8, NUL, U+FFFD and control/format characters (Cc, Cf);
               tab, newline, carriage return and space separators become a space
    lower      (lower_case only) Python's `str.lower()`, then NFD, then drop accents (Mn)
    split      on spaces, and around punctuation and CJK ideographs, which become words
    WordPiece  greedy longest match first with "##"; a word over 200 characters is [UNK]
    pack       [CLS] A [SEP] (B [SEP]), pairs trimmed as `_truncate_seq_pair`, zero-padded

Why not tensorflow-text's `BertTokenizer(lower_case=True)`: it case-folds with NFKC (so "ﬁ"
becomes "fi" and full-width letters become ASCII, which Google's code leaves alone) and turns
control characters into spaces (Google deletes them, joining the words around them). Here the
normalisation is done with core string ops instead, and tensorflow-text only splits words and
runs WordPiece.

Known differences from Google's Python code come only from Unicode versions. Python 3.11 knows
Unicode 14; TensorFlow's ICU knows an older one, so the capital letters Unicode 14 added
(U+2C2F, U+A7C0, U+A7D0, U+A7D6, U+A7D8 and Vithkuqi U+10570..U+10595) are not lower-cased
here. TensorFlow's RE2 knows a newer one, so some code points that Python still calls
unassigned are treated here as the marks or punctuation they have since become. The tests check
every other assigned character. Lower-casing otherwise matches Python exactly, final sigma and
dotted capital I included, because `tf.strings.lower(..., encoding="utf-8")` applies ICU's full
case mapping as `str.lower()` does.
"""

import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_min._checks import check_int, write_json
from keras_bert_min.text.normalize import (normalize_text, original_offsets, split_normalized,
                                          split_words)
from keras_bert_min.text.vocab import (CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, RESERVED_TOKENS, SEP_TOKEN,
                                       UNK_TOKEN, read_vocab, write_vocab)

# Nothing here branches on tensor values, so AutoGraph has nothing to convert; skipping it
# makes tracing inside a user's tf.function (or a tf.data map) several times faster.
_plain_tf = tf.autograph.experimental.do_not_convert

# Google's WordpieceTokenizer turns a word of more characters than this into one [UNK].
MAX_CHARS_PER_WORD = 200

# What `BertPreprocessor.save` writes into a directory.
VOCAB_FILE = "vocab.txt"
SETTINGS_FILE = "preprocessor.json"

# `pack(padding=...)`: pad to seq_length, or to the batch's longest example.
PADDING_MODES = ("max_length", "longest")

def pair_truncation_lengths(len_a, len_b, budget):
    """How many tokens of A and of B `run_classifier._truncate_seq_pair` keeps, in closed form.

    Google pops from the longer list, from B on a tie, until `len_a + len_b <= budget`. So a
    side shorter than its half of the budget is kept whole and the other side gets the rest;
    otherwise A keeps ceil(budget / 2) and B floor(budget / 2).

    Args:
        len_a, len_b: int tensors of the same shape, the untruncated lengths.
        budget: int, tokens left for A and B together (seq_length - 3).

    Returns:
        (kept_a, kept_b), int tensors like `len_a`.

    Example:
    >>> [int(n) for n in pair_truncation_lengths(tf.constant(9), tf.constant(2), 5)]
    [3, 2]
    """
    kept_a = tf.minimum(len_a, tf.maximum(budget - len_b, (budget + 1) // 2))
    kept_b = tf.minimum(len_b, tf.maximum(budget - len_a, budget // 2))
    return kept_a, kept_b


class BertPreprocessor(tf.Module):
    """Text, or text pairs, to `input_word_ids`, `input_mask` and `input_type_ids`.

    Gives exactly the ids of Google's `tokenization.FullTokenizer` (see the module docstring
    for the rules and the few known differences) and packs them as `run_classifier.py` does.
    Text never yields a special token: a typed "[SEP]" is the three words "[", "sep", "]".
    A `tf.Module`, so a SavedModel that holds it also holds its vocab table.

    Args:
        vocab_file: a BERT `vocab.txt` (see `read_vocab`).
        seq_length: length of the packed outputs; at least 3 ([CLS] [SEP] [SEP]).
        lower_case: lower-case and strip accents, as for Google's uncased models.

    Call with a tf.string batch [B] (or a list of str) for single texts, or a list or tuple of
    two such batches for pairs. Returns a dict of int32 [B, seq_length] tensors, or with
    `padding="longest"` [B, L] tensors, L the longest packed example of the batch (<= seq_length).

    Example:
    >>> preprocessor = BertPreprocessor("vocab.txt", seq_length=8)
    >>> preprocessor(["Hello world!"])["input_word_ids"]  # [CLS] hello world ! [SEP] 0 0 0
    >>> preprocessor([["Is it?"], ["Yes."]])["input_type_ids"]  # 0 0 0 0 0 1 1 1
    >>> preprocessor(["Hello world!"], padding="longest")["input_mask"]  # 1 1 1 1 1
    """

    def __init__(self, vocab_file, seq_length, lower_case=True, name="bert_preprocessor"):
        super().__init__(name=name)
        check_int("seq_length", seq_length, 3, hint=" to hold [CLS] and two [SEP] tokens")
        if not isinstance(lower_case, bool):
            raise ValueError(f"lower_case must be True or False, got {lower_case!r}.")
        self._vocab_file = os.fspath(vocab_file)
        self._seq_length = seq_length
        self._lower_case = lower_case
        vocab = read_vocab(self._vocab_file)
        # An array, not a list: tf.Module walks every item of a list or dict attribute whenever
        # it is saved or asked for its variables, which is slow for 30k tokens.
        self._vocab = np.array(vocab, dtype=object)
        self._special_ids = {token: vocab.index(token) for token in RESERVED_TOKENS}

        self.vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)),
            default_value=-1)
        longest_piece = max(len(token.removeprefix("##")) for token in vocab)
        self._wordpiece = tf_text.WordpieceTokenizer(
            self.vocab_table,
            token_out_type=tf.int32,
            unknown_token=UNK_TOKEN,
            # Words over MAX_CHARS_PER_WORD characters are replaced before WordPiece runs, so
            # the byte limit must let through any shorter word (up to 4 bytes a character).
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
            # No piece is longer, so the greedy search may start there: same result, faster.
            max_chars_per_token=longest_piece)

    # --- properties --------------------------------------------------------------------------

    @property
    def vocab(self):
        """The tokens, id = position."""
        return self._vocab.tolist()

    @property
    def vocab_size(self):
        return len(self._vocab)

    @property
    def pad_id(self):
        return self._special_ids[PAD_TOKEN]

    @property
    def unk_id(self):
        return self._special_ids[UNK_TOKEN]

    @property
    def cls_id(self):
        return self._special_ids[CLS_TOKEN]

    @property
    def sep_id(self):
        return self._special_ids[SEP_TOKEN]

    @property
    def mask_id(self):
        return self._special_ids[MASK_TOKEN]

    @property
    def seq_length(self):
        return self._seq_length

    @property
    def lower_case(self):
        return self._lower_case

    def get_config(self):
        return {"vocab_file": self._vocab_file, "seq_length": self._seq_length,
                "lower_case": self._lower_case}

    # --- saving and loading ------------------------------------------------------------------

    def save(self, directory):
        """Writes `vocab.txt` and `preprocessor.json` (`{"seq_length", "lower_case"}`) into
        `directory` (created if missing), each file atomically; `load` reads them back."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        write_vocab(self.vocab, os.path.join(directory, VOCAB_FILE))
        write_json(os.path.join(directory, SETTINGS_FILE),
                   {"seq_length": self._seq_length, "lower_case": self._lower_case})
        return directory

    @staticmethod
    def read_settings(directory):
        """The dict of `preprocessor.json` in `directory` (`seq_length`, `lower_case`)."""
        path = os.path.join(os.fspath(directory), SETTINGS_FILE)
        with open(path, encoding="utf-8") as f:
            try:
                settings = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path!r} is not valid JSON ({e}); fix or delete it.") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{path!r} must hold a JSON object with seq_length and "
                             f"lower_case, got {settings!r:.80}.")
        return settings

    @classmethod
    def load(cls, directory, seq_length=None, lower_case=None):
        """The preprocessor `save` wrote into `directory`; `seq_length` or `lower_case`, when
        given, override the saved settings (they are required when there is no
        `preprocessor.json`, as next to Google's or Hugging Face's vocab.txt).

        Example:
        >>> preprocessor = BertPreprocessor.load("runs/classifier")
        """
        directory = os.fspath(directory)
        vocab_file = os.path.join(directory, VOCAB_FILE)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"No {VOCAB_FILE} in {directory!r}; pass the directory "
                                    "BertPreprocessor.save (or save_pretrained) wrote.")
        settings = (cls.read_settings(directory)
                    if os.path.isfile(os.path.join(directory, SETTINGS_FILE)) else {})
        seq_length = settings.get("seq_length") if seq_length is None else seq_length
        lower_case = settings.get("lower_case") if lower_case is None else lower_case
        if seq_length is None or lower_case is None:
            raise ValueError(f"{directory!r} has no {SETTINGS_FILE} with seq_length and "
                             "lower_case; pass both.")
        return cls(vocab_file, seq_length, lower_case=lower_case)

    # --- text to ids ---------------------------------------------------------------------------

    @_plain_tf
    def tokenize(self, strings):
        """WordPiece ids of each string, as Google's `FullTokenizer` gives them.

        Args:
            strings: tf.string [B] (or a list of str).

        Returns:
            int32 RaggedTensor [B, (wordpieces)], no special tokens added.

        Example:
        >>> preprocessor.tokenize(["unaffable"])  # bert-base-uncased: [[una, ##ffa, ##ble]]
        """
        strings = _as_string_batch(strings)
        words = split_words(strings, self._lower_case)
        # Replacing a too-long word by the literal "[UNK]" makes WordPiece emit exactly one
        # [UNK] for it; a real word can never be "[UNK]", since "[" and "]" split words.
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, UNK_TOKEN, words.flat_values))
        pieces = self._wordpiece.tokenize(words)  # [B, (words), (pieces)]
        return pieces.merge_dims(1, 2)

    @_plain_tf
    def tokenize_with_offsets(self, strings):
        """`tokenize`, with each word piece's byte offsets in its input string.

        The ids are exactly `tokenize`'s. A piece spans the original bytes it came from
        (`normalize.split_words_with_offsets`): "Café" is "[caf, ##e]" with offsets (0, 3) and
        (3, 5); a word's single [UNK] spans the word.

        Args:
            strings: tf.string [B] (or a list of str).

        Returns:
            `(ids, starts, ends)`: the int32 RaggedTensor [B, (pieces)] of `tokenize` and int64
            RaggedTensors of its shape, the `[start, end)` byte offsets of each piece.

        Example:
        >>> ids, starts, ends = preprocessor.tokenize_with_offsets(["Unaffable!"])
        >>> starts.to_list(), ends.to_list()  # una ##ffa ##ble !
        ([[0, 3, 6, 9]], [[3, 6, 9, 10]])
        """
        strings = _as_string_batch(strings)
        words, word_starts, word_ends = split_normalized(normalize_text(strings,
                                                                        self._lower_case),
                                                         offsets=True)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, UNK_TOKEN, words.flat_values))
        pieces, piece_starts, piece_ends = self._wordpiece.tokenize_with_offsets(words)
        # Offsets of pieces are within their word; a too-long word's [UNK] spans the word.
        word_of_piece = pieces.values.value_rowids()  # index into the flat words
        too_long = tf.gather(too_long, word_of_piece)
        word_start = tf.gather(word_starts.flat_values, word_of_piece)
        word_length = tf.gather(word_ends.flat_values - word_starts.flat_values, word_of_piece)
        starts = word_start + tf.where(too_long, tf.zeros_like(word_length),
                                       piece_starts.flat_values)
        ends = word_start + tf.where(too_long, word_length, piece_ends.flat_values)
        ids = pieces.merge_dims(1, 2)
        to_original = original_offsets(strings, self._lower_case)
        return (ids, to_original(ids.with_flat_values(starts), "start"),
                to_original(ids.with_flat_values(ends), "end"))

    @_plain_tf
    def pack(self, segments, padding="max_length", offsets=None):
        """`[CLS] A [SEP] (B [SEP])`, truncated to `seq_length` and zero-padded.

        A single segment keeps its first `seq_length - 2` ids; a pair is trimmed as
        `run_classifier._truncate_seq_pair` does (see `pair_truncation_lengths`), and a pair
        whose B is empty is packed as A alone, as `convert_single_example` does.

        Args:
            segments: a list of one or two int32 RaggedTensors [B, (ids)], e.g. from `tokenize`.
            padding: "max_length" pads every example to `seq_length` (static shapes, as TPUs
                and fixed-shape training need); "longest" pads only to the batch's longest
                example, which spares the encoder the work on padding (serving, inference).
                Truncation is the same either way.
            offsets: optional, the `(starts, ends)` of each segment from
                `tokenize_with_offsets`, packed beside the ids.

        Returns:
            dict of int32 [B, seq_length] (or [B, longest]) tensors `input_word_ids` (padded
            with `pad_id`), `input_mask` (1 on tokens) and `input_type_ids` (1 on `B [SEP]`);
            with `offsets`, also int64 `start_offsets` and `end_offsets`: each word piece's
            `[start, end)` bytes in its text, -1 on [CLS], [SEP] and padding.

        Example:
        >>> preprocessor.pack([preprocessor.tokenize(["a question"]),
        ...                    preprocessor.tokenize(["an answer"])])
        """
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
        segments = list(segments)
        if len(segments) not in (1, 2):
            raise ValueError(f"pack() takes one segment or a pair of segments, got {len(segments)}.")
        if offsets is not None and len(offsets) != len(segments):
            raise ValueError(f"pack() got offsets for {len(offsets)} segments, and "
                             f"{len(segments)} segments; pass one (starts, ends) per segment.")
        segments = [_as_ragged_ids(segment) for segment in segments]
        batch_sizes = [segment.shape[0] for segment in segments]
        if None not in batch_sizes and len(set(batch_sizes)) > 1:
            raise ValueError(f"The segments of a pair have different batch sizes {batch_sizes}; "
                             "pass one text B for each text A.")
        batch_size = segments[0].nrows(out_type=tf.int32)
        all_rows = tf.ones([batch_size], tf.bool)
        if len(segments) == 1:
            kept = [tf.minimum(segments[0].row_lengths(), self._seq_length - 2)]
            has_sep = [all_rows]  # whether each segment is followed by a [SEP]
        else:
            len_a, len_b = (segment.row_lengths() for segment in segments)
            kept_a, kept_b = pair_truncation_lengths(len_a, len_b, self._seq_length - 3)
            # Google packs a pair whose B tokenizes to nothing ("", " ", "\u200b") as a single
            # text (`if tokens_b:` in convert_single_example): [CLS] A [SEP], A up to
            # seq_length - 2, no second [SEP].
            has_b = len_b > 0
            kept = [tf.where(has_b, kept_a, tf.minimum(len_a, self._seq_length - 2)), kept_b]
            has_sep = [all_rows, has_b]

        def assemble(rows, cls_value, sep_values):
            """[CLS] A [SEP] (B [SEP]) of per-token values: each segment cut to its kept length."""
            def column(value):
                return tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], value))
            parts = [column(cls_value)]
            for row, count, sep_value, sep_kept in zip(rows, kept, sep_values, has_sep):
                parts += [_keep_first(row, count),
                          tf.ragged.boolean_mask(column(sep_value), tf.expand_dims(sep_kept, 1))]
            return tf.concat(parts, axis=1)

        word_ids = assemble(segments, self.cls_id, [self.sep_id] * len(segments))
        type_ids = assemble([tf.ones_like(segment) * i for i, segment in enumerate(segments)],
                            0, list(range(len(segments))))

        if padding == "max_length":
            shape = [None, self._seq_length]
        else:
            # The longest row; an empty batch still gets the 1 + len(segments) columns of the
            # special tokens, since a model reads [CLS] at position 0.
            longest = tf.maximum(tf.cast(tf.reduce_max(word_ids.row_lengths()), tf.int32),
                                 1 + len(segments))
            shape = tf.stack([batch_size, longest])
        packed = {
            "input_word_ids": word_ids.to_tensor(self.pad_id, shape=shape),
            "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=shape),
            "input_type_ids": type_ids.to_tensor(0, shape=shape),
        }
        for index, name in enumerate(("start_offsets", "end_offsets")):
            if offsets is not None:  # -1 on [CLS], [SEP] and padding
                none = tf.constant(-1, tf.int64)
                rows = [tf.cast(pair[index], tf.int64) for pair in offsets]
                packed[name] = assemble(rows, none, [none] * len(rows)).to_tensor(-1, shape=shape)
        return packed

    @_plain_tf
    def __call__(self, inputs, padding="max_length"):
        """Packs single texts [B] or a pair `[texts_a, texts_b]`; see the class docstring and
        `pack` for `padding`."""
        return self.pack([self.tokenize(segment) for segment in _as_segments(inputs)],
                         padding=padding)


def _as_segments(inputs):
    """One batch of strings, or a list/tuple of one or two batches, as a list of batches."""
    if isinstance(inputs, (list, tuple)) and inputs and not isinstance(inputs[0], (str, bytes)):
        if len(inputs) > 2:
            raise ValueError(f"BertPreprocessor takes a batch of texts or a pair of batches, got "
                             f"a list of {len(inputs)} batches.")
        return list(inputs)
    return [inputs]


def _as_string_batch(strings):
    strings = tf.convert_to_tensor(strings)
    if strings.dtype != tf.string:
        raise ValueError(f"BertPreprocessor expects tf.string texts, got dtype {strings.dtype.name}.")
    if strings.shape.rank is None:
        return tf.ensure_shape(strings, [None])
    if strings.shape.rank != 1:
        raise ValueError(f"BertPreprocessor expects a batch of texts of shape [B], got shape "
                         f"{strings.shape}; reshape to [-1] (or wrap a single text in a list).")
    return strings


def _as_ragged_ids(ids):
    if isinstance(ids, tf.RaggedTensor):
        return tf.cast(ids, tf.int32)
    if isinstance(ids, tf.Tensor):
        return tf.RaggedTensor.from_tensor(tf.cast(ids, tf.int32))
    return tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1)


def _keep_first(ids, counts):
    """The first `counts[i]` ids of each row i of the RaggedTensor `ids`."""
    positions = tf.ragged.range(ids.row_lengths())
    return tf.ragged.boolean_mask(ids, positions < tf.expand_dims(counts, 1))
