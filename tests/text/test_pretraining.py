"""Tests of keras_bert_min.text.pretraining: NSP pairs, static masking, features.

Dynamic masking (keras_bert_min.text.masking) is tested in test_masking.py, with the corpora and
helpers defined here.

References: a transcription of Google's `create_pretraining_data.py` on token strings (below),
corpora whose token ids say which document and sentence they come from, and counts written
from the masking rules.
"""

import collections
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_min.text.pretraining import (SpecialTokenIds, TrainingInstance,
                                             create_masked_lm_predictions,
                                             create_training_instances, instance_to_features,
                                             tokenize_documents, truncate_seq_pair)

# --- Google's create_pretraining_data.py on token strings, the reference ----------------------


def google_training_instances(documents, vocab_words, max_seq_length, dupe_factor, short_seq_prob,
                              masked_lm_prob, max_predictions_per_seq, do_whole_word_mask, rng):
    """Google's create_training_instances after reading: documents of sentences of token strings.
    Returns (tokens, segment_ids, is_random_next, masked_lm_positions, masked_lm_labels) tuples."""
    documents = [d for d in documents if d]
    rng.shuffle(documents)
    instances = []
    for _ in range(dupe_factor):
        for index in range(len(documents)):
            instances += google_instances_from_document(
                documents, index, max_seq_length, short_seq_prob, masked_lm_prob,
                max_predictions_per_seq, vocab_words, do_whole_word_mask, rng)
    rng.shuffle(instances)
    return instances


def google_instances_from_document(documents, index, max_seq_length, short_seq_prob, masked_lm_prob,
                                   max_predictions_per_seq, vocab_words, do_whole_word_mask, rng):
    document = documents[index]
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)
    instances, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = 1
            if len(chunk) >= 2:
                a_end = rng.randint(1, len(chunk) - 1)
            a = sum(chunk[:a_end], [])
            b = []
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = True
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != index:
                        break
                start = rng.randint(0, len(documents[other]) - 1)
                for sentence in documents[other][start:]:
                    b += sentence
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end
            else:
                is_random_next = False
                b = sum(chunk[a_end:], [])
            while len(a) + len(b) > max_num_tokens:
                longer = a if len(a) > len(b) else b
                if rng.random() < 0.5:
                    del longer[0]
                else:
                    longer.pop()
            tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
            segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            tokens, positions, labels = google_masked_lm_predictions(
                tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, do_whole_word_mask,
                rng)
            instances.append((tokens, segments, is_random_next, positions, labels))
            chunk, length = [], 0
        i += 1
    return instances


def google_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words,
                                 do_whole_word_mask, rng):
    candidates = []
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        if do_whole_word_mask and candidates and token.startswith("##"):
            candidates[-1].append(i)
        else:
            candidates.append([i])
    rng.shuffle(candidates)
    output = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked = []
    for word in candidates:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(word) > num_to_predict:
            continue
        for i in word:
            if rng.random() < 0.8:
                output[i] = "[MASK]"
            elif rng.random() < 0.5:
                output[i] = tokens[i]
            else:
                output[i] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            masked.append((i, tokens[i]))
    masked.sort()
    return output, [i for i, _ in masked], [label for _, label in masked]


# --- corpora ------------------------------------------------------------------------------------

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(60)] + [f"##p{i}" for i in range(40)]
VOCAB_WORDS = SPECIALS + WORDS
VOCAB = SpecialTokenIds.from_tokens(VOCAB_WORDS)
PAD, CLS, SEP, MASK = 0, 2, 3, 4


def string_documents(seed, num_documents=25):
    """Documents of sentences of 1-14 word strings, a third of them `##` pieces (never first)."""
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        document = []
        for _ in range(rng.choice([1, 1, 2, 5, 9, 14])):
            sentence = [rng.choice(WORDS[:60])]
            for _ in range(rng.randint(0, 13)):
                sentence.append(rng.choice(WORDS[60:] if rng.random() < 0.35 else WORDS[:60]))
            document.append(sentence)
        documents.append(document)
    return documents


def to_ids(documents):
    index = {token: i for i, token in enumerate(VOCAB_WORDS)}
    return [[[index[t] for t in sentence] for sentence in document] for document in documents]


def packed_sequences(count, seed, min_length=20, max_length=128):
    """[CLS] A [SEP] B [SEP] rows of random non-special ids with random split points."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        length = rng.randint(min_length, max_length)
        a = rng.randint(1, length - 4)
        body = [rng.randint(5, VOCAB.size - 1) for _ in range(length - 3)]
        rows.append([CLS] + body[:a] + [SEP] + body[a:] + [SEP])
    return rows


def words_of(tokens):
    """Google's whole-word groups: a `##` piece joins the previous non-special candidate."""
    groups = []
    for i, token in enumerate(tokens):
        if token in (CLS, SEP):
            continue
        if groups and token in VOCAB.subword_ids:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def replacement_shares(originals, masked, positions_per_row):
    """Shares of [MASK], unchanged and other tokens at the selected positions."""
    counts = collections.Counter()
    for original, output, positions in zip(originals, masked, positions_per_row):
        for p in positions:
            kind = "mask" if output[p] == MASK else "same" if output[p] == original[p] else "random"
            counts[kind] += 1
    total = sum(counts.values())
    return {kind: counts[kind] / total for kind in ("mask", "same", "random")}


def assert_berts_masking(rows, masked, positions_per_row, labels_per_row):
    """BERT's masking rules, static or dynamic: per row, ascending distinct positions off [CLS]
    and [SEP], labels = the original tokens there, every other token unchanged; overall, 15% of
    the tokens selected and 80/10/10 [MASK]/unchanged/random among them."""
    for tokens, output, positions, labels in zip(rows, masked, positions_per_row, labels_per_row):
        assert positions == sorted(set(positions))
        assert all(0 <= p < len(tokens) and tokens[p] not in (CLS, SEP) for p in positions)
        assert labels == [tokens[p] for p in positions]
        assert all(output[i] == tokens[i] for i in range(len(tokens)) if i not in positions)
    total_tokens = sum(map(len, rows))
    assert abs(sum(map(len, positions_per_row)) / total_tokens - 0.15) <= 0.01
    shares = replacement_shares(rows, masked, positions_per_row)
    assert abs(shares["mask"] - 0.8) <= 0.02
    assert abs(shares["same"] - 0.1) <= 0.02
    assert abs(shares["random"] - 0.1) <= 0.02


# --- exactness against Google's rules -----------------------------------------------------------

@pytest.mark.parametrize("seed, do_whole_word_mask, max_seq_length",
                         [(12345, False, 32), (7, True, 32), (3, True, 12), (11, False, 64)])
def test_instances_equal_googles_script_draw_for_draw(seed, do_whole_word_mask, max_seq_length):
    documents = string_documents(seed)
    expected = google_training_instances(
        [[list(s) for s in d] for d in documents], VOCAB_WORDS, max_seq_length, dupe_factor=2,
        short_seq_prob=0.1, masked_lm_prob=0.15, max_predictions_per_seq=5,
        do_whole_word_mask=do_whole_word_mask, rng=random.Random(seed))
    instances = create_training_instances(
        to_ids(documents), VOCAB, max_seq_length, max_predictions_per_seq=5, dupe_factor=2,
        do_whole_word_mask=do_whole_word_mask, seed=seed)
    got = [([VOCAB_WORDS[t] for t in x.tokens], x.segment_ids, x.is_random_next,
            x.masked_lm_positions, [VOCAB_WORDS[t] for t in x.masked_lm_ids]) for x in instances]
    assert len(got) == len(expected) > 40
    assert got == expected


def test_instances_are_deterministic_given_the_seed():
    documents = to_ids(string_documents(0))
    first = create_training_instances(documents, VOCAB, 32, 5, dupe_factor=1, seed=5)
    assert first == create_training_instances(documents, VOCAB, 32, 5, dupe_factor=1, seed=5)
    assert first != create_training_instances(documents, VOCAB, 32, 5, dupe_factor=1, seed=6)


def test_truncate_seq_pair_trims_the_longer_side_from_both_ends():
    a, b = list(range(10)), [100, 101, 102]
    truncate_seq_pair(a, b, 8, random.Random(0))
    assert len(a) == 5 and b == [100, 101, 102]
    assert a == list(range(a[0], a[0] + 5))  # a contiguous window of the original
    fronts = set()
    for seed in range(20):
        a = list(range(10))
        truncate_seq_pair(a, [], 5, random.Random(seed))
        fronts.add(a[0])
    assert len(fronts) > 2  # trimmed from the front sometimes, from the back other times
    a, b = [1, 2, 3], [4, 5, 6]
    truncate_seq_pair(a, b, 5, random.Random(0))
    assert a == [1, 2, 3] and len(b) == 2  # a tie trims B


# --- next-sentence pairs --------------------------------------------------------------------------

SENTENCE_LENGTH, SENTENCES_PER_DOCUMENT, NUM_DOCUMENTS = 6, 200, 10
SENTINEL_VOCAB = SpecialTokenIds(size=5 + SENTENCES_PER_DOCUMENT * NUM_DOCUMENTS, cls_id=CLS,
                                  sep_id=SEP, mask_id=MASK)


def sentinel_documents():
    """Every token of sentence j of document d has the id 5 + 200 * d + j.

    All sentences have the same length, so truncation (fewer tokens than one sentence) never
    removes a whole sentence and every sentence of a pair shows in it.
    """
    return [[[5 + SENTENCES_PER_DOCUMENT * d + j] * SENTENCE_LENGTH
             for j in range(SENTENCES_PER_DOCUMENT)] for d in range(NUM_DOCUMENTS)]


def sentence_ids(tokens):
    """(document, sentence) of each distinct sentinel, in order."""
    return [divmod(t - 5, SENTENCES_PER_DOCUMENT) for t in sorted(set(tokens))]


def test_next_sentence_pairs_follow_the_source_documents():
    instances = create_training_instances(sentinel_documents(), SENTINEL_VOCAB, 64, dupe_factor=3,
                                          static_masking=False, seed=1)
    assert len(instances) > 500
    for instance in instances:
        tokens = instance.tokens
        first_sep = tokens.index(SEP)
        assert tokens[0] == CLS and tokens[-1] == SEP and SEP not in tokens[first_sep + 1:-1]
        assert len(tokens) <= 64
        assert instance.segment_ids == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
        a, b = sentence_ids(tokens[1:first_sep]), sentence_ids(tokens[first_sep + 1:-1])
        for run in (a, b):  # whole runs of consecutive sentences of one document
            assert {d for d, _ in run} == {run[0][0]}
            assert [j for _, j in run] == list(range(run[0][1], run[0][1] + len(run)))
        if instance.is_random_next:
            assert b[0][0] != a[0][0]
        else:
            assert b[0] == (a[0][0], a[-1][1] + 1)


def test_next_sentence_labels_are_balanced():
    # A one-sentence chunk always gets a random B (Google's rule), so short target lengths
    # (short_seq_prob) and document ends tilt the labels towards 1; long documents and
    # full-length targets show the 50% draw.
    instances = create_training_instances(sentinel_documents(), SENTINEL_VOCAB, 64, dupe_factor=10,
                                          short_seq_prob=0.0, static_masking=False, seed=2)
    assert len(instances) > 2000
    random_next = sum(instance.is_random_next for instance in instances)
    assert abs(random_next / len(instances) - 0.5) <= 0.03


# --- MLM only (no NSP): contiguous segments ----------------------------------------------------

def test_mlm_only_segments_cut_each_document_into_full_length_pieces():
    """The RoBERTa-style rule: a document's tokens, in order, cut into pieces of
    max_seq_length - 2 between [CLS] and [SEP]; only a document's first and last piece may be
    shorter, no piece crosses documents, no token is lost, one segment, no random next."""
    documents = sentinel_documents()
    instances = create_training_instances(documents, SENTINEL_VOCAB, 64, dupe_factor=2,
                                          static_masking=False, seed=3, next_sentence=False)
    for instance in instances:
        tokens = instance.tokens
        assert tokens[0] == CLS and tokens[-1] == SEP and len(tokens) <= 64
        assert CLS not in tokens[1:] and SEP not in tokens[1:-1]
        assert instance.segment_ids == [0] * len(tokens) and not instance.is_random_next
        assert not instance.masked_lm_positions
        assert len({d for d, _ in sentence_ids(tokens[1:-1])}) == 1
    per_document = collections.defaultdict(list)
    for instance in instances:
        per_document[sentence_ids(instance.tokens[1:-1])[0][0]].append(instance.tokens[1:-1])
    for d, document in enumerate(documents):
        stream = [t for sentence in document for t in sentence]
        pieces = per_document[d]
        # Two passes, each holding every token of the document once.
        assert sorted(t for p in pieces for t in p) == sorted(stream * 2)
        # Per pass only the head and the tail piece may be short.
        assert sum(len(p) != 62 for p in pieces) <= 4
        # The passes cut at different places (a random offset each): more than one short length.
        assert len({len(p) for p in pieces if len(p) != 62}) > 1


def test_mlm_only_segments_are_masked_statically_like_pairs():
    instances = create_training_instances(sentinel_documents(), SENTINEL_VOCAB, 64, 10,
                                          dupe_factor=1, static_masking=True, seed=4,
                                          next_sentence=False)
    for instance in instances:
        # Google's count: min(cap, max(1, round(15% of the tokens incl. [CLS] and [SEP]))).
        assert len(instance.masked_lm_positions) == min(10, max(1, round(0.15 * len(
            instance.tokens))))
        assert 0 not in instance.masked_lm_positions
        assert len(instance.tokens) - 1 not in instance.masked_lm_positions


# --- static masking -------------------------------------------------------------------------------

def test_static_masking_statistics_and_invariants():
    rng = random.Random(0)
    rows = packed_sequences(3000, seed=1)
    masked, positions, labels = zip(*(create_masked_lm_predictions(tokens, 0.15, 20, VOCAB, rng)
                                      for tokens in rows))
    for tokens, chosen in zip(rows, positions):
        assert len(chosen) == min(20, max(1, round(len(tokens) * 0.15)))
    assert_berts_masking(rows, masked, positions, labels)


def test_static_masking_caps_at_max_predictions_per_seq():
    rng = random.Random(0)
    for tokens in packed_sequences(200, seed=2, min_length=60):
        _, positions, _ = create_masked_lm_predictions(tokens, 0.15, 4, VOCAB, rng)
        assert len(positions) == 4


def test_static_whole_word_masking_masks_whole_words():
    rng = random.Random(0)
    documents = to_ids(string_documents(3, num_documents=60))
    rows = [[CLS] + s + [SEP] + s + [SEP] for d in documents for s in d]
    partial_words = 0
    for tokens in rows:
        _, positions, labels = create_masked_lm_predictions(tokens, 0.15, 20, VOCAB, rng,
                                                            do_whole_word_mask=True)
        chosen = set(positions)
        for word in words_of(tokens):
            partial_words += 0 < len(chosen & set(word)) < len(word)
        assert len(positions) <= min(20, max(1, round(len(tokens) * 0.15)))
        assert labels == [tokens[p] for p in positions]
    assert partial_words == 0


# --- features -------------------------------------------------------------------------------------

def test_instance_to_features_pads_to_static_lengths():
    instance = TrainingInstance([CLS, 10, MASK, SEP, 11, SEP], [0, 0, 0, 0, 1, 1], False, [2], [12])
    features = instance_to_features(instance, 8, 3)
    assert {k: v.tolist() for k, v in features.items()} == {
        "input_word_ids": [2, 10, 4, 3, 11, 3, 0, 0],
        "input_mask": [1, 1, 1, 1, 1, 1, 0, 0],
        "input_type_ids": [0, 0, 0, 0, 1, 1, 0, 0],
        "masked_lm_positions": [2, 0, 0],
        "masked_lm_ids": [12, 0, 0],
        "masked_lm_weights": [1.0, 0.0, 0.0],
        "next_sentence_labels": [0],
    }
    assert features["masked_lm_weights"].dtype == np.float32
    assert features["input_word_ids"].dtype == np.int32


# --- tokenizing and vocabularies ------------------------------------------------------------------

def test_tokenize_documents_with_a_wordpiece_tokenizer(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat",
                                     "sat", "un", "##able", "."]) + "\n")
    tokenizer = tf_text.BertTokenizer(str(vocab_file), lower_case=True, token_out_type=tf.int32)
    documents = [["The cat sat.", "Unable!"], ["   "], ["cat"]]
    assert tokenize_documents(documents, tokenizer, batch_size=2) == [
        [[5, 6, 7, 10], [8, 9, 1]], [[6]]]


def test_vocab_from_tokens_finds_special_and_subword_ids():
    vocab = SpecialTokenIds.from_tokens(VOCAB_WORDS)
    assert (vocab.size, vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == \
        (105, 0, 2, 3, 4)
    assert vocab.subword_ids == frozenset(range(65, 105))
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        SpecialTokenIds.from_tokens(["[PAD]", "[CLS]", "[SEP]", "a"])


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("documents, message", [
    ([], "documents is empty"),
    ([[], []], "None of the 2 documents"),
    ([[[]], [[], []]], "None of the 2 documents"),
    ([[[5, 6, 500]]], "Token id 500"),
])
def test_bad_documents_are_refused(documents, message):
    with pytest.raises(ValueError, match=message):
        create_training_instances(documents, VOCAB, 16, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_seq_length=4), "max_seq_length must be an integer of at least 5"),
    (dict(max_predictions_per_seq=0), "max_predictions_per_seq must be an integer of at least 1"),
    (dict(max_predictions_per_seq=-2), "max_predictions_per_seq must be an integer of at least 1"),
    (dict(masked_lm_prob=0.0), r"masked_lm_prob must be in \(0, 1\]"),
    (dict(short_seq_prob=1.5), r"short_seq_prob must be in \[0, 1\]"),
    (dict(dupe_factor=0), "dupe_factor must be an integer of at least 1"),
])
def test_bad_settings_are_refused(kwargs, message):
    settings = dict(max_seq_length=16, max_predictions_per_seq=3, **{})
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        create_training_instances([[[5, 6], [7]]], VOCAB, **settings)
