"""BERT pretraining examples: sentence pairs for next-sentence prediction, masked for the masked LM.

    tokenized documents --create_training_instances--> [CLS] A [SEP] B [SEP] pairs (+ static masks)
        static masks   -> tfrecords.write_instances (Google's feature names) -> tfrecords dataset
        no masks       -> masking.pretraining_dataset_from_instances: masked in tf.data, fresh
                          every epoch (see masking.py)

The pairing and the static masking port Google's `create_pretraining_data.py` to token ids,
rule for rule and random draw for random draw: the same tokenized documents and seed give
the same instances as Google's script (with ids in place of token strings). Dynamic masking
(`masking.py`) uses tensorflow-text's `RandomItemSelector`, `MaskValuesChooser` and
`mask_language_model` with the same rate, cap, 80/10/10 split and special tokens; see
`masking.dynamic_mask` for the small differences.

Every example becomes the flat feature dict of docs/design.md (`FEATURE_NAMES`), padded to static
shapes: `input_word_ids`, `input_mask`, `input_type_ids` [S], `masked_lm_positions`,
`masked_lm_ids` [P] and float32 `masked_lm_weights` [P] (1.0 on predictions, 0.0 on padding),
and `next_sentence_labels` [1] (1 when B is a random sentence, Google's convention).
"""

import dataclasses
import functools
import random

import numpy as np
import tensorflow as tf

from keras_bert_min._checks import check_fraction, check_int

FEATURE_NAMES = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")

# [CLS] A [SEP] B [SEP] with at least one token in each segment.
MIN_SEQ_LENGTH = 5


@dataclasses.dataclass(frozen=True)
class SpecialTokenIds:
    """What pretraining needs to know about a WordPiece vocabulary.

    Args:
        size: number of tokens; random replacement tokens are drawn from [0, size).
        cls_id, sep_id, mask_id, pad_id: ids of `[CLS]`, `[SEP]`, `[MASK]` and `[PAD]`.
        subword_ids: ids of the `##` continuation pieces, for whole-word masking.

    Example:
    >>> vocab = SpecialTokenIds.from_tokens(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "un", "##able"])
    >>> vocab.cls_id, vocab.subword_ids
    (1, frozenset({5}))
    """

    size: int
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int = 0
    subword_ids: frozenset = frozenset()

    @classmethod
    def from_tokens(cls, tokens):
        """From the vocabulary's tokens in id order (the lines of a `vocab.txt`)."""
        tokens = list(tokens)
        ids = {token: index for index, token in enumerate(tokens)}
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t not in ids]
        if missing:
            raise ValueError(f"The vocabulary lacks the special token(s) {missing}; a BERT "
                             "vocab.txt has [PAD], [UNK], [CLS], [SEP] and [MASK].")
        return cls(size=len(tokens), cls_id=ids["[CLS]"], sep_id=ids["[SEP]"],
                   mask_id=ids["[MASK]"], pad_id=ids["[PAD]"],
                   subword_ids=frozenset(i for i, t in enumerate(tokens) if t.startswith("##")))

    @classmethod
    def from_preprocessor(cls, preprocessor):
        """From a `BertPreprocessor` (its `vocab` tokens and special ids)."""
        vocab = cls.from_tokens(preprocessor.vocab)
        return dataclasses.replace(
            vocab, cls_id=int(preprocessor.cls_id), sep_id=int(preprocessor.sep_id),
            mask_id=int(preprocessor.mask_id), pad_id=int(preprocessor.pad_id))


@dataclasses.dataclass
class TrainingInstance:
    """One sentence pair, as Google's `TrainingInstance` with token ids.

    `tokens` is `[CLS] A [SEP] B [SEP]`, already masked when the instance was masked statically;
    `masked_lm_positions` (ascending) and `masked_lm_ids` (the original tokens) are then the
    predictions, and empty for instances left to dynamic masking.
    """

    tokens: list
    segment_ids: list
    is_random_next: bool
    masked_lm_positions: list = dataclasses.field(default_factory=list)
    masked_lm_ids: list = dataclasses.field(default_factory=list)


def tokenize_documents(documents, preprocessor, batch_size=1024):
    """Tokenizes documents of sentence strings into documents of sentences of token ids.

    Sentences that tokenize to nothing and documents left empty are dropped, as Google does.

    Args:
        documents: list of documents, each a list of sentence strings (`corpus.read_documents`).
        preprocessor: anything with `tokenize(tf.string [B]) -> RaggedTensor [B, (pieces)]`,
            such as `BertPreprocessor`; a `[B, (words), (pieces)]` result is flattened.
        batch_size: sentences per `tokenize` call.

    Example:
    >>> tokenize_documents([["Hello world."]], preprocessor)  # doctest: +SKIP
    [[[7592, 2088, 1012]]]
    """
    check_int("batch_size", batch_size, 1)
    sentences = [sentence for document in documents for sentence in document]
    ids = []
    for start in range(0, len(sentences), batch_size):
        pieces = preprocessor.tokenize(tf.constant(sentences[start:start + batch_size]))
        if pieces.ragged_rank > 1:
            pieces = pieces.merge_dims(1, -1)
        ids.extend(pieces.to_list())
    tokenized, cursor = [], 0
    for document in documents:
        sentences_ids = [s for s in ids[cursor:cursor + len(document)] if s]
        cursor += len(document)
        if sentences_ids:
            tokenized.append(sentences_ids)
    return tokenized


# --- static: Google's create_pretraining_data.py on token ids ----------------------------------

def create_training_instances(documents, vocab, max_seq_length=128, max_predictions_per_seq=20,
                              masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor=10,
                              do_whole_word_mask=False, static_masking=True, seed=12345,
                              next_sentence=True):
    """Sentence pairs from tokenized documents, as Google's `create_training_instances`.

    Empty sentences and documents are dropped, the documents shuffled, every document turned
    into pairs `dupe_factor` times, and the pairs shuffled, all from one `random.Random(seed)`.
    With `next_sentence=False` (MLM-only pretraining, no NSP), the documents are cut into
    contiguous full-length single segments instead (`create_segments_from_document`).

    Args:
        documents: list of documents, each a list of sentences, each a list of int token ids.
        vocab: a `SpecialTokenIds`.
        max_seq_length: length of `[CLS] A [SEP] B [SEP]`, at least 5.
        max_predictions_per_seq: cap on the masked positions of one sequence.
        masked_lm_prob: share of the tokens to predict.
        short_seq_prob: how often a pair aims at a random shorter length.
        dupe_factor: passes over the corpus (each with different pairs and masks).
        do_whole_word_mask: mask the `##` pieces of a word together with it.
        static_masking: mask now (Google's way); False leaves the pairs unmasked for
            `pretraining_dataset_from_instances`, which masks them afresh every epoch.
        seed: the seed of the one random number generator.
        next_sentence: sentence pairs for next-sentence prediction (Google's); False gives
            `[CLS] segment [SEP]` instances whose `is_random_next` is always False.

    Returns:
        A list of `TrainingInstance`.

    Example:
    >>> vocab = SpecialTokenIds(size=20, cls_id=1, sep_id=2, mask_id=3)
    >>> docs = [[[5, 6], [7, 8, 9]], [[10, 11], [12]]]
    >>> instances = create_training_instances(docs, vocab, max_seq_length=16, dupe_factor=1)
    >>> instances[0].tokens[0] == vocab.cls_id
    True
    """
    check_lengths(max_seq_length, max_predictions_per_seq)
    check_fraction("masked_lm_prob", masked_lm_prob, low_open=True)
    check_fraction("short_seq_prob", short_seq_prob)
    check_int("dupe_factor", dupe_factor, 1)
    all_documents = _clean_documents(documents, vocab)
    rng = random.Random(seed)
    rng.shuffle(all_documents)
    mask_fn = None
    if static_masking:
        mask_fn = functools.partial(
            create_masked_lm_predictions, masked_lm_prob=masked_lm_prob,
            max_predictions_per_seq=max_predictions_per_seq, vocab=vocab,
            do_whole_word_mask=do_whole_word_mask)
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            if next_sentence:
                instances.extend(create_instances_from_document(
                    all_documents, document_index, max_seq_length, short_seq_prob, vocab, rng,
                    mask_fn))
            else:
                instances.extend(create_segments_from_document(
                    all_documents[document_index], max_seq_length, vocab, rng, mask_fn))
    rng.shuffle(instances)
    return instances


def create_instances_from_document(all_documents, document_index, max_seq_length, short_seq_prob,
                                   vocab, rng, mask_fn=None):
    """The pairs of one document, as Google's function of the same name.

    Whole sentences are gathered into a chunk until it reaches the target length (the full
    `max_seq_length - 3` tokens, or with probability `short_seq_prob` a random shorter one).
    A random number of its leading sentences form A. B is the rest of the chunk, or, half of
    the time and always when the chunk is a single sentence, a span from a random other
    document; the chunk's unused sentences then go back to the document for the next pair.

    Args:
        all_documents: the cleaned documents (lists of non-empty sentences of ids).
        document_index: which document to pair.
        max_seq_length, short_seq_prob: as `create_training_instances`.
        vocab: a `SpecialTokenIds`.
        rng: the `random.Random` shared by the whole run.
        mask_fn: `mask_fn(tokens, rng) -> (tokens, positions, ids)` or None for no masking.
    """
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3  # room for [CLS], [SEP], [SEP]
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_seq_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [token for sentence in chunk[:a_end] for token in sentence]
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                tokens_b = _random_span(all_documents, document_index,
                                        target_seq_length - len(tokens_a), rng)
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                tokens_b = [token for sentence in chunk[a_end:] for token in sentence]
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)

            tokens = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
            segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
            instance = TrainingInstance(tokens, segment_ids, is_random_next)
            if mask_fn is not None:
                (instance.tokens, instance.masked_lm_positions,
                 instance.masked_lm_ids) = mask_fn(tokens, rng=rng)
            instances.append(instance)
            chunk, chunk_length = [], 0
        i += 1
    return instances


# --- MLM only: contiguous segments, no sentence pairs ------------------------------------------

def create_segments_from_document(document, max_seq_length, vocab, rng, mask_fn=None):
    """`[CLS] segment [SEP]` instances cutting one document's tokens into contiguous pieces of
    `max_seq_length - 2` tokens, for pretraining without next-sentence prediction.

    As RoBERTa's, the segments are full length and ignore sentence boundaries (only a
    document's head and tail pieces are shorter) and never cross documents. The cuts start at
    a random offset drawn from `rng`, so each pass over the corpus (`dupe_factor`) cuts the
    text at different places; no token is dropped.

    Args:
        document: a cleaned document (a list of non-empty sentences of ids).
        max_seq_length: length of `[CLS] segment [SEP]`.
        vocab: a `SpecialTokenIds`.
        rng: the `random.Random` shared by the whole run.
        mask_fn: as `create_instances_from_document`.

    Example:
    >>> vocab = SpecialTokenIds(size=20, cls_id=1, sep_id=2, mask_id=3)
    >>> [i.tokens for i in create_segments_from_document([[5, 6, 7], [8, 9]], 5, vocab,
    ...                                                   random.Random(0))]
    [[1, 5, 2], [1, 6, 7, 8, 2], [1, 9, 2]]
    """
    stream = [token for sentence in document for token in sentence]
    length = max_seq_length - 2  # room for [CLS] and [SEP]
    offset = rng.randint(0, length - 1)
    starts = ([0] if offset else []) + list(range(offset, len(stream), length))
    instances = []
    for start, end in zip(starts, [*starts[1:], len(stream)]):
        tokens = [vocab.cls_id, *stream[start:end], vocab.sep_id]
        instance = TrainingInstance(tokens, [0] * len(tokens), is_random_next=False)
        if mask_fn is not None:
            (instance.tokens, instance.masked_lm_positions,
             instance.masked_lm_ids) = mask_fn(tokens, rng=rng)
        instances.append(instance)
    return instances


def _random_span(all_documents, document_index, target_length, rng):
    """Sentences from a random start in a random other document, until `target_length` tokens."""
    # Ten tries to avoid the current document, as Google's; a one-document corpus keeps it.
    for _ in range(10):
        random_index = rng.randint(0, len(all_documents) - 1)
        if random_index != document_index:
            break
    random_document = all_documents[random_index]
    tokens = []
    for sentence in random_document[rng.randint(0, len(random_document) - 1):]:
        tokens.extend(sentence)
        if len(tokens) >= target_length:
            break
    return tokens


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Trims the longer of two lists in place, one token at a time from a random end, until
    their total length is at most `max_num_tokens` (B is trimmed on a tie, as Google's)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # Both ends, so that no part of a sentence is systematically lost.
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab, rng,
                                 do_whole_word_mask=False):
    """Masks a packed sequence, as Google's function of the same name.

    `min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))` positions
    other than `[CLS]` and `[SEP]` are picked at random (with whole-word masking, whole words,
    skipping a word whose pieces would overshoot the count). Each becomes `[MASK]` 80% of
    the time, a random vocabulary token 10%, and stays itself 10%.

    Returns:
        `(masked_tokens, positions, original_ids)`, positions ascending.

    Example:
    >>> vocab = SpecialTokenIds(size=20, cls_id=1, sep_id=2, mask_id=3)
    >>> _, positions, ids = create_masked_lm_predictions(
    ...     [1, 5, 6, 2, 7, 2], 0.15, 20, vocab, random.Random(0))
    >>> len(positions), ids == [[1, 5, 6, 2, 7, 2][p] for p in positions]
    (1, True)
    """
    candidates = []  # lists of positions masked together
    for position, token in enumerate(tokens):
        if token in (vocab.cls_id, vocab.sep_id):
            continue
        if do_whole_word_mask and candidates and token in vocab.subword_ids:
            candidates[-1].append(position)
        else:
            candidates.append([position])
    rng.shuffle(candidates)

    num_to_predict = min(max_predictions_per_seq,
                         max(1, int(round(len(tokens) * masked_lm_prob))))
    output_tokens = list(tokens)
    positions = []
    for word in candidates:
        if len(positions) >= num_to_predict:
            break
        if len(positions) + len(word) > num_to_predict:
            continue  # this whole word would overshoot; a shorter one may still fit
        for position in word:
            if rng.random() < 0.8:
                output_tokens[position] = vocab.mask_id
            elif rng.random() < 0.5:
                output_tokens[position] = tokens[position]
            else:
                output_tokens[position] = rng.randint(0, vocab.size - 1)
            positions.append(position)
    positions.sort()
    return output_tokens, positions, [tokens[p] for p in positions]


def instance_to_features(instance, seq_length, max_predictions_per_seq, pad_id=0):
    """The flat feature dict of one statically masked instance, padded to static shapes.

    Example:
    >>> features = instance_to_features(TrainingInstance([1, 3, 2, 7, 2], [0, 0, 0, 1, 1], True,
    ...                                                  [1], [5]), 8, 2)
    >>> features["input_word_ids"].tolist(), features["masked_lm_weights"].tolist()
    ([1, 3, 2, 7, 2, 0, 0, 0], [1.0, 0.0])
    """
    length, num_predictions = len(instance.tokens), len(instance.masked_lm_positions)
    if length > seq_length:
        raise ValueError(f"An instance has {length} tokens, more than seq_length={seq_length}; "
                         "use the max_seq_length the instances were built with.")
    if num_predictions > max_predictions_per_seq:
        raise ValueError(f"An instance has {num_predictions} masked positions, more than "
                         f"max_predictions_per_seq={max_predictions_per_seq}.")

    def padded(values, size, value=0, dtype=np.int32):
        return np.array(list(values) + [value] * (size - len(values)), dtype)

    return {
        "input_word_ids": padded(instance.tokens, seq_length, pad_id),
        "input_mask": padded([1] * length, seq_length),
        "input_type_ids": padded(instance.segment_ids, seq_length),
        "masked_lm_positions": padded(instance.masked_lm_positions, max_predictions_per_seq),
        "masked_lm_ids": padded(instance.masked_lm_ids, max_predictions_per_seq),
        "masked_lm_weights": padded([1.0] * num_predictions, max_predictions_per_seq, 0.0,
                                    np.float32),
        "next_sentence_labels": np.array([int(instance.is_random_next)], np.int32),
    }


# --- checks -----------------------------------------------------------------------------------

def input_pipelines(input_context):
    """(number of input pipelines, this pipeline's id) of a `tf.distribute.InputContext`."""
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def check_lengths(max_seq_length, max_predictions_per_seq, name="max_seq_length"):
    """The sequence and prediction lengths of pretraining examples, checked."""
    check_int(name, max_seq_length, MIN_SEQ_LENGTH,
              hint=" ([CLS] A [SEP] B [SEP] with a token in each segment)")
    check_int("max_predictions_per_seq", max_predictions_per_seq,
              hint=" (Google uses 20 for 128 tokens)")


def _clean_documents(documents, vocab):
    """Drops empty sentences and documents (as Google does) and checks the ids."""
    if not documents:
        raise ValueError("documents is empty; pass a list of documents, each a list of "
                         "sentences of token ids (see tokenize_documents).")
    cleaned = []
    for document in documents:
        sentences = []
        for sentence in document:
            bad = [t for t in sentence
                   if isinstance(t, bool) or not isinstance(t, (int, np.integer))
                   or not 0 <= t < vocab.size]
            if bad:
                raise ValueError(f"Token id {bad[0]!r} is not an int in [0, {vocab.size}); "
                                 "tokenize with the vocabulary given as `vocab`.")
            if len(sentence):
                sentences.append([int(t) for t in sentence])
        if sentences:
            cleaned.append(sentences)
    if not cleaned:
        raise ValueError(f"None of the {len(documents)} documents has a non-empty sentence; "
                         "each document must be a list of sentences of token ids.")
    return cleaned
