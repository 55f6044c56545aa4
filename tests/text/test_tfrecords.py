"""Tests of keras_bert_min.text.tfrecords: Google's on-disk layout, atomic sharded writes, reading.

References: Examples built by hand with the seven feature names of Google's
`create_pretraining_data.py`, and raw `tf.train.Example` parsing independent of our reader.
"""

import random

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.text import tfrecords
from keras_bert_min.text.pretraining import (FEATURE_NAMES, SpecialTokenIds,
                                             create_training_instances, instance_to_features)
from keras_bert_min.text.tfrecords import (match_files, pretraining_dataset_from_tfrecords,
                                           shard_paths, write_instances, write_pretraining_data)
from tests.text.reference_tokenization import FullTokenizer
from tests.text.test_pretraining import google_training_instances

VOCAB = SpecialTokenIds(size=100, cls_id=2, sep_id=3, mask_id=4)
GOOGLE_INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                       "masked_lm_ids", "next_sentence_labels")


def instances(count_documents=20, seed=0):
    rng = random.Random(seed)
    documents = [[[rng.randint(5, 99) for _ in range(rng.randint(1, 9))]
                  for _ in range(rng.randint(1, 6))] for _ in range(count_documents)]
    return create_training_instances(documents, VOCAB, 16, 3, dupe_factor=2, seed=seed)


def read_all(dataset):
    """Unbatched rows of a dataset of batch size 1, as dicts of lists."""
    return [{name: batch[name][0].numpy().tolist() for name in FEATURE_NAMES} for batch in dataset]


def raw_examples(path):
    """The Examples of one file, parsed without our reader."""
    return [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(path)]


def google_example(input_ids, input_mask, segment_ids, positions, ids, weights, label):
    """An Example exactly as Google's write_instance_to_example_files builds one."""
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return tf.train.Example(features=tf.train.Features(feature={
        "input_ids": ints(input_ids),
        "input_mask": ints(input_mask),
        "segment_ids": ints(segment_ids),
        "masked_lm_positions": ints(positions),
        "masked_lm_ids": ints(ids),
        "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=weights)),
        "next_sentence_labels": ints([label]),
    }))


def write_examples(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())


# --- writing ------------------------------------------------------------------------------------

def test_shard_names():
    assert shard_paths("/data/train", 3) == ["/data/train-00000-of-00003.tfrecord",
                                             "/data/train-00001-of-00003.tfrecord",
                                             "/data/train-00002-of-00003.tfrecord"]
    with pytest.raises(ValueError, match="num_shards must be an integer of at least 1, got 0"):
        shard_paths("/data/train", 0)


def test_written_files_have_googles_names_dtypes_and_round_robin_order(tmp_path):
    data = instances()
    paths = write_instances(data, str(tmp_path / "out" / "train"), 16, 3, num_shards=3)
    assert paths == shard_paths(str(tmp_path / "out" / "train"), 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord"]
    for shard, path in enumerate(paths):
        examples = raw_examples(path)
        assert len(examples) == len(data[shard::3])
        for example, instance in zip(examples, data[shard::3]):
            feature = example.features.feature
            assert sorted(feature) == sorted(GOOGLE_INT_FEATURES + ("masked_lm_weights",))
            for name in GOOGLE_INT_FEATURES:
                assert feature[name].WhichOneof("kind") == "int64_list"
            assert feature["masked_lm_weights"].WhichOneof("kind") == "float_list"
            length, count = len(instance.tokens), len(instance.masked_lm_positions)
            assert list(feature["input_ids"].int64_list.value) == \
                instance.tokens + [0] * (16 - length)
            assert list(feature["input_mask"].int64_list.value) == \
                [1] * length + [0] * (16 - length)
            assert list(feature["segment_ids"].int64_list.value) == \
                instance.segment_ids + [0] * (16 - length)
            assert list(feature["masked_lm_positions"].int64_list.value) == \
                instance.masked_lm_positions + [0] * (3 - count)
            assert list(feature["masked_lm_ids"].int64_list.value) == \
                instance.masked_lm_ids + [0] * (3 - count)
            assert list(feature["masked_lm_weights"].float_list.value) == \
                [1.0] * count + [0.0] * (3 - count)
            assert list(feature["next_sentence_labels"].int64_list.value) == \
                [int(instance.is_random_next)]


def test_round_trip_is_exact(tmp_path):
    data = instances()
    write_instances(data, str(tmp_path / "train"), 16, 3, num_shards=3)
    dataset = pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 1, 16, 3,
                                                 shuffle=False, repeat=False)
    # Unshuffled, the interleave takes one record per shard in turn: the written order.
    expected = [{k: v.tolist() for k, v in instance_to_features(x, 16, 3).items()} for x in data]
    assert read_all(dataset) == expected
    batch = next(iter(dataset))
    assert {k: v.dtype for k, v in batch.items()} == {
        **{k: tf.int32 for k in FEATURE_NAMES}, "masked_lm_weights": tf.float32}


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path):
    data = instances()

    def interrupted():
        yield from data[:5]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_instances(interrupted(), str(tmp_path / "train"), 16, 3, num_shards=2)
    assert list(tmp_path.iterdir()) == []


def test_a_leftover_incomplete_shard_is_refused(tmp_path):
    write_instances(instances(), str(tmp_path / "train"), 16, 3, num_shards=2)
    (tmp_path / "train-00000-of-00002.tfrecord.partial").write_bytes(b"")
    with pytest.raises(ValueError, match="interrupted write"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 1, 16, 3)


def test_write_pretraining_data_matches_googles_script_end_to_end(tmp_path):
    vocab_words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "ran",
                   "on", "a", "mat", "un", "##able", "##s", "to", "see", ".", ","]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab_words) + "\n")
    rng = random.Random(0)
    words = ["the", "cat", "cats", "dog", "dogs", "sat", "ran", "on", "a", "mat", "unable", "to",
             "see", ",", "The", "Dogs"]
    lines = []
    for _ in range(12):  # documents: one sentence a line, a blank line after each
        for _ in range(rng.randint(1, 8)):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + " .")
        lines.append("")
    (tmp_path / "corpus.txt").write_text("\n".join(lines))

    paths = write_pretraining_data(str(tmp_path / "corpus.txt"), str(tmp_path / "vocab.txt"),
                                   str(tmp_path / "out" / "train"), max_seq_length=24,
                                   max_predictions_per_seq=4, dupe_factor=2,
                                   do_whole_word_mask=True, num_shards=2, seed=7)

    # Google's script: read lines, tokenize with FullTokenizer, pair, mask, write round robin.
    tokenizer = FullTokenizer(vocab_words)
    documents = [[]]
    for line in lines:
        if not line.strip():
            documents.append([])
        elif tokenizer.tokenize(line):
            documents[-1].append(tokenizer.tokenize(line))
    expected = google_training_instances(documents, vocab_words, 24, 2, 0.1, 0.15, 4, True,
                                         random.Random(7))
    ids = {token: i for i, token in enumerate(vocab_words)}
    for shard, path in enumerate(paths):
        examples = raw_examples(path)
        assert len(examples) == len(expected[shard::2]) > 10
        for example, (tokens, segments, is_random_next, positions, labels) in zip(
                examples, expected[shard::2]):
            feature = example.features.feature
            pad = 24 - len(tokens)
            assert list(feature["input_ids"].int64_list.value) == \
                [ids[t] for t in tokens] + [0] * pad
            assert list(feature["segment_ids"].int64_list.value) == segments + [0] * pad
            assert list(feature["masked_lm_positions"].int64_list.value) == \
                positions + [0] * (4 - len(positions))
            assert list(feature["masked_lm_ids"].int64_list.value) == \
                [ids[t] for t in labels] + [0] * (4 - len(labels))
            assert list(feature["next_sentence_labels"].int64_list.value) == [int(is_random_next)]


# --- reading Google's files -----------------------------------------------------------------------

def test_files_in_googles_layout_load_unchanged(tmp_path):
    write_examples(tmp_path / "google.tfrecord", [
        google_example([101, 7, 103, 102, 9, 102, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0],
                       [0, 0, 0, 0, 1, 1, 0, 0], [2, 4, 0], [2023, 2003, 0], [1.0, 1.0, 0.0], 1),
        google_example([101, 5, 102, 6, 6, 102, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0],
                       [0, 0, 0, 1, 1, 1, 0, 0], [1, 0, 0], [1037, 0, 0], [1.0, 0.0, 0.0], 0),
    ])
    dataset = pretraining_dataset_from_tfrecords(str(tmp_path / "google.tfrecord"), 2, 8, 3,
                                                 shuffle=False, repeat=False)
    (batch,) = list(dataset)
    assert {k: v.numpy().tolist() for k, v in batch.items()} == {
        "input_word_ids": [[101, 7, 103, 102, 9, 102, 0, 0], [101, 5, 102, 6, 6, 102, 0, 0]],
        "input_mask": [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]],
        "input_type_ids": [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0]],
        "masked_lm_positions": [[2, 4, 0], [1, 0, 0]],
        "masked_lm_ids": [[2023, 2003, 0], [1037, 0, 0]],
        "masked_lm_weights": [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        "next_sentence_labels": [[1], [0]],
    }
    assert batch["input_word_ids"].dtype == tf.int32
    assert batch["masked_lm_weights"].dtype == tf.float32


def test_batches_have_static_shapes_when_repeating_and_shuffling(tmp_path):
    data = instances()
    write_instances(data, str(tmp_path / "train"), 16, 3, num_shards=2)
    dataset = pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 5, 16, 3, seed=1)
    for name in FEATURE_NAMES:
        assert dataset.element_spec[name].shape.as_list() == (
            [5, 1] if name == "next_sentence_labels" else
            [5, 3] if name.startswith("masked_lm") else [5, 16])
    batches = list(dataset.take(3 * len(data) // 5))  # three epochs' worth
    assert all(b["input_word_ids"].shape == (5, 16) and b["masked_lm_ids"].shape == (5, 3)
               for b in batches)
    rows = [tuple(row) for b in batches for row in b["input_word_ids"].numpy().tolist()]
    written = [tuple(instance_to_features(x, 16, 3)["input_word_ids"].tolist()) for x in data]
    assert set(rows) <= set(written) and len(set(rows)) > 0.9 * len(set(written))
    assert rows[:len(written)] != written  # shuffled


def test_shuffled_batches_are_a_function_of_the_seed_and_skip_resumes_them(tmp_path):
    write_instances(instances(), str(tmp_path / "train"), 16, 3, num_shards=4)

    def batches(seed, skip=0):
        dataset = pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 4, 16, 3,
                                                     seed=seed, shuffle_buffer_size=16)
        return [batch["input_word_ids"].numpy().tolist() for batch in dataset.skip(skip).take(
            20 - skip)]

    first = batches(5)
    assert batches(5) == first and batches(5, skip=7) == first[7:]
    assert batches(6) != first


def test_input_pipelines_read_disjoint_files(tmp_path):
    data = instances()
    write_instances(data, str(tmp_path / "train"), 16, 3, num_shards=4)
    rows = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline)
        dataset = pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 1, 16, 3,
                                                     shuffle=False, repeat=False,
                                                     input_context=context)
        rows.append(read_all(dataset))
    shard_of = [i % 4 for i in range(len(data))]
    expected = [{k: v.tolist() for k, v in instance_to_features(x, 16, 3).items()} for x in data]
    for pipeline in range(2):  # pipeline 0 reads shards 0 and 2, pipeline 1 shards 1 and 3
        mine = [e for e, s in zip(expected, shard_of) if s % 2 == pipeline]
        assert sorted(map(str, rows[pipeline])) == sorted(map(str, mine))


def test_dataset_feeds_a_distribution_strategy(tmp_path, two_cpu_strategy):
    write_instances(instances(), str(tmp_path / "train"), 16, 3, num_shards=2)
    distributed = two_cpu_strategy.distribute_datasets_from_function(
        lambda context: pretraining_dataset_from_tfrecords(
            str(tmp_path / "train-*"), 2, 16, 3, input_context=context))
    batch = next(iter(distributed))
    per_replica = two_cpu_strategy.experimental_local_results(batch["input_word_ids"])
    assert [t.shape.as_list() for t in per_replica] == [[2, 16], [2, 16]]


# --- bad input ----------------------------------------------------------------------------------

def test_missing_files_and_empty_globs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tfrecord"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "missing.tfrecord"), 1, 16, 3)
    with pytest.raises(FileNotFoundError, match=r"nothing-\*"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "nothing-*"), 1, 16, 3)
    with pytest.raises(FileNotFoundError, match="No TFRecord files were given"):
        match_files([])


def test_comma_separated_patterns_are_expanded(tmp_path):
    paths = write_instances(instances(), str(tmp_path / "train"), 16, 3, num_shards=3)
    assert match_files(f"{paths[2]},{tmp_path / 'train-0000[01]*'}") == [paths[2], *paths[:2]]


def test_lengths_that_differ_from_the_files_are_refused(tmp_path):
    write_instances(instances(), str(tmp_path / "train"), 16, 3)
    pattern = str(tmp_path / "train-*")
    with pytest.raises(ValueError, match="sequences of length 16, but seq_length=32"):
        pretraining_dataset_from_tfrecords(pattern, 1, 32, 3)
    with pytest.raises(ValueError, match="3 masked positions per sequence, but "
                                         "max_predictions_per_seq=20"):
        pretraining_dataset_from_tfrecords(pattern, 1, 16, 20)


def test_files_that_are_not_pretraining_data_are_refused(tmp_path):
    example = google_example([1] * 8, [1] * 8, [0] * 8, [1, 0, 0], [5, 0, 0], [1.0, 0, 0], 0)
    del example.features.feature["next_sentence_labels"]
    write_examples(tmp_path / "other.tfrecord", [example])
    with pytest.raises(ValueError, match=r"lack \['next_sentence_labels'\]"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "other.tfrecord"), 1, 8, 3)
    write_examples(tmp_path / "empty.tfrecord", [])
    with pytest.raises(ValueError, match="hold no examples"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "empty.tfrecord"), 1, 8, 3)


def test_too_few_files_for_the_input_pipelines_is_refused(tmp_path):
    write_instances(instances(), str(tmp_path / "train"), 16, 3, num_shards=1)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(ValueError, match="1 file\\(s\\) cannot be shared by 2 input pipelines"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "train-*"), 1, 16, 3,
                                           input_context=context)


def test_bad_lengths_are_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="max_predictions_per_seq must be an integer of at least"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "x"), 1, 16, 0)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
        pretraining_dataset_from_tfrecords(str(tmp_path / "x"), 0, 16, 3)
    with pytest.raises(ValueError, match="more than seq_length=8"):
        write_instances(instances(), str(tmp_path / "train"), 8, 3)
    assert not any(tmp_path.iterdir())


def test_feature_spec_matches_run_pretraining():
    spec = tfrecords.feature_spec(128, 20)
    assert spec["input_ids"] == tf.io.FixedLenFeature([128], tf.int64)
    assert spec["masked_lm_weights"] == tf.io.FixedLenFeature([20], tf.float32)
    assert spec["next_sentence_labels"] == tf.io.FixedLenFeature([1], tf.int64)
    assert np.array_equal(sorted(spec), sorted(GOOGLE_INT_FEATURES + ("masked_lm_weights",)))
