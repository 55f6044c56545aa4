"""Pretraining examples of a corpus larger than memory: shards on disk, read back by tf.data.

Google's `create_pretraining_data.py` holds the whole corpus in memory (its "random next"
sentences may come from any document) and asks users of big corpora to split the input files
and run it once per piece. This module does that split itself, streamed:

    text files --corpus.iter_documents--> documents --group_documents--> shards of ~shard_bytes
        shard k --tokenize, Google's pairing (seed + k), static or no masks--> shard-0000k.tfrecord
        shard files --shard_dataset (dynamic masks per batch, or the static ones)--> batches

Memory is bounded by one shard, whatever the corpus size. A corpus that fits in one shard is
not written at all: the caller pairs it in memory exactly as before (`training.py`), so small
corpora give the same examples as ever. Under multi-worker training each worker writes and reads
only the shards k with k % num_workers == its index. Each shard file is written atomically with
a JSON sidecar (its example count); a re-run reuses the finished shards and removes unfinished
ones, so a killed data stage resumes.
"""

import glob
import json
import os

import tensorflow as tf

from keras_bert_min._checks import PARTIAL_SUFFIX, atomic_file, check_int, stop_point
from keras_bert_min.text.masking import mask_batches
from keras_bert_min.text.pretraining import (SpecialTokenIds, create_training_instances,
                                             tokenize_documents)
from keras_bert_min.text.tfrecords import (feature_spec, match_files, parse_examples,
                                           write_instances)

# About 22 MiB of memory per MB of text while a shard is paired (benchmarks/corpus_memory.py):
# 32 MB shards keep the data stage near 0.7 GiB.
DEFAULT_SHARD_MB = 32


def group_documents(documents, shard_bytes):
    """Consecutive documents in lists of at least `shard_bytes` characters of sentences (the
    last list may be shorter), streamed: one list is held at a time.

    Example:
    >>> [len(g) for g in group_documents([["ab"], ["cd"], ["ef"]], shard_bytes=4)]
    [2, 1]
    """
    check_int("shard_bytes", shard_bytes, 1)
    group, size = [], 0
    for document in documents:
        group.append(document)
        size += sum(map(len, document))
        if size >= shard_bytes:
            yield group
            group, size = [], 0
    if group:
        yield group


def shard_path(directory, index):
    return os.path.join(directory, f"shard-{index:05d}.tfrecord")


def write_shards(groups, preprocessor, directory, *, seq_length, max_predictions_per_seq,
                 dupe_factor=1, static_masking=False, seed=12345, whole_word_mask=False,
                 next_sentence=True, worker=0, num_workers=1):
    """Pairs every shard of documents this worker owns and writes it as a TFRecord file.

    Args:
        groups: an iterable of lists of documents of sentence strings (`group_documents`);
            shard k is the k-th list, owned by worker k % num_workers.
        preprocessor: the `BertPreprocessor` that tokenizes.
        directory: where the shard files go (one directory per worker).
        seq_length, max_predictions_per_seq, dupe_factor, whole_word_mask, next_sentence: as
            `pretraining.create_training_instances`; shard k is paired with the seed `seed + k`.
        static_masking: masks drawn now (Google's); otherwise the examples are written unmasked
            and `shard_dataset` masks every batch afresh.
        worker, num_workers: this worker and how many share the shards.

    Returns:
        `[(path, number of examples)]` of this worker's shards, in order.
    """
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(directory), f"*{PARTIAL_SUFFIX}")):
        os.remove(stale)  # a killed run's unfinished shard
    vocab = SpecialTokenIds.from_preprocessor(preprocessor)
    settings = dict(seq_length=seq_length, max_predictions_per_seq=max_predictions_per_seq,
                    dupe_factor=dupe_factor, static_masking=static_masking,
                    whole_word_mask=whole_word_mask, next_sentence=next_sentence,
                    vocab_size=vocab.size, num_workers=num_workers)
    written = []
    for index, documents in enumerate(groups):
        if index % num_workers != worker:
            continue
        path = shard_path(directory, index)
        if _finished_shard(path, dict(settings, seed=seed + index)) is None:
            instances = create_training_instances(
                tokenize_documents(documents, preprocessor), vocab, max_seq_length=seq_length,
                max_predictions_per_seq=max_predictions_per_seq, dupe_factor=dupe_factor,
                do_whole_word_mask=whole_word_mask, static_masking=static_masking,
                seed=seed + index, next_sentence=next_sentence)
            # The count first: a shard file is only ever there with its count beside it.
            if os.path.exists(path):
                os.remove(path)  # another run's settings: written afresh
            with atomic_file(path + ".json") as f:
                json.dump({"examples": len(instances), **settings, "seed": seed + index}, f)
            write_instances(instances, [path], seq_length, max_predictions_per_seq,
                            pad_id=vocab.pad_id)
            stop_point("shards:written")
            del instances
        written.append((path, _finished_shard(path, dict(settings, seed=seed + index))))
    if not written:
        raise ValueError(f"The corpus gives no shard to worker {worker} of {num_workers}; lower "
                         "--shard_mb so that every worker gets at least one.")
    return written


def _finished_shard(path, settings):
    """The example count of a shard a run with `settings` wrote completely, else None."""
    if not (os.path.exists(path) and os.path.exists(path + ".json")):
        return None
    with open(path + ".json", encoding="utf-8") as f:
        recorded = json.load(f)
    examples = recorded.pop("examples")
    return examples if recorded == settings else None


def shard_dataset(files, vocab, batch_size, seq_length, max_predictions_per_seq, *,
                  static_masking=False, whole_word_mask=False, seed, pipeline_id=0,
                  shuffle_buffer_size=100_000):
    """An endless dataset of batched feature dicts from one worker's shard files.

    The files are shuffled every pass and read one after another through a shuffle buffer of
    examples; unmasked examples are masked per batch from (seed, pipeline_id, batch index)
    (`masking.mask_batches`). The order is a pure function of the seed, so `skip(n)` gives what
    an uninterrupted run reads next.
    """
    files = match_files(files)
    records = tf.data.Dataset.from_tensor_slices(files)
    records = records.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    records = records.flat_map(tf.data.TFRecordDataset)  # one file after another
    records = records.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if static_masking:
        return records.batch(batch_size, drop_remainder=True).map(
            lambda serialized: parse_examples(serialized, seq_length, max_predictions_per_seq),
            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    spec = feature_spec(seq_length, max_predictions_per_seq)

    def unpadded(record):
        parsed = tf.io.parse_single_example(record, spec)
        length = tf.reduce_sum(parsed["input_mask"])
        return {"input_word_ids": tf.cast(parsed["input_ids"][:length], tf.int32),
                "input_type_ids": tf.cast(parsed["segment_ids"][:length], tf.int32),
                "next_sentence_labels": tf.cast(parsed["next_sentence_labels"], tf.int32)}

    dataset = records.map(unpadded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return mask_batches(dataset, vocab, batch_size, seq_length, max_predictions_per_seq,
                        do_whole_word_mask=whole_word_mask, seed=seed, pipeline_id=pipeline_id)
