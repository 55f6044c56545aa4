"""Tagged words (NER, POS): CoNLL and JSONL files in, word pieces with labels out, and the
entity-level scores of CoNLL's `conlleval` script.

    read_conll / read_tagged_jsonl   files -> sentences of (words, tags)
    word_piece_windows               a sentence -> windows of word pieces of at most
                                     seq_length - 2, each word's first piece labelled, the rest
                                     IGNORE (-100); a long sentence is split, never cut
    tagger_features, tagger_dataset  sentences -> padded encoder inputs and piece labels ->
                                     (x, y) batches for `BertTokenClassifier.fit`
    word_tags                        per-piece predictions -> a tag for every word again
    conlleval                        gold and predicted tags -> token accuracy and chunk
                                     precision, recall and F1, overall and per type

`conlleval` follows the counting of `conlleval.pl` (version 2004-01-26, Tjong Kim Sang: a chunk
is correct when it starts and ends at the same words with the same type in both; its start
and end rules cover IOB1, IOB2 and IOE). IOBES tags, which it does not know, are counted as
their IOB2 spelling (S-X as B-X, E-X as I-X), which gives the same chunks for well-formed tags.
"""

import dataclasses
import json

import numpy as np
import tensorflow as tf

from keras_bert_min._checks import check_int

IGNORE = -100  # the label of word pieces after a word's first (Keras' and HF's convention)
DOCSTART = "-DOCSTART-"
SCHEMES = ("iob1", "iob2", "iobes")


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """Words and their tags (one each); `source` names the file and line it was read from."""

    words: tuple
    tags: tuple
    source: str = ""


# --- reading ----------------------------------------------------------------------------------

def _lines(path):
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from enumerate(f, start=1)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); convert it "
                         "first, e.g. with iconv.") from None


def read_conll(path, tag_column=-1):
    """Sentences of a CoNLL-2003-style file: a word per line, its columns separated by
    whitespace (the word first), a blank line between sentences, `-DOCSTART-` lines skipped.

    Args:
        path: the file (UTF-8).
        tag_column: which column holds the tag (CoNLL-2003: -1 or 3 for NER, 1 for POS).

    Returns:
        A list of `TaggedSentence`.

    Raises:
        ValueError: a line without the tag column, or a file without sentences, naming the
            file and line.

    Example:
    >>> read_conll("eng.train")[0].tags  # doctest: +SKIP
    ('B-ORG', 'O', 'B-MISC', 'O', 'O', 'O', 'B-MISC', 'O', 'O')
    """
    sentences, words, tags, start = [], [], [], None
    for number, line in _lines(path):
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            if words:
                sentences.append(TaggedSentence(tuple(words), tuple(tags), f"{path}:{start}"))
            words, tags = [], []
            continue
        try:
            tag = columns[tag_column]
        except IndexError:
            raise ValueError(f"{path}:{number}: the line has {len(columns)} column(s), no tag "
                             f"column {tag_column}; pass the --tag_column of this file.") from None
        if len(columns) == 1:
            raise ValueError(f"{path}:{number}: the line has one column (a word without a "
                             "tag); every line needs the word and its tag.")
        start = number if not words else start
        words.append(columns[0])
        tags.append(tag)
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags), f"{path}:{start}"))
    if not sentences:
        raise ValueError(f"{path} has no tagged sentences.")
    return sentences


def read_tagged_jsonl(path, words_key="tokens", tags_key="tags"):
    """Sentences of a JSON-lines file, one object per line with a list of words and a list of
    tags of the same length (`{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}`)."""
    sentences = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            words, tags = record[words_key], record[tags_key]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: expected a JSON object with {words_key!r} and "
                             f"{tags_key!r} lists ({type(e).__name__}: {e}).") from None
        if len(words) != len(tags) or not words:
            raise ValueError(f"{path}:{number}: {len(words)} word(s) but {len(tags)} tag(s); "
                             "each word needs one tag, and a sentence at least one word.")
        sentences.append(TaggedSentence(tuple(map(str, words)), tuple(map(str, tags)),
                                        f"{path}:{number}"))
    if not sentences:
        raise ValueError(f"{path} has no tagged sentences.")
    return sentences


# --- word pieces --------------------------------------------------------------------------------

def word_piece_windows(word_pieces, labels, max_pieces):
    """Cuts one sentence's words into consecutive windows of at most `max_pieces` pieces, at
    word boundaries, so that no word is cut and none is lost.

    Args:
        word_pieces: for each word, its list of piece ids (a word that tokenizes to nothing
            must be given the [UNK] piece by the caller, so that it keeps a position).
        labels: for each word, its label id.
        max_pieces: pieces per window (the sequence length minus [CLS] and [SEP]).

    Returns:
        A list of `(piece_ids, piece_labels, word_indices)`: the first piece of word w is
        labelled `labels[w]` and the others `IGNORE`; `word_indices[i]` is the word of the
        first piece i (-1 on other pieces), for mapping predictions back to words.

    Example:
    >>> word_piece_windows([[7], [8, 9], [5]], [1, 2, 0], max_pieces=3)
    [([7, 8, 9], [1, 2, -100], [0, 1, -1]), ([5], [0], [2])]
    """
    check_int("max_pieces", max_pieces, 1)
    if len(word_pieces) != len(labels):
        raise ValueError(f"{len(word_pieces)} words but {len(labels)} labels.")
    windows, pieces, piece_labels, word_indices = [], [], [], []
    for index, (word, label) in enumerate(zip(word_pieces, labels)):
        if not word:
            raise ValueError(f"Word {index} has no word pieces; give it the [UNK] id.")
        if len(word) > max_pieces:
            raise ValueError(f"Word {index} has {len(word)} word pieces, more than the "
                             f"{max_pieces} a sequence holds; raise the sequence length.")
        if len(pieces) + len(word) > max_pieces:
            windows.append((pieces, piece_labels, word_indices))
            pieces, piece_labels, word_indices = [], [], []
        pieces.extend(word)
        piece_labels.extend([label] + [IGNORE] * (len(word) - 1))
        word_indices.extend([index] + [-1] * (len(word) - 1))
    if pieces:
        windows.append((pieces, piece_labels, word_indices))
    return windows


@dataclasses.dataclass
class TaggerFeatures:
    """Padded arrays of tagging windows: `inputs` (the three encoder inputs, [N, S] int32) and
    `labels` ([N, S], IGNORE on [CLS], [SEP], padding and non-first pieces); for mapping back,
    each window's `sentence` index and `word_indices` ([N, S], the word of each first piece,
    -1 elsewhere)."""

    inputs: dict
    labels: np.ndarray
    sentence: np.ndarray
    word_indices: np.ndarray


def tagger_features(sentences, preprocessor, tag_ids, seq_length=None):
    """Windows of word pieces of every sentence (`word_piece_windows`), padded to `seq_length`.

    Args:
        sentences: `TaggedSentence`s (their tags are encoded by `tag_ids`; pass dummy tags of
            a known name to tag new text).
        preprocessor: a `BertPreprocessor`; each word is tokenized on its own, as the words are
            given (a word that tokenizes to nothing gets the [UNK] piece).
        tag_ids: a mapping from tag name to class id (e.g. `dict(zip(names, range(n)))`).
        seq_length: padded length (default: the preprocessor's).

    Returns:
        A `TaggerFeatures`.
    """
    seq_length = seq_length or preprocessor.seq_length
    check_int("seq_length", seq_length, 3, hint=" ([CLS], a piece and [SEP])")
    words = [word for sentence in sentences for word in sentence.words]
    pieces = preprocessor.tokenize(tf.constant(words)) if words else None
    if pieces is not None and pieces.ragged_rank > 1:
        pieces = pieces.merge_dims(1, -1)
    pieces = [p or [int(preprocessor.unk_id)] for p in (pieces.to_list() if words else [])]
    rows, cursor = [], 0
    for index, sentence in enumerate(sentences):
        unknown = sorted(set(sentence.tags) - set(tag_ids))
        if unknown:
            raise ValueError(f"{sentence.source or f'sentence {index}'}: tags {unknown} are not "
                             f"among the {len(tag_ids)} known ones ({sorted(tag_ids)[:12]}).")
        word_pieces = pieces[cursor:cursor + len(sentence.words)]
        cursor += len(sentence.words)
        try:
            windows = word_piece_windows(word_pieces, [tag_ids[t] for t in sentence.tags],
                                         seq_length - 2)
        except ValueError as e:
            raise ValueError(f"{sentence.source or f'sentence {index}'}: {e}") from None
        rows.extend((index, *window) for window in windows)
    count = len(rows)
    ids = np.full([count, seq_length], int(preprocessor.pad_id), np.int32)
    mask = np.zeros([count, seq_length], np.int32)
    labels = np.full([count, seq_length], IGNORE, np.int32)
    word_indices = np.full([count, seq_length], -1, np.int32)
    for row, (_, window_pieces, window_labels, window_words) in enumerate(rows):
        length = len(window_pieces) + 2
        ids[row, :length] = [preprocessor.cls_id, *window_pieces, preprocessor.sep_id]
        mask[row, :length] = 1
        labels[row, 1:length - 1] = window_labels
        word_indices[row, 1:length - 1] = window_words
    inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}
    return TaggerFeatures(inputs, labels, np.array([r[0] for r in rows], np.int32), word_indices)


def tagger_dataset(features, batch_size, shuffle_seed=None, drop_remainder=False):
    """`(inputs, labels)` batches of `TaggerFeatures` for `model.fit` / `evaluate`, reshuffled
    every epoch with `shuffle_seed` (None keeps the order)."""
    check_int("batch_size", batch_size, 1)
    dataset = tf.data.Dataset.from_tensor_slices((features.inputs, features.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features.labels), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def word_tags(predicted, features, tag_names, num_sentences):
    """The tag of every word, from per-piece predictions: each word takes the prediction at its
    first piece, and a sentence's windows are joined in order.

    Args:
        predicted: [N, S] class ids (argmax of a `BertTokenClassifier`'s logits), one row per
            window of `features`.
        features: the `TaggerFeatures` the predictions were made on.
        tag_names: the tag of each class id.
        num_sentences: how many sentences `features` came from.

    Returns:
        A list of tag lists, one per sentence, one tag per word.
    """
    predicted = np.asarray(predicted)
    tags = [[] for _ in range(num_sentences)]
    for row in range(len(predicted)):
        first = features.word_indices[row] >= 0
        tags[features.sentence[row]].extend(tag_names[int(i)] for i in predicted[row][first])
    return tags


# --- conlleval ----------------------------------------------------------------------------------

def _split(tag):
    """conlleval's reading of a tag: the prefix before the first "-" and the type after it."""
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash else (tag, "")


def _end_of_chunk(prev_tag, tag, prev_type, kind):
    """Whether a chunk ended between the previous word and this one (conlleval's endOfChunk)."""
    return ((prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"),
                                ("E", "I"), ("E", "O")}
            or (prev_tag not in ("O", ".") and prev_type != kind)
            or prev_tag in ("[", "]"))


def _start_of_chunk(prev_tag, tag, prev_type, kind):
    """Whether a chunk started between the previous word and this one (startOfChunk)."""
    return ((prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"),
                                ("E", "I"), ("O", "E")}
            or (tag not in ("O", ".") and prev_type != kind)
            or tag in ("[", "]"))


def _as_counted(tag, scheme):
    prefix, kind = _split(tag)
    if scheme == "iobes" and prefix in ("S", "E"):
        prefix = "B" if prefix == "S" else "I"
    return prefix, kind


def conlleval(gold, predicted, scheme="iob2"):
    """Token accuracy and chunk (entity) precision, recall and F1, counted as `conlleval.pl`.

    Args:
        gold, predicted: lists of sentences, each a sequence of tag strings ("B-PER", "O"),
            of equal lengths.
        scheme: "iob1", "iob2" (BIO) or "iobes".

    Returns:
        `{"accuracy", "precision", "recall", "f1", "tokens", "gold_chunks",
        "predicted_chunks", "correct_chunks", "per_type": {type: {"precision", "recall",
        "f1", "gold_chunks", "predicted_chunks", "correct_chunks"}}}`, rates as fractions
        (conlleval prints them as percentages).

    Example:
    >>> scores = conlleval([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    >>> scores["f1"], scores["correct_chunks"]
    (1.0, 1)
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}.")
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones.")
    counts = {"tokens": 0, "correct_tags": 0}
    found_gold, found_predicted, correct = {}, {}, {}
    in_correct = False
    last_gold = last_predicted = ("O", "")

    def steps():  # (gold, predicted, is a sentence break): a break is O in both, not a token
        for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
            if len(gold_tags) != len(predicted_tags):
                raise ValueError(f"Sentence {index}: {len(gold_tags)} gold tags but "
                                 f"{len(predicted_tags)} predicted ones.")
            for g, p in zip(gold_tags, predicted_tags):
                yield _as_counted(g, scheme), _as_counted(p, scheme), False
            yield ("O", ""), ("O", ""), True

    for (g_tag, g_type), (p_tag, p_type), is_boundary in steps():
        gold_end = _end_of_chunk(last_gold[0], g_tag, last_gold[1], g_type)
        predicted_end = _end_of_chunk(last_predicted[0], p_tag, last_predicted[1], p_type)
        if in_correct:
            if gold_end and predicted_end and last_predicted[1] == last_gold[1]:
                in_correct = False
                correct[last_gold[1]] = correct.get(last_gold[1], 0) + 1
            elif gold_end != predicted_end or p_type != g_type:
                in_correct = False
        gold_start = _start_of_chunk(last_gold[0], g_tag, last_gold[1], g_type)
        predicted_start = _start_of_chunk(last_predicted[0], p_tag, last_predicted[1], p_type)
        if gold_start and predicted_start and p_type == g_type:
            in_correct = True
        if gold_start:
            found_gold[g_type] = found_gold.get(g_type, 0) + 1
        if predicted_start:
            found_predicted[p_type] = found_predicted.get(p_type, 0) + 1
        if not is_boundary:
            counts["correct_tags"] += (g_tag, g_type) == (p_tag, p_type)
            counts["tokens"] += 1
        last_gold, last_predicted = (g_tag, g_type), (p_tag, p_type)
    # Every sentence ends with a break, so no chunk is still open here.
    return {"accuracy": counts["correct_tags"] / max(counts["tokens"], 1),
            **_rates(sum(found_gold.values()), sum(found_predicted.values()),
                     sum(correct.values())),
            "tokens": counts["tokens"],
            "per_type": {kind: _rates(found_gold.get(kind, 0), found_predicted.get(kind, 0),
                                      correct.get(kind, 0))
                         for kind in sorted(set(found_gold) | set(found_predicted))}}


def _rates(gold_chunks, predicted_chunks, correct_chunks):
    precision = correct_chunks / predicted_chunks if predicted_chunks else 0.0
    recall = correct_chunks / gold_chunks if gold_chunks else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold_chunks": gold_chunks,
            "predicted_chunks": predicted_chunks, "correct_chunks": correct_chunks}
