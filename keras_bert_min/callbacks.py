"""The callbacks of a pretraining run: encoder checkpoints, the step history and progress in
steps; `pretraining_callbacks` puts them, with the run's backup (backup.py), in a run directory.

    EncoderCheckpoint   the encoder every few epochs, in the Keras and Google layouts
    StepHistory         each epoch's training metrics by global step, in a CSV
    ProgressLog         "step 300/3000 (10%) | loss ... | 6.1 steps/s, about 7 min 22 s left"
    EpochScore          a score computed on the model after each epoch, logged for the others
    BestModel           the model of the best epoch so far (fine-tuning), replaced atomically
    drop_rows_after     a resumed run's CSV log without the epochs it will redo

A run's "epoch" is a loop of `--steps_per_loop` optimizer steps, the unit of backups and logs.
"""

import csv
import functools
import json
import os
import time

import keras

from keras_bert_min._checks import atomic_directory, atomic_file, write_json
from keras_bert_min.backup import BackupAndRestore, backup_directory
from keras_bert_min.training import with_mlm_loss
from keras_bert_min.weights import save_google_checkpoint, write_google_config

HISTORY_FILE = "history.csv"  # the StepHistory of `pretraining_callbacks`


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
    """Appends each epoch's training metrics, keyed by global step, to a CSV.

    A resumed run continues the killed run's file: given `resume_step` (where the backup it
    resumes from ends), rows after it, from epochs the killed run finished but did not back
    up, are dropped first, so every step is in the file once. Put it before the backup in the
    callback list, so an epoch that is backed up always has its row.
    """

    COLUMNS = ("step", "loss", "mlm_logits_loss", "nsp_logits_loss", "mlm_logits_accuracy",
               "nsp_logits_accuracy")

    def __init__(self, path, steps_per_epoch, resume_step=None):
        super().__init__()
        self.path, self.steps_per_epoch = path, steps_per_epoch
        if resume_step is not None:
            drop_rows_after(path, "step", resume_step)

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


class EpochScore(keras.callbacks.Callback):
    """Adds `score(model)` to each epoch's logs as `name`, for the callbacks after it (put it
    first: `BestModel` can then keep the epoch of the best dev F1, which no Keras metric of a
    batch computes, e.g. SQuAD's F1 over decoded answers, conlleval's entity F1)."""

    def __init__(self, name, score):
        super().__init__()
        self.name, self.score = name, score

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.name] = float(self.score(self.model))


class BestModel(keras.callbacks.Callback):
    """Saves the model as `directory/model.keras` whenever `monitor` beats the best so far
    (higher is better), with `best.json` ({"epoch", "value"}) beside it, the directory replaced
    atomically: a kill mid-save leaves the previous best whole (Keras' `ModelCheckpoint` writes
    its file in place). A run resumed from a backup continues from the `best.json` there."""

    INDEX = "best.json"

    def __init__(self, directory, monitor="val_accuracy"):
        super().__init__()
        self.directory, self.monitor = directory, monitor
        self.best = self.saved()["value"]

    def saved(self):
        """{"epoch": 1-based epoch, "value": ...} of the saved model, or epoch 0 and -inf."""
        path = os.path.join(self.directory, self.INDEX)
        if not os.path.exists(path):
            return {"epoch": 0, "value": float("-inf")}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not float(value) > self.best:
            return
        self.best = float(value)
        with atomic_directory(self.directory, overwrite=True) as staging:
            self.model.save(os.path.join(staging, "model.keras"))
            write_json(os.path.join(staging, self.INDEX), {"epoch": epoch + 1, "value": self.best})


def drop_rows_after(path, column, last):
    """Keeps the header and the rows of the CSV `path` whose `column` is at most `last`."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    at = rows[0].index(column)
    kept = [row for row in rows[1:] if row and float(row[at]) <= last]
    with atomic_file(path, newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows[:1] + kept)


def format_duration(seconds):
    """`'7 min 22 s'`, `'41 s'` or `'1 h 05 min'`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def pretraining_callbacks(directory, steps_per_epoch, checkpoint_every=1, worker=0, chief=True,
                          total_steps=None, resumed_epochs=0):
    """The callbacks of a pretraining run in `directory`, resumable epoch by epoch.

    Every worker stops on a NaN loss and backs up its state in `backup_directory(directory,
    worker)` (`backup.BackupAndRestore`; `resumed_epochs` is where its newest backup ends); the
    chief also writes TensorBoard logs in `logs/`, the step history in `history.csv`
    (`StepHistory`) and, every `checkpoint_every` epochs, the encoder in `checkpoints/step-<N>/`
    (`EncoderCheckpoint`), and given `total_steps`, prints its progress (`ProgressLog`; pass
    `fit(verbose=0)`). `steps_per_epoch` counts optimizer steps (with gradient accumulation, an
    epoch of `fit` has that many times the accumulation batches). The backup comes after the
    rest at each epoch's end, so what it marks as done is on disk.

    Example:
    >>> pretrainer.fit(dataset, epochs=15, steps_per_epoch=100,
    ...                callbacks=pretraining_callbacks("runs/pretrain", 100, checkpoint_every=5))
    """
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [keras.callbacks.TensorBoard(os.path.join(directory, "logs")),
                      StepHistory(os.path.join(directory, HISTORY_FILE), steps_per_epoch,
                                  resume_step=resumed_epochs * steps_per_epoch),
                      EncoderCheckpoint(os.path.join(directory, "checkpoints"), checkpoint_every,
                                        steps_per_epoch)]
        if total_steps is not None:
            callbacks.append(ProgressLog(total_steps, steps_per_epoch))
    return callbacks + [BackupAndRestore(backup_directory(directory, worker))]
