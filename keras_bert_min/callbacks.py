"""The callbacks of a pretraining run: exact resume, encoder checkpoints, the step history and
progress in steps; `pretraining_callbacks` puts them in a run directory.

    BackupAndRestore    Keras' backup of weights and optimizer, plus the dropout generators'
                        state, so a killed run resumes exactly (`completed_epochs` says where)
    EncoderCheckpoint   the encoder every few epochs, in the Keras and Google layouts
    StepHistory         each epoch's training metrics by global step, in a CSV
    ProgressLog         "step 300/3000 (10%) | loss ... | 6.1 steps/s, about 7 min 22 s left"

A run's "epoch" is a loop of `--steps_per_loop` optimizer steps, the unit of backups and logs.
"""

import functools
import json
import os
import time

import keras
import numpy as np

from keras_bert_min._checks import atomic_directory, atomic_file
from keras_bert_min.training import with_mlm_loss
from keras_bert_min.weights import save_google_checkpoint, write_google_config

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
