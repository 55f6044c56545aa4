"""Pretraining: losses and metrics, the split of feature dicts into what `model.fit` takes,
the input of a run (`pretraining_input_fn`), the callbacks of a run (exact resume, encoder
checkpoints, the step history; `pretraining_callbacks` puts them in a run directory), plus the
start from an earlier run's weights. The optimizer is in `keras_bert_min.optimization`.

The MLM loss is exactly Google's (`get_masked_lm_output` of run_pretraining.py): cross-entropy
at the masked positions, weighted by `masked_lm_weights` and divided by the sum of the weights
plus 1e-5 (so padding predictions neither count nor dilute, and a batch whose weights are all
zero gives 0, not NaN), per replica as Google's TPU code computes it.
"""

import dataclasses
import functools
import json
import os
import time

import keras
import numpy as np
from keras.src.losses.loss import scale_loss_for_distribution, squeeze_or_expand_to_same_rank

from keras_bert_min._checks import atomic_directory, atomic_file
from keras_bert_min.config import PRETRAINING_INPUTS, PRETRAINING_LABELS
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.text.masking import (pretraining_dataset_from_instances,
                                         pretraining_dataset_from_static_instances)
from keras_bert_min.text.pretraining import (SpecialTokenIds, create_training_instances,
                                             tokenize_documents)
from keras_bert_min.text.tfrecords import pretraining_dataset_from_tfrecords
from keras_bert_min.weights import (copy_weights, load_google_checkpoint, save_google_checkpoint,
                                    write_google_config)


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
                         skip_batches=0, whole_word_mask=False):
    """The training input of a pretraining run, for `strategy.distribute_datasets_from_function`.

    Args:
        batch_size: examples per batch of each input pipeline (the per-replica batch).
        seq_length, max_predictions_per_seq: S and P of the features.
        instances: `TrainingInstance`s (`text.pretraining.create_training_instances`), masked in
            tf.data from (seed, batch index), or already masked with `static_masking`.
        special_ids: the `SpecialTokenIds` of the vocab, for masking in tf.data.
        static_masking: the instances carry masks drawn in Python (Google's static masking).
        tfrecords: instead of `instances`, pretraining TFRecord files (Google's layout).
        seed: the seed of the shuffle (and of the masks drawn in tf.data).
        skip_batches: batches to skip, so that a run resumed at step N sees the batches an
            uninterrupted run would (see `completed_epochs`).
        whole_word_mask: masks drawn in tf.data cover whole words (a word and its `##` pieces).

    Returns:
        A function of a `tf.distribute.InputContext` (or None) giving an endless dataset of
        `(x, y, sample_weight)` batches, as `split_pretraining_features` makes them.
    """
    if (instances is None) == (tfrecords is None):
        raise ValueError("Give instances or tfrecords, not both or neither.")
    if instances is not None and not static_masking and special_ids is None:
        raise ValueError("Masking in tf.data needs special_ids (SpecialTokenIds).")

    def dataset_fn(input_context=None):
        if tfrecords is not None:
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


# --- callbacks and resuming -------------------------------------------------------------------

BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore
HISTORY_FILE = "history.csv"  # the StepHistory of `pretraining_callbacks`


def completed_epochs(backup_dir):
    """Epochs a `BackupAndRestore` backup in `backup_dir` has completed (0 without a backup).

    Training runs in epochs of `steps_per_epoch` steps and backs up at each epoch end, so a
    restarted run resumes at step `completed_epochs * steps_per_epoch` exactly; the input
    pipeline skips that many batches so it sees the batches the killed run would have seen.
    """
    path = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["epoch"])


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, plus the state of the dropout layers' random generators.

    Keras backs up the weights and the optimizer (so the step and the learning rate resume
    where they were) but not the `SeedGenerator` states of Dropout layers, which are variables
    outside `model.weights`; a resumed run would then redraw the dropout masks of its first
    steps. Backing them up too makes a resumed run train exactly as an uninterrupted one.
    """

    RNG_FILE = "rng_states-{epoch}.npz"

    def _rng_states(self):
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _rng_path(self, epoch):
        return os.path.join(self.backup_dir, self.RNG_FILE.format(epoch=epoch))

    def _save_model(self):
        # The states are written, for this epoch, before Keras writes the metadata that names
        # the epoch, and the older epochs' files are removed only after: a run killed anywhere
        # in between still finds the states of the epoch its metadata names.
        epoch = self._current_epoch
        os.makedirs(self.backup_dir, exist_ok=True)
        with atomic_file(self._rng_path(epoch), "wb") as f:
            np.savez(f, **{str(i): np.asarray(v) for i, v in enumerate(self._rng_states())})
        super()._save_model()
        for name in os.listdir(self.backup_dir):
            if name.startswith("rng_states-") and name != os.path.basename(self._rng_path(epoch)):
                os.remove(os.path.join(self.backup_dir, name))

    def _load_model(self):
        super()._load_model()
        metadata = os.path.join(self.backup_dir, BACKUP_METADATA)
        if not os.path.exists(metadata):
            return
        with open(metadata, encoding="utf-8") as f:
            epoch = json.load(f)["epoch"]
        path = self._rng_path(epoch)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"The backup in {self.backup_dir} has no {os.path.basename(path)} for its last "
                "epoch, so the run cannot resume exactly; delete the backup directory to start "
                "the run afresh.")
        with np.load(path) as saved:
            for i, variable in enumerate(self._rng_states()):
                variable.assign(saved[str(i)])


class EncoderCheckpoint(keras.callbacks.Callback):
    """Every `every_epochs` epochs, saves the pretrainer's encoder twice under
    `directory/step-<N>/`: `encoder.keras` (Keras) and `bert_model.ckpt` (Google's TF1 layout,
    with `bert_config.json`), so other BERT tools can read it. Only the chief should get one."""

    def __init__(self, directory, every_epochs=1, steps_per_epoch=1):
        super().__init__()
        self.directory = directory
        self.every_epochs = every_epochs
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs == 0:
            self.save(int((epoch + 1) * self.steps_per_epoch))

    def save(self, step):
        encoder = getattr(self.model, "encoder", self.model)
        with atomic_directory(os.path.join(self.directory, f"step-{step}"),
                              overwrite=True) as staging:
            encoder.save(os.path.join(staging, "encoder.keras"))
            save_google_checkpoint(self.model, os.path.join(staging, "bert_model.ckpt"))
            write_google_config(encoder.bert_config, staging)


class StepHistory(keras.callbacks.Callback):
    """Appends each epoch's training metrics, keyed by global step, to a CSV. Rows are appended,
    so the file of a resumed run continues the killed run's."""

    COLUMNS = ("step", "loss", "mlm_logits_loss", "nsp_logits_loss", "mlm_logits_accuracy",
               "nsp_logits_accuracy")

    def __init__(self, path, steps_per_epoch):
        super().__init__()
        self.path, self.steps_per_epoch = path, steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(with_mlm_loss(logs), step=(epoch + 1) * self.steps_per_epoch)
        new = not os.path.exists(self.path)
        with open(self.path, "a", encoding="utf-8") as f:
            if new:
                f.write(",".join(self.COLUMNS) + "\n")
            f.write(",".join(str(float(logs.get(k, float("nan")))) for k in self.COLUMNS) + "\n")


class ProgressLog(keras.callbacks.Callback):
    """Prints a line per epoch in optimizer steps, as `step 300/3000 (10%) | loss 6.21 | mlm
    accuracy 12.4% | nsp accuracy 61.0% | 41 s, 6.1 steps/s, about 7 min 22 s left`.

    Keras' own progress bar counts epochs, which a run of `steps_per_loop`-step epochs is not:
    "Epoch 7/15" reads as passes over the data. The rate and time left are measured from this
    run's first finished epoch (the one that also traces and compiles the step), so a resumed
    run's estimate covers only what is left of it.

    Args:
        total_steps: optimizer steps of the whole run.
        steps_per_epoch: optimizer steps per epoch (per Keras epoch of `fit`).
        print_fn: where the lines go (`print` by default, flushed).
    """

    def __init__(self, total_steps, steps_per_epoch, print_fn=None):
        super().__init__()
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.print_fn = print_fn or functools.partial(print, flush=True)
        self._first = None  # (time, step) at the end of the first epoch of this process

    def on_epoch_end(self, epoch, logs=None):
        step, now = (epoch + 1) * self.steps_per_epoch, time.monotonic()
        parts = [f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)"]
        logs = logs or {}
        for key, label in (("loss", "loss"), ("mlm_logits_accuracy", "mlm accuracy"),
                           ("nsp_logits_accuracy", "nsp accuracy")):
            if key in logs:
                value = float(logs[key])
                parts.append(f"{label} {value:.3f}" if key == "loss" else
                             f"{label} {100 * value:.1f}%")
        if self._first is None:
            self._first = (now, step)
        elif step > self._first[1]:
            rate = (step - self._first[1]) / (now - self._first[0])
            left = (self.total_steps - step) / rate
            parts.append(f"{rate:.1f} steps/s, about {format_duration(left)} left")
        self.print_fn(" | ".join(parts))


def format_duration(seconds):
    """`'7 min 22 s'`, `'41 s'` or `'1 h 05 min'`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def backup_directory(directory, worker=0):
    """Where `pretraining_callbacks` backs up worker `worker`'s training state."""
    return os.path.join(directory, "backup", f"worker-{worker}")


def pretraining_callbacks(directory, steps_per_epoch, checkpoint_every=1, worker=0, chief=True,
                          total_steps=None):
    """The callbacks of a pretraining run in `directory`, resumable epoch by epoch.

    Every worker backs up its state in `backup_directory(directory, worker)` (`BackupAndRestore`)
    and stops on a NaN loss; the chief also writes TensorBoard logs in `logs/`, the step history
    in `history.csv` (`StepHistory`) and, every `checkpoint_every` epochs, the encoder in
    `checkpoints/step-<N>/` (`EncoderCheckpoint`), and given `total_steps`, prints its progress
    (`ProgressLog`; pass `fit(verbose=0)`). `steps_per_epoch` counts optimizer steps (with
    gradient accumulation, an epoch of `fit` has that many times the accumulation batches).

    Example:
    >>> pretrainer.fit(dataset, epochs=15, steps_per_epoch=100,
    ...                callbacks=pretraining_callbacks("runs/pretrain", 100, checkpoint_every=5))
    """
    callbacks = [BackupAndRestore(backup_directory(directory, worker), save_freq="epoch"),
                 keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [keras.callbacks.TensorBoard(os.path.join(directory, "logs")),
                      StepHistory(os.path.join(directory, HISTORY_FILE), steps_per_epoch),
                      EncoderCheckpoint(os.path.join(directory, "checkpoints"), checkpoint_every,
                                        steps_per_epoch)]
        if total_steps is not None:
            callbacks.append(ProgressLog(total_steps, steps_per_epoch))
    return callbacks


# --- starting from an earlier run --------------------------------------------------------------

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
    if source.bert_config != model.bert_config:
        raise ValueError(f"{path} was trained with config {source.bert_config}, not "
                         f"{model.bert_config}; pass the same config and vocab.")
    return dataclasses.replace(copy_weights(source, model), source=path)
