"""Dynamic masking: BERT's 80/10/10 masked-LM masks drawn in tf.data, fresh every epoch.

The sentence pairs come from `pretraining.create_training_instances(..., static_masking=False)`;
here tensorflow-text's `mask_language_model` masks each batch with the statistics of Google's
static rule (`pretraining.create_masked_lm_predictions`), and the batch is padded to the static
shapes of `pretraining.FEATURE_NAMES`.

Why the selector and the chooser are subclassed: tensorflow-text's `RandomItemSelector` and
`MaskValuesChooser` draw from stateful random ops, shared by the parallel calls of a tf.data map
and by the parallel rows of its `map_fn`, so the masks changed from run to run even with every
seed set (measured: the first batches of two identical runs differed). Here every draw is a
stateless function of a seed, and the pipeline gives batch i the seed (seed, input pipeline, i):
a run's masks are a pure function of its seed, and a resumed run that skips the batches it has
seen sees exactly the masks of an uninterrupted one.

`pretraining_dataset_from_static_instances` batches instances masked once in Python instead
(Google's static masking), in the same feature layout.
"""

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_min._checks import check_fraction, check_int
from keras_bert_min.text.pretraining import (FEATURE_NAMES, check_lengths, input_pipelines,
                                             instance_to_features)


def dynamic_mask(input_word_ids, vocab, max_predictions_per_seq, masked_lm_prob=0.15,
                 do_whole_word_mask=False, seed=None):
    """Masks a ragged batch with tensorflow-text, with the statistics of the static masking.

    Per sequence, `min(max_predictions_per_seq, ceil(masked_lm_prob * maskable))` positions
    are picked among the tokens other than `[CLS]`, `[SEP]` and `[PAD]`, then 80/10/10 as
    Google's. The differences from the static rule are small: the count is 15% of the
    maskable tokens rounded up (in float32) rather than 15% of all tokens rounded, the same
    on average within 0.1 token. With whole-word masking the count is of words, so about half a
    word more is masked on average (0.7% of the tokens at length 128), whole words are dropped
    at random while their pieces overshoot the cap, and a `##` piece right after `[SEP]` starts
    a word of its own instead of joining the last word before the `[SEP]`.

    Args:
        input_word_ids: int RaggedTensor [B, (tokens)], unpadded `[CLS] A [SEP] B [SEP]` rows.
        vocab: a `SpecialTokenIds`.
        max_predictions_per_seq, masked_lm_prob, do_whole_word_mask: as the static masking.
        seed: int tensor of shape [2]; the masks are a pure function of it and the ids. None
            draws one from TF's global random state.

    Returns:
        `(masked_word_ids, masked_lm_positions, masked_lm_ids)`, RaggedTensors [B, (tokens)],
        [B, (predictions)] and [B, (predictions)]; positions ascending, int64.

    Example:
    >>> vocab = SpecialTokenIds(size=20, cls_id=1, sep_id=2, mask_id=3)
    >>> ids = tf.ragged.constant([[1, 5, 6, 7, 2, 8, 2]])
    >>> _, positions, labels = dynamic_mask(ids, vocab, max_predictions_per_seq=4, seed=[1, 2])
    >>> positions.shape.as_list(), labels.shape.as_list()
    ([1, None], [1, None])
    """
    check_int("max_predictions_per_seq", max_predictions_per_seq, 1)
    check_fraction("masked_lm_prob", masked_lm_prob, low_open=True)
    if seed is None:
        seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    selection_seed, values_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    chooser = _SeededMaskValuesChooser(vocab.size, vocab.mask_id, values_seed,
                                       mask_token_rate=0.8, random_token_rate=0.1)
    if do_whole_word_mask:
        # tensorflow-text masks whole items of a [B, (words), (pieces)] tensor.
        input_word_ids = _group_word_pieces(input_word_ids, vocab)
    selector = _SeededItemSelector(
        selection_seed,
        max_pieces=max_predictions_per_seq if do_whole_word_mask else None,
        max_selections_per_batch=max_predictions_per_seq,  # per row, despite the name
        selection_rate=masked_lm_prob,
        unselectable_ids=sorted({vocab.cls_id, vocab.sep_id, vocab.pad_id}))
    return tf_text.mask_language_model(input_word_ids, selector, chooser)


def _group_word_pieces(input_word_ids, vocab):
    """[B, (tokens)] -> [B, (words), (pieces)]: a word starts at every token that is not a `##`
    piece, and at every token at a row start, after `[CLS]`/`[SEP]` or being one of them."""
    ids = input_word_ids.flat_values
    is_special = tf.logical_or(tf.equal(ids, vocab.cls_id), tf.equal(ids, vocab.sep_id))
    is_subword_table = np.zeros(vocab.size, bool)
    is_subword_table[list(vocab.subword_ids)] = True
    is_subword = tf.gather(tf.constant(is_subword_table), ids)
    after_special = tf.concat([[True], is_special[:-1]], axis=0)
    row_starts = tf.gather(input_word_ids.row_starts(), input_word_ids.value_rowids())
    is_row_start = tf.equal(tf.range(tf.size(ids, out_type=tf.int64)), row_starts)
    starts_word = ~is_subword | is_special | after_special | is_row_start
    words = tf.RaggedTensor.from_row_starts(ids, tf.where(starts_word)[:, 0])
    words_per_row = tf.reduce_sum(
        tf.cast(input_word_ids.with_flat_values(starts_word), tf.int64), axis=1)
    return tf.RaggedTensor.from_row_lengths(words, words_per_row)


class _SeededItemSelector(tf_text.RandomItemSelector):
    """`RandomItemSelector` whose choice is a stateless function of `seed`.

    As tensorflow-text's: per row, a uniformly random set of
    min(max_selections_per_batch, ceil(selection_rate * selectable)) items, here the ones with
    the smallest random keys. With `max_pieces` (whole words), words are then dropped from the
    end of that random order until their pieces fit in `max_pieces` (Google skips a word that
    would overshoot and tries the next).
    """

    def __init__(self, seed, max_pieces=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.max_pieces = max_pieces

    def get_selection_mask(self, input_ids, axis):
        if axis != 1:
            raise NotImplementedError(f"Selects along axis 1 (items of a row), got axis={axis}.")
        selectable = self.get_selectable(input_ids, axis)  # [B, (items)]
        num_selectable = tf.reduce_sum(tf.cast(selectable, tf.float32), axis=1)
        num_to_select = tf.minimum(tf.math.ceil(num_selectable * self.selection_rate),
                                   self.max_selections_per_batch)
        keys = tf.random.stateless_uniform(tf.shape(selectable.flat_values), self.seed)
        keys = tf.where(selectable.flat_values, keys, 2.0)  # after every selectable item
        order = tf.argsort(selectable.with_flat_values(keys).to_tensor(default_value=3.0), axis=1)
        place = tf.argsort(order, axis=1)  # each item's place in the random order
        chosen = place < tf.cast(num_to_select, tf.int32)[:, None]
        if self.max_pieces is not None:
            pieces = tf.where(chosen, input_ids.row_lengths(axis=2).to_tensor(), 0)
            pieces_in_order = tf.gather(pieces, order, batch_dims=1)
            fits_in_order = tf.cumsum(pieces_in_order, axis=1) <= self.max_pieces
            chosen &= tf.gather(fits_in_order, place, batch_dims=1)
        return tf.RaggedTensor.from_tensor(chosen, lengths=selectable.row_lengths())


class _SeededMaskValuesChooser(tf_text.MaskValuesChooser):
    """`MaskValuesChooser` whose draws are a stateless function of `seed`: each selected token
    becomes [MASK] with `mask_token_rate`, a token drawn from the whole vocabulary with
    `random_token_rate`, and stays itself otherwise (Google's 80/10/10)."""

    def __init__(self, vocab_size, mask_token, seed, mask_token_rate=0.8, random_token_rate=0.1):
        super().__init__(vocab_size, mask_token, mask_token_rate=mask_token_rate,
                         random_token_rate=random_token_rate)
        self.mask_token_rate = mask_token_rate  # the base class keeps it private
        self.seed = seed

    def get_mask_values(self, masked_lm_ids):
        ids = masked_lm_ids.flat_values
        choice_seed, token_seed = tf.unstack(tf.random.experimental.stateless_split(self.seed, 2))
        choice = tf.random.stateless_uniform(tf.shape(ids), choice_seed)
        random_ids = tf.random.stateless_uniform(tf.shape(ids), token_seed, minval=0,
                                                 maxval=self.vocab_size, dtype=ids.dtype)
        values = tf.where(choice < self.mask_token_rate, tf.cast(self.mask_token, ids.dtype),
                          tf.where(choice < self.mask_token_rate + self.random_token_rate,
                                   random_ids, ids))
        return masked_lm_ids.with_flat_values(values)


def pretraining_dataset_from_instances(instances, vocab, batch_size, seq_length,
                                       max_predictions_per_seq, masked_lm_prob=0.15,
                                       do_whole_word_mask=False, shuffle=True, repeat=True,
                                       seed=None, input_context=None):
    """A `tf.data.Dataset` of batched feature dicts, masked afresh every time it is iterated.

    The instances are held in memory; for a corpus larger than that, mask statically and
    read TFRecords. Every pipeline holds all instances and reads every `num_input_pipelines`-th
    one from `input_pipeline_id` (deterministic sharding of the instances: build them with
    the same seed on every worker).

    Args:
        instances: unmasked `TrainingInstance`s (`create_training_instances(...,
            static_masking=False)`).
        vocab: a `SpecialTokenIds`.
        batch_size: examples per batch of this pipeline (per replica); the last partial batch
            is dropped so that every shape is static.
        seq_length, max_predictions_per_seq: S and P of the padded features.
        masked_lm_prob, do_whole_word_mask: as `dynamic_mask`.
        shuffle, repeat, seed: shuffle the instances every epoch / repeat forever / the seed
            of the shuffle and of the masks (None: one drawn from NumPy's global state, which
            `keras.utils.set_random_seed` sets). Batch i of input pipeline p is masked with
            the seed (seed, p, i): the same seed gives the same batches, and `skip(n)` on the
            result gives the batches an uninterrupted run has after its n-th.
        input_context: an optional `tf.distribute.InputContext`.

    Returns:
        A dataset of `FEATURE_NAMES` dicts, shapes [batch_size, seq_length],
        [batch_size, max_predictions_per_seq] and [batch_size, 1].

    Example:
    >>> pairs = create_training_instances(docs, vocab, static_masking=False)  # doctest: +SKIP
    >>> dataset = pretraining_dataset_from_instances(pairs, vocab, 32, 128, 20)  # doctest: +SKIP
    """
    check_lengths(seq_length, max_predictions_per_seq, name="seq_length")
    check_int("batch_size", batch_size, 1)
    if any(instance.masked_lm_positions for instance in instances):
        raise ValueError("The instances are already masked; build them with "
                         "create_training_instances(..., static_masking=False) for dynamic "
                         "masking, or write them with tfrecords.write_instances.")
    longest = max((len(instance.tokens) for instance in instances), default=0)
    if longest > seq_length:
        raise ValueError(f"An instance has {longest} tokens, more than seq_length={seq_length}; "
                         "pass the max_seq_length the instances were built with.")
    num_pipelines, pipeline_id = input_pipelines(input_context)
    if len(instances) // num_pipelines < batch_size:
        raise ValueError(
            f"{len(instances)} instances over {num_pipelines} input pipeline(s) do not fill one "
            f"batch of {batch_size}; use more text or a smaller batch_size.")

    def ragged(values):
        return tf.RaggedTensor.from_row_lengths(
            np.concatenate(values).astype(np.int32), [len(v) for v in values])

    dataset = tf.data.Dataset.from_tensor_slices({
        "input_word_ids": ragged([instance.tokens for instance in instances]),
        "input_type_ids": ragged([instance.segment_ids for instance in instances]),
        "next_sentence_labels": np.array([[int(instance.is_random_next)] for instance in instances],
                                         np.int32),
    })
    if seed is None:
        seed = int(np.random.randint(2**31 - 1))
    dataset = dataset.shard(num_pipelines, pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(instances) // num_pipelines, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return mask_batches(dataset, vocab, batch_size, seq_length, max_predictions_per_seq,
                        masked_lm_prob, do_whole_word_mask, seed=seed, pipeline_id=pipeline_id)


def mask_batches(dataset, vocab, batch_size, seq_length, max_predictions_per_seq,
                 masked_lm_prob=0.15, do_whole_word_mask=False, *, seed, pipeline_id=0):
    """Batches a dataset of unmasked examples and masks each batch: batch i of pipeline p
    with the seed (seed, p, i), so `skip(n)` gives the batches after the n-th.

    Args:
        dataset: unbatched dicts of `input_word_ids` and `input_type_ids` [n] (each example
            its own length n, no padding) and `next_sentence_labels` [1].
        other args: as `pretraining_dataset_from_instances`.

    Returns:
        A dataset of padded `FEATURE_NAMES` dicts, the last partial batch dropped.
    """
    dataset = dataset.ragged_batch(batch_size, drop_remainder=True).enumerate()
    pipeline_seed = tf.constant([seed, pipeline_id], tf.int64)

    def mask_and_pad(index, batch):
        word_ids, positions, labels = dynamic_mask(
            batch["input_word_ids"], vocab, max_predictions_per_seq, masked_lm_prob,
            do_whole_word_mask, seed=tf.random.experimental.stateless_fold_in(pipeline_seed, index))
        tokens_shape = [batch_size, seq_length]
        predictions_shape = [batch_size, max_predictions_per_seq]
        return {
            "input_word_ids": word_ids.to_tensor(vocab.pad_id, shape=tokens_shape),
            "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=tokens_shape),
            "input_type_ids": batch["input_type_ids"].to_tensor(0, shape=tokens_shape),
            "masked_lm_positions": tf.cast(positions, tf.int32).to_tensor(
                0, shape=predictions_shape),
            "masked_lm_ids": tf.cast(labels, tf.int32).to_tensor(0, shape=predictions_shape),
            "masked_lm_weights": tf.ones_like(labels, tf.float32).to_tensor(
                0.0, shape=predictions_shape),
            "next_sentence_labels": batch["next_sentence_labels"],
        }

    dataset = dataset.map(mask_and_pad, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def pretraining_dataset_from_static_instances(instances, batch_size, seq_length,
                                              max_predictions_per_seq, shuffle_and_repeat=False,
                                              seed=None, input_context=None, pad_id=0):
    """A `tf.data.Dataset` of batched feature dicts whose masks were drawn once, in Python
    (Google's static masking: `create_training_instances(..., static_masking=True)`).

    Args:
        instances: statically masked `TrainingInstance`s.
        batch_size: examples per batch of this pipeline; the last partial batch is dropped.
        seq_length, max_predictions_per_seq: S and P of the padded features.
        shuffle_and_repeat: shuffle (with `seed`) and repeat forever, for training; off, each
            example once in order, for evaluation.
        seed: the shuffle's seed.
        input_context: an optional `tf.distribute.InputContext`; pipeline p reads every
            `num_input_pipelines`-th example from p.
        pad_id: the `[PAD]` id.

    Returns:
        A dataset of `FEATURE_NAMES` dicts, as `pretraining_dataset_from_instances`.
    """
    check_lengths(seq_length, max_predictions_per_seq, name="seq_length")
    check_int("batch_size", batch_size)
    features = [instance_to_features(instance, seq_length, max_predictions_per_seq, pad_id)
                for instance in instances]
    stacked = {name: np.stack([f[name] for f in features]) for name in FEATURE_NAMES}
    dataset = tf.data.Dataset.from_tensor_slices(stacked)
    dataset = dataset.shard(*input_pipelines(input_context))
    if shuffle_and_repeat:
        dataset = dataset.shuffle(len(features), seed=seed).repeat()
    return dataset.batch(batch_size, drop_remainder=True)
