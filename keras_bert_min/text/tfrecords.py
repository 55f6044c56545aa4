"""Statically masked pretraining examples on disk, in the layout of Google's BERT scripts.

Files hold `tf.train.Example`s with the seven features `create_pretraining_data.py` writes
and `run_pretraining.py` reads (int64 lists, `masked_lm_weights` a float list), so files made
by Google's script train here unchanged and ours train there:

    input_ids [S]  input_mask [S]  segment_ids [S]  masked_lm_positions [P]  masked_lm_ids [P]
    masked_lm_weights [P]  next_sentence_labels [1]

Reading renames them to the feature dict of `pretraining.FEATURE_NAMES` and casts to int32.
Writing is atomic: shards are written under `.partial` names and renamed only once all
of them are complete, so an interrupted run leaves nothing that looks finished.
"""

import os

import tensorflow as tf

from keras_bert_min._checks import PARTIAL_SUFFIX, check_int
from keras_bert_min.text.corpus import read_documents
from keras_bert_min.text.preprocessor import BertPreprocessor
from keras_bert_min.text.pretraining import (SpecialTokenIds, check_lengths,
                                             create_training_instances, input_pipelines,
                                             instance_to_features, tokenize_documents)

# Our feature name -> the name in Google's files.
GOOGLE_FEATURE_NAMES = {
    "input_word_ids": "input_ids",
    "input_mask": "input_mask",
    "input_type_ids": "segment_ids",
    "masked_lm_positions": "masked_lm_positions",
    "masked_lm_ids": "masked_lm_ids",
    "masked_lm_weights": "masked_lm_weights",
    "next_sentence_labels": "next_sentence_labels",
}
# The package's one name for unfinished output (`_checks.PARTIAL_SUFFIX`); the shards are
# written with tf.io.gfile (any TF file system, e.g. gs://), so not through `_checks`' local files.
INCOMPLETE_SUFFIX = PARTIAL_SUFFIX


def shard_paths(output_prefix, num_shards):
    """The file names of a sharded write: `{prefix}-00000-of-00004.tfrecord`, ..."""
    check_int("num_shards", num_shards, 1)
    return [f"{output_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"
            for index in range(num_shards)]


def features_to_example(features):
    """A feature dict (our names) as a `tf.train.Example` with Google's names and dtypes."""
    def int64s(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))

    return tf.train.Example(features=tf.train.Features(feature={
        google: (floats if name == "masked_lm_weights" else int64s)(features[name])
        for name, google in GOOGLE_FEATURE_NAMES.items()}))


def write_instances(instances, output_prefix, seq_length, max_predictions_per_seq, num_shards=1,
                    pad_id=0):
    """Writes statically masked instances to `num_shards` TFRecord files, atomically.

    Instance i goes to shard i % num_shards, as in Google's script.

    Args:
        instances: `TrainingInstance`s from `create_training_instances` (static masking).
        output_prefix: path prefix of the shards (local or any `tf.io.gfile` file system), or
            a list of the exact file names to write (Google's `--output_file a,b`;
            `num_shards` is then their number).
        seq_length, max_predictions_per_seq: S and P, the padded lengths.
        num_shards: number of files.
        pad_id: the id that pads `input_ids` (0, `[PAD]`, in BERT vocabularies).

    Returns:
        The list of files written.

    Example:
    >>> write_instances(instances, "/tmp/wiki", 128, 20, num_shards=4)  # doctest: +SKIP
    ['/tmp/wiki-00000-of-00004.tfrecord', ...]
    """
    check_lengths(seq_length, max_predictions_per_seq, name="seq_length")
    if isinstance(output_prefix, (list, tuple)):
        paths = [os.fspath(path) for path in output_prefix]
        if not paths or len(set(paths)) != len(paths):
            raise ValueError(f"output files must be distinct and at least one, got {paths}.")
        num_shards = len(paths)
    else:
        paths = shard_paths(output_prefix, num_shards)
    for directory in {os.path.dirname(path) for path in paths}:
        if directory:
            tf.io.gfile.makedirs(directory)
    temporary = [path + INCOMPLETE_SUFFIX for path in paths]
    try:
        writers = [tf.io.TFRecordWriter(path) for path in temporary]
        try:
            for index, instance in enumerate(instances):
                features = instance_to_features(instance, seq_length, max_predictions_per_seq,
                                                pad_id)
                writers[index % num_shards].write(features_to_example(features).SerializeToString())
        finally:
            for writer in writers:
                writer.close()
        for source, target in zip(temporary, paths):
            tf.io.gfile.rename(source, target, overwrite=True)
    except BaseException:
        for path in temporary:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    return paths


def write_pretraining_data(corpus_paths, vocab_file, output_prefix, max_seq_length=128,
                           max_predictions_per_seq=20, masked_lm_prob=0.15, short_seq_prob=0.1,
                           dupe_factor=10, do_whole_word_mask=False, lower_case=True,
                           num_shards=1, seed=12345, corpus_format="auto"):
    """Text files -> statically masked TFRecords, as Google's `create_pretraining_data.py`.

    Args:
        corpus_paths: text files, globs or directories (`corpus.read_documents`).
        vocab_file: the WordPiece `vocab.txt`.
        output_prefix: path prefix of the output shards, or a list of files (`write_instances`).
        corpus_format: "auto", "bert" (Google's: a sentence per line, blank lines between
            documents) or "prose", as `corpus.read_documents`' `format`.
        lower_case: lower-case the text (uncased models).
        num_shards: number of output files.
        other args: as `pretraining.create_training_instances`.

    Returns:
        The list of files written.

    Example:
    >>> write_pretraining_data("corpus/*.txt", "vocab.txt", "out/train")  # doctest: +SKIP
    """
    preprocessor = BertPreprocessor(vocab_file, max_seq_length, lower_case=lower_case)
    vocab = SpecialTokenIds.from_preprocessor(preprocessor)
    documents = tokenize_documents(read_documents(corpus_paths, format=corpus_format),
                                   preprocessor)
    instances = create_training_instances(
        documents, vocab, max_seq_length, max_predictions_per_seq, masked_lm_prob,
        short_seq_prob, dupe_factor, do_whole_word_mask, static_masking=True, seed=seed)
    return write_instances(instances, output_prefix, max_seq_length, max_predictions_per_seq,
                           num_shards, vocab.pad_id)


# --- reading ----------------------------------------------------------------------------------

def feature_spec(seq_length, max_predictions_per_seq):
    """The `tf.io.parse_example` spec of Google's files, as in `run_pretraining.py`."""
    def ints(length):
        return tf.io.FixedLenFeature([length], tf.int64)

    return {
        "input_ids": ints(seq_length),
        "input_mask": ints(seq_length),
        "segment_ids": ints(seq_length),
        "masked_lm_positions": ints(max_predictions_per_seq),
        "masked_lm_ids": ints(max_predictions_per_seq),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": ints(1),
    }


def parse_examples(serialized, seq_length, max_predictions_per_seq):
    """Serialized Examples [B] -> the feature dict with our names, ints cast to int32.

    (TPUs have no int64 gathers, hence `run_pretraining.py`'s casts.)
    """
    parsed = tf.io.parse_example(serialized, feature_spec(seq_length, max_predictions_per_seq))
    features = {}
    for name, google in GOOGLE_FEATURE_NAMES.items():
        value = parsed[google]
        features[name] = value if value.dtype == tf.float32 else tf.cast(value, tf.int32)
    return features


def pretraining_dataset_from_tfrecords(file_patterns, batch_size, seq_length,
                                       max_predictions_per_seq, shuffle=True, repeat=True,
                                       seed=None, input_context=None, shuffle_buffer_size=1000,
                                       cycle_length=8):
    """A `tf.data.Dataset` of batched feature dicts from pretraining TFRecords.

    Follows `run_pretraining.py`'s `input_fn`: shuffled files read in parallel by an
    interleave, then a shuffle buffer of examples, batches with `drop_remainder=True` so that
    every shape is static, parsed with `tf.io.parse_example`. With an `input_context`, each
    input pipeline reads its own files (`files[input_pipeline_id::num_input_pipelines]`).

    Args:
        file_patterns: a file or glob, a comma-separated list of them (as Google's flag), or
            a list of them.
        batch_size: examples per batch of this pipeline (per replica).
        seq_length, max_predictions_per_seq: S and P the files were written with; checked
            against the first example.
        shuffle, repeat, seed: shuffle files and examples / repeat forever / seed of both.
            The order is a pure function of the seed (the interleave keeps its order, unlike
            Google's sloppy one), so `skip(n)` gives what an uninterrupted run reads next.
        input_context: an optional `tf.distribute.InputContext`.
        shuffle_buffer_size: examples in the shuffle buffer.
        cycle_length: files read at once.

    Returns:
        A dataset of `pretraining.FEATURE_NAMES` dicts, shapes [batch_size, seq_length],
        [batch_size, max_predictions_per_seq] and [batch_size, 1].

    Example:
    >>> dataset = pretraining_dataset_from_tfrecords("out/train-*", 32, 128, 20)  # doctest: +SKIP
    """
    check_lengths(seq_length, max_predictions_per_seq, name="seq_length")
    check_int("batch_size", batch_size, 1)
    files = match_files(file_patterns)
    num_pipelines, pipeline_id = input_pipelines(input_context)
    if len(files) < num_pipelines:
        raise ValueError(
            f"{len(files)} file(s) cannot be shared by {num_pipelines} input pipelines; each "
            "pipeline reads whole files, so write at least one shard per pipeline (num_shards).")
    files = files[pipeline_id::num_pipelines]
    check_layout(files, seq_length, max_predictions_per_seq)

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(lambda serialized: parse_examples(serialized, seq_length,
                                                            max_predictions_per_seq),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def match_files(file_patterns):
    """Expands files and globs (a list, or a comma-separated string) to a sorted list of files."""
    if isinstance(file_patterns, (str, os.PathLike)):
        file_patterns = os.fspath(file_patterns).split(",")
    files = []
    for pattern in map(os.fspath, file_patterns):
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise FileNotFoundError(
                f"No TFRecord file matches {pattern!r}; check the path or glob (the current "
                f"directory is {os.getcwd()!r}).")
        unfinished = [path for path in matches if path.endswith(INCOMPLETE_SUFFIX)]
        if unfinished:
            raise ValueError(f"{unfinished[0]!r} is an interrupted write; delete it and write "
                             "the data again, or use a glob that matches only finished shards.")
        files.extend(matches)
    if not files:
        raise FileNotFoundError("No TFRecord files were given; pass a file, glob or list of them.")
    return files


def check_layout(files, seq_length, max_predictions_per_seq):
    """Checks the first example in `files` against Google's layout and the requested lengths.

    A mismatch would otherwise surface as a parse error deep inside `model.fit`.
    """
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            example = tf.train.Example.FromString(record.numpy())
            _check_example(example, path, seq_length, max_predictions_per_seq)
            return
    raise ValueError(f"The TFRecord files {files[:3]}{'...' if len(files) > 3 else ''} hold no "
                     "examples; write the pretraining data again.")


def _check_example(example, path, seq_length, max_predictions_per_seq):
    found = example.features.feature
    missing = [name for name in GOOGLE_FEATURE_NAMES.values() if name not in found]
    if missing:
        raise ValueError(f"{path!r} is not BERT pretraining data: its examples lack {missing}; "
                         f"expected the features {list(GOOGLE_FEATURE_NAMES.values())}.")
    lengths = {name: len(found[name].int64_list.value) + len(found[name].float_list.value)
               for name in GOOGLE_FEATURE_NAMES.values()}
    if lengths["input_ids"] != seq_length:
        raise ValueError(
            f"{path!r} holds sequences of length {lengths['input_ids']}, but seq_length="
            f"{seq_length} was requested; pass seq_length={lengths['input_ids']} or write the "
            "data again with this length.")
    if lengths["masked_lm_positions"] != max_predictions_per_seq:
        raise ValueError(
            f"{path!r} holds {lengths['masked_lm_positions']} masked positions per sequence, but "
            f"max_predictions_per_seq={max_predictions_per_seq} was requested; pass "
            f"max_predictions_per_seq={lengths['masked_lm_positions']}.")
    if not found["masked_lm_weights"].float_list.value and lengths["masked_lm_weights"]:
        raise ValueError(f"{path!r} stores masked_lm_weights as integers; Google's layout and "
                         "this reader need a float list.")
