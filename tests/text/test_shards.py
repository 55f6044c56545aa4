"""Tests for keras_bert_min.text.shards: shard k holds exactly Google's pairing of its documents
with the seed + k (create_training_instances is checked against Google's script elsewhere),
each worker writes only its own shards, a killed write leaves nothing that looks finished, and
the datasets read back what was written."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.text import shards
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.fixtures import SPECIAL_TOKENS, write_vocab_file
from keras_bert_min.text.pretraining import (SpecialTokenIds, create_training_instances,
                                             instance_to_features, tokenize_documents)

PAIRING = dict(seq_length=24, max_predictions_per_seq=4, dupe_factor=2)
WORDS = "alpha beta gamma delta the cat sat on a mat dog ran far away".split()


@pytest.fixture(scope="module")
def tiny_preprocessor(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    return BertPreprocessor(write_vocab_file(path, SPECIAL_TOKENS + WORDS + ["."]), 24)


def make_groups(count=3):
    words = WORDS
    rng = np.random.default_rng(0)
    groups = []
    for g in range(count):
        documents = [[" ".join(rng.choice(words, size=rng.integers(3, 9))) + "."
                      for _ in range(rng.integers(2, 6))] for _ in range(6 + g)]
        groups.append(documents)
    return groups


def read_records(path, seq_length, max_predictions_per_seq):
    from keras_bert_min.text.tfrecords import parse_examples
    dataset = tf.data.TFRecordDataset(path).batch(10_000).map(
        lambda s: parse_examples(s, seq_length, max_predictions_per_seq))
    return {k: v.numpy() for k, v in next(iter(dataset)).items()}


def test_group_documents_cuts_after_the_document_that_reaches_the_size():
    documents = [["abc", "de"], ["f"], ["ghij"], ["k"], ["lm"]]
    assert [[len(d) for d in g] for g in shards.group_documents(documents, 5)] == [
        [2], [1, 1], [1, 1]]  # 5 characters; 1 + 4; then the rest, shorter
    with pytest.raises(ValueError, match="shard_bytes"):
        list(shards.group_documents(documents, 0))


@pytest.mark.parametrize("static_masking", [True, False])
def test_each_shard_is_googles_pairing_of_its_documents(tiny_preprocessor, tmp_path,
                                                        static_masking):
    groups = make_groups()
    vocab = SpecialTokenIds.from_preprocessor(tiny_preprocessor)
    written = shards.write_shards(iter(groups), tiny_preprocessor, str(tmp_path), **PAIRING,
                                  static_masking=static_masking, seed=7, worker=0,
                                  num_workers=2)
    assert [os.path.basename(p) for p, _ in written] == ["shard-00000.tfrecord",
                                                         "shard-00002.tfrecord"]
    for (path, count), index in zip(written, [0, 2]):
        expected = create_training_instances(
            tokenize_documents(groups[index], tiny_preprocessor), vocab, 24, 4, dupe_factor=2,
            static_masking=static_masking, seed=7 + index)
        records = read_records(path, 24, 4)
        assert count == len(expected) == len(records["input_word_ids"])
        for i, instance in enumerate(expected):
            features = instance_to_features(instance, 24, 4, vocab.pad_id)
            for name, value in features.items():
                np.testing.assert_array_equal(records[name][i], value, err_msg=name)


def test_a_rerun_reuses_finished_shards_and_removes_a_killed_ones(tiny_preprocessor, tmp_path):
    groups = make_groups()
    first = shards.write_shards(iter(groups), tiny_preprocessor, str(tmp_path), **PAIRING)
    stamps = {path: os.stat(path).st_mtime_ns for path, _ in first}
    stale = tmp_path / "shard-00003.tfrecord.partial"
    stale.write_bytes(b"half")
    again = shards.write_shards(iter(groups), tiny_preprocessor, str(tmp_path), **PAIRING)
    assert again == first and not stale.exists()
    assert {path: os.stat(path).st_mtime_ns for path, _ in again} == stamps
    # Other settings (here the seed) are not reused: the shards are written afresh.
    other = shards.write_shards(iter(groups), tiny_preprocessor, str(tmp_path), **PAIRING, seed=1)
    assert [count for _, count in other] != [] and all(
        os.stat(path).st_mtime_ns != stamps[path] for path, _ in other)


def test_a_worker_without_a_shard_is_told_to_lower_shard_mb(tiny_preprocessor, tmp_path):
    with pytest.raises(ValueError, match="no shard to worker 2 of 3; lower --shard_mb"):
        shards.write_shards(iter(make_groups(2)), tiny_preprocessor, str(tmp_path), **PAIRING,
                            worker=2, num_workers=3)


def test_dynamic_batches_mask_what_was_written_and_are_a_function_of_the_seed(
        tiny_preprocessor, tmp_path):
    written = shards.write_shards(iter(make_groups()), tiny_preprocessor, str(tmp_path),
                                  **PAIRING)
    files = [path for path, _ in written]
    vocab = SpecialTokenIds.from_preprocessor(tiny_preprocessor)
    originals = {tuple(row[row > 0]) for path in files
                 for row in read_records(path, 24, 4)["input_word_ids"]}

    def batches(seed, skip=0, count=6):
        dataset = shards.shard_dataset(files, vocab, 4, 24, 4, seed=seed).skip(skip)
        return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(count)]

    first = batches(3)
    for batch in first:
        ids = batch["input_word_ids"].copy()
        for row, positions, labels, weights in zip(ids, batch["masked_lm_positions"],
                                                   batch["masked_lm_ids"],
                                                   batch["masked_lm_weights"]):
            chosen = positions[weights > 0]
            assert len(chosen) >= 1
            row[chosen] = labels[weights > 0]  # undo the masks: an example that was written
            assert tuple(row[row > 0]) in originals
    again = batches(3)
    for a, b in zip(first, again):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    for a, b in zip(first[2:], batches(3, skip=2, count=4)):
        np.testing.assert_array_equal(a["input_word_ids"], b["input_word_ids"])
    assert any((a["input_word_ids"] != b["input_word_ids"]).any()
               for a, b in zip(first, batches(4)))
