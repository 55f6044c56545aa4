"""Tests of keras_bert_min.text.masking: dynamic masking in tf.data and the dataset it feeds,
and the dataset of statically masked instances.

References: counts written from the masking rules, the static masking of
`pretraining.create_masked_lm_predictions` (the same share, drawn differently), and the
instances the batches are built from. Corpora and shared helpers come from test_pretraining.py.
"""

import collections
import math
import random

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.text.masking import (dynamic_mask, pretraining_dataset_from_instances,
                                         pretraining_dataset_from_static_instances)
from keras_bert_min.text.pretraining import (FEATURE_NAMES, create_masked_lm_predictions,
                                             create_training_instances, instance_to_features)
from tests.text.test_pretraining import (CLS, PAD, SEP, VOCAB, assert_berts_masking,
                                         packed_sequences, string_documents, to_ids, words_of)


# --- dynamic masking ------------------------------------------------------------------------------

def tf_text_count(maskable):
    """RandomItemSelector's count: 15% of the maskable tokens rounded up, in float32."""
    return math.ceil(np.float32(maskable) * np.float32(0.15))


def run_dynamic_mask(rows, max_predictions, do_whole_word_mask=False):
    tf.random.set_seed(0)
    masked, positions, labels = dynamic_mask(tf.ragged.constant(rows, tf.int32), VOCAB,
                                             max_predictions, 0.15, do_whole_word_mask)
    return masked.to_list(), positions.to_list(), labels.to_list()


def test_dynamic_masking_statistics_and_invariants():
    rows = packed_sequences(1500, seed=3)
    masked, positions, labels = run_dynamic_mask(rows, 20)
    for tokens, chosen in zip(rows, positions):
        assert len(chosen) == min(20, tf_text_count(len(tokens) - 3))
    assert_berts_masking(rows, masked, positions, labels)


def test_dynamic_and_static_masking_select_the_same_share():
    rows = packed_sequences(1000, seed=4)
    rng = random.Random(0)
    static = sum(len(create_masked_lm_predictions(t, 0.15, 20, VOCAB, rng)[1]) for t in rows)
    dynamic = sum(map(len, run_dynamic_mask(rows, 20)[1]))
    assert abs(static - dynamic) / sum(map(len, rows)) <= 0.005


def test_dynamic_masking_caps_at_max_predictions_per_seq():
    rows = packed_sequences(100, seed=5, min_length=60)
    _, positions, _ = run_dynamic_mask(rows, 4)
    assert all(len(p) == 4 for p in positions)


def test_dynamic_whole_word_masking_masks_whole_words_within_the_cap():
    documents = to_ids(string_documents(6, num_documents=300))
    rows = [x.tokens for x in create_training_instances(
        documents, VOCAB, 128, dupe_factor=1, short_seq_prob=0.0, static_masking=False)]
    assert len(rows) > 300
    for cap in (20, 5):
        masked, positions, labels = run_dynamic_mask(rows, cap, do_whole_word_mask=True)
        for tokens, chosen, label in zip(rows, positions, labels):
            assert 1 <= len(chosen) <= cap
            assert label == [tokens[p] for p in chosen]
            assert all(tokens[p] not in (CLS, SEP) for p in chosen)
            # Whole words, except that a `##` right after [SEP] is a word of its own here.
            after_sep = tokens.index(SEP) + 1
            for word in words_of(tokens):
                if word[0] < after_sep <= word[-1]:
                    word = [i for i in word if i >= after_sep]
                assert len(set(chosen) & set(word)) in (0, len(word))
        if cap == 20:  # 15% of 128 tokens is 19.2: the cap rarely binds
            assert abs(sum(map(len, positions)) / sum(map(len, rows)) - 0.15) <= 0.01


def test_dynamic_masks_are_a_function_of_the_seed():
    rows = tf.ragged.constant(packed_sequences(64, seed=6), tf.int32)
    first, again, other = (dynamic_mask(rows, VOCAB, 20, seed=seed)
                           for seed in ([1, 2], [1, 2], [1, 3]))
    for a, b in zip(first, again):
        assert a.to_list() == b.to_list()
    assert first[1].to_list() != other[1].to_list()


def test_dynamic_masking_picks_positions_uniformly_and_rows_independently():
    # 2,000 copies of one row with 40 maskable tokens: 6 picks each (15% of 40, rounded up).
    row = [CLS] + list(range(5, 25)) + [SEP] + list(range(25, 45)) + [SEP]
    _, positions, _ = dynamic_mask(tf.ragged.constant([row] * 2000, tf.int32), VOCAB, 20,
                                   seed=[4, 5])
    positions = positions.to_list()
    assert all(len(chosen) == 6 for chosen in positions)
    # Identical rows of one batch draw apart: 2,000 draws of 6 of 40 almost never repeat.
    assert len({tuple(chosen) for chosen in positions}) > 1990
    # Every maskable position about 2,000 * 6 / 40 = 300 times (binomial sd 16; bound 5 sd).
    counts = collections.Counter(p for chosen in positions for p in chosen)
    maskable = [i for i, token in enumerate(row) if token not in (CLS, SEP)]
    assert sorted(counts) == maskable
    assert all(abs(counts[p] - 300) < 80 for p in maskable), counts


# --- the tf.data builder --------------------------------------------------------------------------

def short_documents():
    """One-sentence documents of 1-3 tokens, and a few longer ones."""
    rng = random.Random(8)
    documents = [[[rng.randint(5, 99) for _ in range(rng.randint(1, 3))]] for _ in range(30)]
    documents += [[[rng.randint(5, 99) for _ in range(rng.randint(1, 12))] for _ in range(6)]
                  for _ in range(10)]
    return documents


def check_static_shapes(dataset, batch_size, seq_length, max_predictions):
    shapes = {"masked_lm_positions": [batch_size, max_predictions],
              "masked_lm_ids": [batch_size, max_predictions],
              "masked_lm_weights": [batch_size, max_predictions],
              "next_sentence_labels": [batch_size, 1]}
    for name in FEATURE_NAMES:
        expected = shapes.get(name, [batch_size, seq_length])
        assert dataset.element_spec[name].shape.as_list() == expected, name
    batches = list(dataset)
    for batch in batches:
        for name in FEATURE_NAMES:
            assert batch[name].shape.as_list() == shapes.get(name, [batch_size, seq_length])
    return batches


def test_dataset_from_instances_pads_masks_and_labels_each_example():
    instances = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=3,
                                          static_masking=False, seed=0)
    dataset = pretraining_dataset_from_instances(instances, VOCAB, 4, 16, 3, shuffle=False,
                                                 repeat=False)
    batches = check_static_shapes(dataset, 4, 16, 3)
    assert len(batches) == len(instances) // 4
    rows = [{k: v[i].numpy() for k, v in batch.items()} for batch in batches for i in range(4)]
    for instance, row in zip(instances, rows):
        length = len(instance.tokens)
        assert row["input_mask"].tolist() == [1] * length + [0] * (16 - length)
        assert row["input_type_ids"].tolist() == instance.segment_ids + [0] * (16 - length)
        assert row["next_sentence_labels"].tolist() == [int(instance.is_random_next)]
        count = int(row["masked_lm_weights"].sum())
        assert row["masked_lm_weights"].tolist() == [1.0] * count + [0.0] * (3 - count)
        assert count == min(3, tf_text_count(length - 3))
        positions = row["masked_lm_positions"][:count].tolist()
        assert positions == sorted(set(positions)) and row["masked_lm_positions"][count:].sum() == 0
        assert all(instance.tokens[p] not in (CLS, SEP) and p < length for p in positions)
        assert row["masked_lm_ids"][:count].tolist() == [instance.tokens[p] for p in positions]
        assert row["input_word_ids"][length:].tolist() == [PAD] * (16 - length)
        unmasked = [i for i in range(length) if i not in positions]
        assert row["input_word_ids"][unmasked].tolist() == [instance.tokens[i] for i in unmasked]


def test_dataset_from_instances_remasks_every_epoch_and_repeats_with_static_shapes():
    instances = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=2,
                                          static_masking=False, seed=0)
    dataset = pretraining_dataset_from_instances(instances, VOCAB, 8, 16, 3, shuffle=False,
                                                 do_whole_word_mask=True)
    epoch = len(instances) // 8
    batches = list(dataset.take(2 * epoch + 3))
    assert all(b["input_word_ids"].shape == (8, 16) for b in batches)
    first = np.concatenate([b["masked_lm_positions"].numpy() for b in batches[:epoch]])
    second = np.concatenate([b["masked_lm_positions"].numpy() for b in batches[epoch:2 * epoch]])
    assert not np.array_equal(first, second)


def test_dataset_from_instances_shards_instances_over_input_pipelines():
    instances = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=1,
                                          static_masking=False, seed=0)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline)
        dataset = pretraining_dataset_from_instances(instances, VOCAB, 1, 16, 3, shuffle=False,
                                                     repeat=False, input_context=context)
        seen.append([b["input_type_ids"][0].numpy().tolist() + b["input_mask"][0].numpy().tolist()
                     for b in dataset])
    expected = [instance_to_features(x, 16, 3) for x in instances]
    expected = [f["input_type_ids"].tolist() + f["input_mask"].tolist() for f in expected]
    assert seen[0] == expected[0::2] and seen[1] == expected[1::2]


# --- statically masked instances ------------------------------------------------------------

def static_instances(dupe_factor=2):
    # Masked once, in Python, as Google's create_pretraining_data.py does.
    return create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=dupe_factor,
                                     seed=0)


def rows_of(batches):
    return [{name: value[i].numpy() for name, value in batch.items()}
            for batch in batches for i in range(len(batch["input_word_ids"]))]


def test_static_dataset_batches_each_instances_features_in_order():
    instances = static_instances()
    assert any(instance.masked_lm_positions for instance in instances)
    batches = check_static_shapes(pretraining_dataset_from_static_instances(instances, 4, 16, 3),
                                  4, 16, 3)
    assert len(batches) == len(instances) // 4  # the last partial batch is dropped
    rows = rows_of(batches)
    for instance, row in zip(instances, rows):
        expected = instance_to_features(instance, 16, 3)
        for name in FEATURE_NAMES:
            assert row[name].dtype == expected[name].dtype, name
            np.testing.assert_array_equal(row[name], expected[name], err_msg=name)
    # And by hand, from the instance itself: the masked tokens as they are, padding, and the
    # predictions weighted 1 then padded with weight 0.
    instance, row = instances[0], rows[0]
    length, count = len(instance.tokens), len(instance.masked_lm_positions)
    assert row["input_word_ids"].tolist() == instance.tokens + [PAD] * (16 - length)
    assert row["input_mask"].tolist() == [1] * length + [0] * (16 - length)
    assert row["masked_lm_positions"].tolist() == instance.masked_lm_positions + [0] * (3 - count)
    assert row["masked_lm_ids"].tolist() == instance.masked_lm_ids + [0] * (3 - count)
    assert row["masked_lm_weights"].tolist() == [1.0] * count + [0.0] * (3 - count)
    assert row["next_sentence_labels"].tolist() == [int(instance.is_random_next)]


def test_static_dataset_shards_examples_over_input_pipelines():
    instances = static_instances(dupe_factor=1)
    expected = [instance_to_features(x, 16, 3)["input_word_ids"].tolist() for x in instances]
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline)
        dataset = pretraining_dataset_from_static_instances(instances, 1, 16, 3,
                                                            input_context=context)
        seen.append([row["input_word_ids"].tolist() for row in rows_of(dataset)])
    # Pipeline p reads every second example from p: together each example once.
    assert seen[0] == expected[0::2] and seen[1] == expected[1::2]


def test_static_dataset_shuffles_and_repeats_for_training():
    instances = static_instances(dupe_factor=1)
    in_order = [instance_to_features(x, 16, 3)["input_word_ids"].tolist() for x in instances]

    def first_rows(seed, count):
        dataset = pretraining_dataset_from_static_instances(instances, 1, 16, 3,
                                                            shuffle_and_repeat=True, seed=seed)
        return [row["input_word_ids"].tolist() for row in rows_of(dataset.take(count))]

    epochs = first_rows(0, 2 * len(instances))
    first_epoch = epochs[:len(instances)]
    # Each epoch is a reordering of all examples, and it repeats past the end.
    assert sorted(first_epoch) == sorted(in_order) and first_epoch != in_order
    assert sorted(epochs[len(instances):]) == sorted(in_order)
    assert first_rows(0, len(instances)) == first_epoch  # a function of the seed


def test_static_dataset_refuses_bad_lengths():
    instances = static_instances(dupe_factor=1)
    with pytest.raises(ValueError, match="more than seq_length=8"):
        pretraining_dataset_from_static_instances(instances, 4, 8, 3)
    with pytest.raises(ValueError, match="more than max_predictions_per_seq=1"):
        pretraining_dataset_from_static_instances(instances, 4, 16, 1)
    with pytest.raises(ValueError, match="seq_length must be an integer of at least 5"):
        pretraining_dataset_from_static_instances(instances, 4, 4, 3)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1, got 0"):
        pretraining_dataset_from_static_instances(instances, 0, 16, 3)


# --- bad input ------------------------------------------------------------------------------------

def test_dataset_from_instances_refuses_bad_input():
    unmasked = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=1,
                                         static_masking=False)
    masked = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=1)
    with pytest.raises(ValueError, match="already masked"):
        pretraining_dataset_from_instances(masked, VOCAB, 4, 16, 3)
    with pytest.raises(ValueError, match="more than seq_length=8"):
        pretraining_dataset_from_instances(unmasked, VOCAB, 4, 8, 3)
    with pytest.raises(ValueError, match="max_predictions_per_seq must be an integer of at least"):
        pretraining_dataset_from_instances(unmasked, VOCAB, 4, 16, 0)
    with pytest.raises(ValueError, match="seq_length must be an integer of at least 5"):
        pretraining_dataset_from_instances(unmasked, VOCAB, 4, 4, 3)
    with pytest.raises(ValueError, match="do not fill one batch of 1000"):
        pretraining_dataset_from_instances(unmasked, VOCAB, 1000, 16, 3)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
        pretraining_dataset_from_instances(unmasked, VOCAB, 0, 16, 3)
    with pytest.raises(ValueError, match="max_predictions_per_seq must be an integer of at least"):
        dynamic_mask(tf.ragged.constant([[CLS, 5, SEP, 6, SEP]]), VOCAB, 0)
    with pytest.raises(ValueError, match=r"masked_lm_prob must be in \(0, 1\], got '0.15'"):
        dynamic_mask(tf.ragged.constant([[CLS, 5, SEP, 6, SEP]]), VOCAB, 3, masked_lm_prob="0.15")


def test_dataset_from_instances_is_a_function_of_the_seed_and_skip_resumes_it():
    instances = create_training_instances(short_documents(), VOCAB, 16, 3, dupe_factor=2,
                                          static_masking=False, seed=0)

    def batches(seed, skip=0):
        dataset = pretraining_dataset_from_instances(instances, VOCAB, 4, 16, 3, seed=seed)
        return [{name: value.numpy().tolist() for name, value in batch.items()}
                for batch in dataset.skip(skip).take(12 - skip)]

    first = batches(7)
    assert batches(7) == first
    # A resumed run skips what it has trained on and goes on with the same batches and masks.
    assert batches(7, skip=5) == first[5:]
    assert batches(8) != first
