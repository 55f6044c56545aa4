"""Pretraining: losses and metrics, the split of feature dicts into what `model.fit` takes,
the input of a run (`pretraining_input_fn`), plus the start from an earlier run's weights. The
optimizer is in `keras_bert_min.optimization`, a run's callbacks in `keras_bert_min.callbacks`.

The MLM loss is exactly Google's (`get_masked_lm_output` of run_pretraining.py): cross-entropy
at the masked positions, weighted by `masked_lm_weights` and divided by the sum of the weights
plus 1e-5 (so padding predictions neither count nor dilute, and a batch whose weights are all
zero gives 0, not NaN), per replica as Google's TPU code computes it.
"""

import collections
import dataclasses
import itertools
import os

import keras
import tensorflow as tf
from keras.src.losses.loss import scale_loss_for_distribution, squeeze_or_expand_to_same_rank

from keras_bert_min.config import PRESETS, PRETRAINING_INPUTS, PRETRAINING_LABELS, BertConfig
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min._checks import check_positive
from keras_bert_min.text import corpus, shards, vocab
from keras_bert_min.text.preprocessor import BertPreprocessor
from keras_bert_min.text.masking import (pretraining_dataset_from_instances,
                                         pretraining_dataset_from_static_instances)
from keras_bert_min.text.pretraining import (SpecialTokenIds, create_training_instances,
                                             input_pipelines, tokenize_documents)
from keras_bert_min.text.tfrecords import pretraining_dataset_from_tfrecords
from keras_bert_min.weights import copy_weights, load_google_checkpoint


@keras.saving.register_keras_serializable(package="keras_bert_min")
class MaskedLMLoss(keras.losses.Loss):
    """Google's masked-LM loss: `sum(weights * cross_entropy) / (sum(weights) + 1e-5)`.

    Example:
    >>> loss = MaskedLMLoss()
    >>> round(float(loss([[1, 0]], [[[0.0, 9.0], [9.0, 0.0]]], sample_weight=[[1.0, 0.0]])), 4)
    0.0001
    """

    EPSILON = 1e-5  # run_pretraining.py's, in the denominator

    def __init__(self, name="mlm_loss", dtype="float32"):
        super().__init__(name=name, reduction="sum", dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The weights divide here, so Keras' own weighting and reduction are not applied.
        y_pred = keras.ops.cast(y_pred, self.dtype)
        per_prediction = keras.losses.sparse_categorical_crossentropy(y_true, y_pred,
                                                                      from_logits=True)
        weights = (keras.ops.ones_like(per_prediction) if sample_weight is None
                   else keras.ops.cast(sample_weight, self.dtype))
        # [B, P] and [B, P, 1] weights alike, as Keras' own losses align them.
        per_prediction, weights = squeeze_or_expand_to_same_rank(per_prediction, weights)
        loss = keras.ops.sum(per_prediction * weights) / (keras.ops.sum(weights) + self.EPSILON)
        # As Keras' mean reductions do: each replica's loss is divided by the replica count, so
        # the gradients summed across replicas are those of the mean of the replicas' losses.
        return scale_loss_for_distribution(loss)

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def pretraining_losses(next_sentence=True):
    """Losses for `BertPretrainer.compile`, keyed by output name, computed in float32; without
    `next_sentence`, the masked-LM loss alone (NSP's is None: that head gets no gradient)."""
    nsp = keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="nsp_loss",
                                                     dtype="float32")
    return {"mlm_logits": MaskedLMLoss(), "nsp_logits": nsp if next_sentence else None}


def pretraining_metrics(next_sentence=True):
    """Metrics for `compile(weighted_metrics=...)`: MLM accuracy weighted by `masked_lm_weights`
    (padding predictions excluded), NSP accuracy (its sample weights are all ones) if trained."""
    def accuracy():
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")]
    return {"mlm_logits": accuracy(), "nsp_logits": accuracy() if next_sentence else []}


def compile_pretrainer(pretrainer, optimizer="adam", next_sentence=True, **compile_kwargs):
    """`pretrainer.compile` with the pretraining losses and metrics; MLM only without
    `next_sentence` (the batches keep their NSP labels, which Keras wants for every output, but
    nothing reads them)."""
    pretrainer.compile(optimizer=optimizer, loss=pretraining_losses(next_sentence),
                       weighted_metrics=pretraining_metrics(next_sentence), **compile_kwargs)
    return pretrainer


def with_mlm_loss(logs):
    """Keras logs a model's only loss as "loss"; an MLM-only run's logs get it as
    "mlm_logits_loss" too, so its history and reports read as a full run's."""
    logs = dict(logs or {})
    if "loss" in logs and "mlm_logits_loss" not in logs and "nsp_logits_accuracy" not in logs:
        logs["mlm_logits_loss"] = logs["loss"]
    return logs


def heldout_metrics(pretrainer, dataset, step):
    """`{"step": step, **evaluate(dataset)}` with the MLM loss named (`with_mlm_loss`)."""
    return {"step": step, **with_mlm_loss(pretrainer.evaluate(dataset, verbose=0,
                                                              return_dict=True))}


def split_pretraining_features(features):
    """Maps a flat pretraining feature dict (our names, see docs/design.md) to
    `(x, y, sample_weight)`.

    Works on NumPy dicts and inside `tf.data.Dataset.map`. `next_sentence_labels` may be [B] or
    [B, 1]; the NSP sample weight is ones so both outputs have a weight, as Keras requires.
    """
    missing = [k for k in (*PRETRAINING_INPUTS, *PRETRAINING_LABELS) if k not in features]
    if missing:
        raise ValueError(f"Pretraining features lack {missing}; got keys {sorted(features)}.")
    x = {name: features[name] for name in PRETRAINING_INPUTS}
    nsp_labels = features["next_sentence_labels"]
    y = {"mlm_logits": features["masked_lm_ids"], "nsp_logits": nsp_labels}
    nsp_weight = keras.ops.ones_like(keras.ops.cast(nsp_labels, "float32"))
    sample_weight = {"mlm_logits": features["masked_lm_weights"], "nsp_logits": nsp_weight}
    return x, y, sample_weight


def corpus_with_vocab(paths, vocab_file, *, seq_length, heldout_fraction=0.02, seed=12345,
                      vocab_size=8000, lower_case=True, shard_mb=None):
    """A pretraining corpus and its vocab: `(preprocessor, training documents, held-out
    documents, further shards)`.

    The documents of `paths` are streamed (`text.corpus.iter_documents`) in groups of `shard_mb`
    MB of text (`text.shards.group_documents`; None: one group, the whole corpus). The first
    group is split by `split_documents(heldout_fraction, seed)`; a `vocab_file` that does not
    exist yet is learned from its training documents (`text.vocab.learn_vocab`), so a resumed
    run reads the one its first start learned. A corpus that fits in one group is read whole,
    as it always was: "further shards" is then None. Otherwise it is an iterator over the
    remaining groups, read only as it is consumed (`text.shards.write_shards`).
    """
    documents = corpus.iter_documents(paths)
    if shard_mb is None:
        groups = iter([list(documents)])
    else:
        check_positive("shard_mb", shard_mb)
        groups = shards.group_documents(documents, int(shard_mb * 2**20))
    first = next(groups)
    second = next(groups, None)
    documents, heldout = corpus.split_documents(first, heldout_fraction, seed=seed)
    if not os.path.exists(vocab_file):
        sample = "" if second is None else f" (its first {shard_mb:g} MB)"
        print(f"Learning a {vocab_size}-token WordPiece vocab from the corpus{sample}...",
              flush=True)
        sentences = [sentence for document in documents for sentence in document]
        vocab.write_vocab(vocab.learn_vocab(sentences, vocab_size, lower_case), vocab_file)
    rest = None if second is None else itertools.chain([second], groups)
    return BertPreprocessor(vocab_file, seq_length, lower_case), documents, heldout, rest


PretrainingData = collections.namedtuple(
    "PretrainingData", "preprocessor instances shard_files examples heldout_documents")


def pretraining_data(corpus_paths, vocab_file, *, shards_dir, shard_mb, worker=0, num_workers=1,
                     heldout_fraction=0.02, vocab_size=8000, lower_case=True, **pairing):
    """The examples of a pretraining run on raw text, in bounded memory: a `PretrainingData` of
    the preprocessor, either the `instances` (a corpus of at most `shard_mb` MB, paired in
    memory exactly as always) or this worker's `shard_files` (a bigger one, paired shard by
    shard into `shards_dir` by `text.shards.write_shards`), the number of `examples`, and the
    held-out documents (from the first shard). `pairing`: `pretraining_instances`' arguments.
    """
    preprocessor, documents, heldout, more = corpus_with_vocab(
        corpus_paths, vocab_file, seq_length=pairing["seq_length"],
        heldout_fraction=heldout_fraction, seed=pairing.get("seed", 12345),
        vocab_size=vocab_size, lower_case=lower_case, shard_mb=shard_mb)
    if more is None:
        print(f"Pairing sentences of {len(documents)} documents...", flush=True)
        instances = pretraining_instances(documents, preprocessor, **pairing)
        return PretrainingData(preprocessor, instances, None, len(instances), heldout)
    print(f"The corpus is over {shard_mb:g} MB: pairing it in shards of that size...", flush=True)
    written = shards.write_shards(itertools.chain([documents], more), preprocessor, shards_dir,
                                  worker=worker, num_workers=num_workers, **pairing)
    examples = sum(count for _, count in written)
    print(f"{len(written)} shard(s) of {examples} examples in {shards_dir}.", flush=True)
    return PretrainingData(preprocessor, None, [path for path, _ in written], examples, heldout)


def pretraining_instances(documents, preprocessor, seq_length, max_predictions_per_seq,
                          dupe_factor=1, static_masking=False, seed=12345,
                          whole_word_mask=False, next_sentence=True):
    """Documents of sentence strings -> `TrainingInstance`s: tokenized by `preprocessor`, paired
    into sentence pairs with NSP labels (`text.pretraining.create_training_instances`; without
    `next_sentence`, contiguous single segments), masked with `static_masking` (whole words
    together with `whole_word_mask`).

    Example:
    >>> instances = pretraining_instances([["A first.", "A second."], ["B one."]], preprocessor,
    ...                                   seq_length=32, max_predictions_per_seq=5)
    """
    return create_training_instances(
        tokenize_documents(documents, preprocessor),
        SpecialTokenIds.from_preprocessor(preprocessor),
        max_seq_length=seq_length, max_predictions_per_seq=max_predictions_per_seq,
        dupe_factor=dupe_factor, do_whole_word_mask=whole_word_mask,
        static_masking=static_masking, seed=seed, next_sentence=next_sentence)


def heldout_dataset(documents, preprocessor, batch_size, seq_length, max_predictions_per_seq,
                    seed=12345, whole_word_mask=False, next_sentence=True):
    """`(x, y, sample_weight)` batches of held-out documents for `evaluate`, with masks drawn
    once (`seed`), so every evaluation of a run sees the same examples; each example once, in
    order, the last partial batch dropped. A ValueError when there is not one full batch."""
    instances = pretraining_instances(documents, preprocessor, seq_length,
                                      max_predictions_per_seq, static_masking=True, seed=seed,
                                      whole_word_mask=whole_word_mask,
                                      next_sentence=next_sentence)
    if len(instances) < batch_size:
        raise ValueError(f"The held-out documents give {len(instances)} examples, fewer than one "
                         f"batch of {batch_size}; hold out more documents.")
    return pretraining_dataset_from_static_instances(
        instances, batch_size, seq_length, max_predictions_per_seq,
    ).map(split_pretraining_features)


def pretraining_input_fn(batch_size, seq_length, max_predictions_per_seq, *, instances=None,
                         special_ids=None, static_masking=False, tfrecords=None, seed=None,
                         skip_batches=0, whole_word_mask=False, shard_files=None):
    """The training input of a pretraining run, for `strategy.distribute_datasets_from_function`.

    Args:
        batch_size: examples per batch of each input pipeline (the per-replica batch).
        seq_length, max_predictions_per_seq: S and P of the features.
        instances: `TrainingInstance`s (`text.pretraining.create_training_instances`), masked in
            tf.data from (seed, batch index), or already masked with `static_masking`.
        special_ids: the `SpecialTokenIds` of the vocab, for masking in tf.data.
        static_masking: the instances carry masks drawn in Python (Google's static masking).
        tfrecords: instead of `instances`, pretraining TFRecord files (Google's layout).
        shard_files: instead of either, this worker's shards of a corpus too big for memory
            (`text.shards.write_shards`), masked like `instances`.
        seed: the seed of the shuffle (and of the masks drawn in tf.data).
        skip_batches: batches to skip, so that a run resumed at step N sees the batches an
            uninterrupted run would (see `completed_epochs`).
        whole_word_mask: masks drawn in tf.data cover whole words (a word and its `##` pieces).

    Returns:
        A function of a `tf.distribute.InputContext` (or None) giving an endless dataset of
        `(x, y, sample_weight)` batches, as `split_pretraining_features` makes them.
    """
    if sum(source is not None for source in (instances, tfrecords, shard_files)) != 1:
        raise ValueError("Give one of instances, tfrecords and shard_files.")
    if tfrecords is None and not static_masking and special_ids is None:
        raise ValueError("Masking in tf.data needs special_ids (SpecialTokenIds).")

    def dataset_fn(input_context=None):
        if shard_files is not None:  # already this worker's own files
            dataset = shards.shard_dataset(
                shard_files, special_ids, batch_size, seq_length, max_predictions_per_seq,
                static_masking=static_masking, whole_word_mask=whole_word_mask, seed=seed,
                pipeline_id=input_pipelines(input_context)[1])
        elif tfrecords is not None:
            dataset = pretraining_dataset_from_tfrecords(
                tfrecords, batch_size, seq_length, max_predictions_per_seq, seed=seed,
                input_context=input_context)
        elif static_masking:
            dataset = pretraining_dataset_from_static_instances(
                instances, batch_size, seq_length, max_predictions_per_seq,
                shuffle_and_repeat=True, seed=seed, input_context=input_context)
        else:
            dataset = pretraining_dataset_from_instances(
                instances, special_ids, batch_size, seq_length, max_predictions_per_seq,
                do_whole_word_mask=whole_word_mask, seed=seed, input_context=input_context)
        return dataset.skip(skip_batches).map(split_pretraining_features)
    return dataset_fn


# --- the model of a run, and starting from an earlier run's weights ---------------------------

def build_pretrainer(config, optimizer, *, init_checkpoint=None, next_sentence=True,
                     jit_compile=False):
    """`(pretrainer, load report or None)`: a compiled `BertPretrainer` of `config` (build it
    under the run's `strategy.scope()`), its weights from `init_checkpoint` if given
    (`initialize_from_checkpoint`; an error names the checkpoint)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1 and getattr(optimizer, "gradient_accumulation_steps", None):
        # Keras 3.15 accumulates inside a tf.cond whose update branch all-reduces, and
        # tf.distribute cannot merge replicas inside a cond.
        raise ValueError(f"Gradient accumulation does not run on {replicas} replicas (Keras "
                         "3.15's accumulation cannot all-reduce inside its tf.cond); raise the "
                         "batch per replica instead, or train on one device.")
    pretrainer, loaded = BertPretrainer(BertEncoder(config)), None
    if init_checkpoint:
        try:
            loaded = initialize_from_checkpoint(pretrainer, init_checkpoint)
        except ValueError as e:
            raise ValueError(f"The init checkpoint {init_checkpoint}: {e}") from None
    compile_pretrainer(pretrainer, optimizer, next_sentence=next_sentence,
                       jit_compile=jit_compile)
    return pretrainer, loaded


def _architecture(config):
    """A config without its dropout rates: those are a choice of each run, not of the weights."""
    return config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def pretraining_config(config, vocab_size, *, seq_length, dropout=None):
    """The `BertConfig` a run trains: `config` is a preset name or a config JSON file (ours,
    Google's or Hugging Face's; its vocab_size must be `vocab_size`), with `dropout` in place of
    the config's dropout rates if given, checked to have positions for `seq_length` tokens. Runs
    before any data is read, so a wrong config fails in seconds (`vocab_size` None: a vocab
    still to be learned; its size is checked when it is known)."""
    config = os.fspath(config)
    if not os.path.isfile(config) and (os.sep in config or config.endswith(".json")):
        raise FileNotFoundError(f"{config} does not exist; pass an existing config JSON file or "
                                f"a preset ({', '.join(sorted(PRESETS))}).")
    if vocab_size is not None:
        bert_config = BertConfig.for_vocab(config, vocab_size)
    else:  # a vocab still to learn: a file's own size, or any size for a preset
        bert_config = (BertConfig.from_json_file(config) if os.path.isfile(config)
                       else BertConfig.for_vocab(config, 30522))
    if dropout is not None:
        bert_config = bert_config.replace(hidden_dropout_prob=dropout,
                                          attention_probs_dropout_prob=dropout)
    if seq_length > bert_config.max_position_embeddings:
        raise ValueError(f"seq_length {seq_length} is over the config's max_position_embeddings "
                         f"({bert_config.max_position_embeddings}); lower it, or use a config "
                         "with more positions.")
    return bert_config


def check_init_checkpoint(config, path):
    """Loads the init checkpoint `path` into a throwaway model of `config`, so that a wrong
    checkpoint (names, shapes, another config) fails before a run reads its data."""
    try:
        initialize_from_checkpoint(BertPretrainer(BertEncoder(config)), path)
    except (ValueError, OSError) as e:
        raise ValueError(f"The init checkpoint {path}: {e}") from None


def init_checkpoint_path(path):
    """An init checkpoint as a file: a run directory stands for its `model.keras`; anything
    else is a `.keras` file or a Google TF1 checkpoint prefix."""
    return os.path.join(path, "model.keras") if os.path.isdir(path) else path


def initialize_from_checkpoint(model, path):
    """Loads the weights of an earlier run into `model` (a BertEncoder or BertPretrainer), as
    phase 2 of Google's pretraining starts from phase 1: every variable by name, each name and
    shape checked before anything is assigned (`weights.copy_weights`,
    `weights.load_google_checkpoint`).

    Args:
        model: the model to initialise, built from the same config as the checkpoint.
        path: a run directory (its `model.keras`), a `.keras` file or a TF1 checkpoint prefix.

    Returns:
        A `LoadReport`.
    """
    path = init_checkpoint_path(os.fspath(path))
    if not path.endswith(".keras"):
        return load_google_checkpoint(model, path)
    source = keras.saving.load_model(path)
    if not isinstance(source, (BertEncoder, BertPretrainer)):
        source = getattr(source, "encoder", source)
    if not isinstance(source, (BertEncoder, BertPretrainer)):
        raise ValueError(f"{path} holds a {type(source).__name__}, not a BERT model.")
    if _architecture(source.bert_config) != _architecture(model.bert_config):
        raise ValueError(f"{path} was trained with config {source.bert_config}, not "
                         f"{model.bert_config}; pass the same config and vocab.")
    return dataclasses.replace(copy_weights(source, model), source=path)
