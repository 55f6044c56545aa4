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
from keras_bert_min.text.normalize import split_words
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

# The tensorflow-text ops that stock TF Serving links in. Every other op of a serving graph
# must be a core TensorFlow op (see `unservable_ops`).
SERVING_SAFE_TF_TEXT_OPS = frozenset({
    "WordpieceTokenizeWithOffsets",       # WordpieceTokenizer, BertTokenizer
    "FastWordpieceTokenizeWithOffsets",   # FastWordpieceTokenizer
    "RegexSplitWithOffsets",              # regex_split, BertTokenizer's BasicTokenizer
    "NormalizeUTF8",                      # normalize_utf8
    "CaseFoldUTF8",                       # case_fold_utf8
})


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
    def pack(self, segments, padding="max_length"):
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

        Returns:
            dict of int32 [B, seq_length] (or [B, longest]) tensors `input_word_ids` (padded
            with `pad_id`), `input_mask` (1 on tokens) and `input_type_ids` (1 on `B [SEP]`).

        Example:
        >>> preprocessor.pack([preprocessor.tokenize(["a question"]),
        ...                    preprocessor.tokenize(["an answer"])])
        """
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
        segments = list(segments)
        if len(segments) not in (1, 2):
            raise ValueError(f"pack() takes one segment or a pair of segments, got {len(segments)}.")
        segments = [_as_ragged_ids(segment) for segment in segments]
        batch_sizes = [segment.shape[0] for segment in segments]
        if None not in batch_sizes and len(set(batch_sizes)) > 1:
            raise ValueError(f"The segments of a pair have different batch sizes {batch_sizes}; "
                             "pass one text B for each text A.")
        batch_size = segments[0].nrows(out_type=tf.int32)
        cls = tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], self.cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], self.sep_id))
        seps = [sep]  # the [SEP] after each segment
        if len(segments) == 1:
            segments = [segments[0][:, :self._seq_length - 2]]
        else:
            len_a, len_b = (segment.row_lengths() for segment in segments)
            kept_a, kept_b = pair_truncation_lengths(len_a, len_b, self._seq_length - 3)
            # Google packs a pair whose B tokenizes to nothing ("", " ", "\u200b") as a single
            # text (`if tokens_b:` in convert_single_example): [CLS] A [SEP], A up to
            # seq_length - 2, no second [SEP].
            has_b = len_b > 0
            kept_a = tf.where(has_b, kept_a, tf.minimum(len_a, self._seq_length - 2))
            segments = [_keep_first(segments[0], kept_a), _keep_first(segments[1], kept_b)]
            seps.append(tf.ragged.boolean_mask(sep, tf.expand_dims(has_b, 1)))

        parts = [(cls, 0)]  # (ids, type id) in output order
        for type_id, (segment, segment_sep) in enumerate(zip(segments, seps)):
            parts += [(segment, type_id), (segment_sep, type_id)]
        word_ids = tf.concat([ids for ids, _ in parts], axis=1)
        type_ids = tf.concat([tf.ones_like(ids) * type_id for ids, type_id in parts], axis=1)

        if padding == "max_length":
            shape = [None, self._seq_length]
        else:
            # The longest row; an empty batch still gets the 1 + len(segments) columns of the
            # special tokens, since a model reads [CLS] at position 0.
            longest = tf.maximum(tf.cast(tf.reduce_max(word_ids.row_lengths()), tf.int32),
                                 1 + len(segments))
            shape = tf.stack([batch_size, longest])
        return {
            "input_word_ids": word_ids.to_tensor(self.pad_id, shape=shape),
            "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=shape),
            "input_type_ids": type_ids.to_tensor(0, shape=shape),
        }

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


# --- serving safety -------------------------------------------------------------------------


def _as_graph_def(graph):
    if isinstance(graph, tf.compat.v1.GraphDef):
        return graph
    return getattr(graph, "graph", graph).as_graph_def()  # a ConcreteFunction has a .graph


def graph_op_types(graph):
    """Every op type in a graph, including the bodies of the functions in its library.

    Args:
        graph: a `GraphDef` (e.g. a SavedModel's `meta_graphs[0].graph_def`), a `tf.Graph`, or
            a `ConcreteFunction`.

    Returns:
        set of str.
    """
    graph_def = _as_graph_def(graph)
    op_types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        op_types.update(node.op for node in function.node_def)
    return op_types


def unservable_ops(graph):
    """The op types of `graph` that stock TF Serving may lack: an empty list means servable.

    An op is servable if it is a core TensorFlow op (one of `tf.raw_ops`, which tensorflow-text
    does not extend), one of `SERVING_SAFE_TF_TEXT_OPS`, or a call of a function of the graph's
    own library (whose body is checked too).

    Args:
        graph: as for `graph_op_types`.

    Returns:
        sorted list of str.

    Example:
    >>> fn = tf.function(preprocessor).get_concrete_function(tf.TensorSpec([None], tf.string))
    >>> unservable_ops(fn)
    []
    """
    graph_def = _as_graph_def(graph)
    own_functions = {function.signature.name for function in graph_def.library.function}
    return sorted(op for op in graph_op_types(graph_def)
                  if op not in SERVING_SAFE_TF_TEXT_OPS and op not in own_functions
                  and not hasattr(tf.raw_ops, op))
