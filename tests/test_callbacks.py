"""The callbacks of a pretraining run (keras_bert_min.callbacks): the step history and encoder
checkpoints read back by hand, the progress line against a fixed clock. The backup is in
test_backup.py."""

import csv
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_bert_min.callbacks import (EncoderCheckpoint, ProgressLog, StepHistory,
                                      format_duration)
from keras_bert_min.models import BertEncoder
from tests.fixtures import CHECKPOINT_TINY
from tests.reference_checkpoints import google_shapes
from tests.test_backup import new_pretrainer
from tests.test_training import pretraining_batches


def test_progress_log_counts_steps_and_estimates_the_time_left(monkeypatch):
    lines, clock = [], iter([100.0, 110.0, 130.0, 140.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    progress = ProgressLog(total_steps=500, steps_per_epoch=100, print_fn=lines.append)
    logs = {"loss": 6.2149, "mlm_logits_accuracy": 0.1234, "nsp_logits_accuracy": 0.61}
    for epoch in range(3):
        progress.on_epoch_end(epoch, logs)
    assert lines[0] == "step 100/500 (20%) | loss 6.215 | mlm accuracy 12.3% | nsp accuracy 61.0%"
    # Rates come from epochs after the first (which also compiles): 100 steps in 10 s, then
    # 200 in 30 s -> 6.7 steps/s; 200 steps left at that rate.
    assert lines[1].endswith("| 10.0 steps/s, about 30 s left")
    assert lines[2].startswith("step 300/500 (60%)")
    assert lines[2].endswith("| 6.7 steps/s, about 30 s left")
    ProgressLog(10, 5, print_fn=lines.append).on_epoch_end(0, {"loss": 1.0})  # MLM only
    assert lines[-1] == "step 5/10 (50%) | loss 1.000"
    assert [format_duration(s) for s in (41, 442, 3900, -3)] == [
        "41 s", "7 min 22 s", "1 h 05 min", "0 s"]


def test_step_history_and_encoder_checkpoints(tmp_path):
    pretrainer = new_pretrainer()
    history_file = str(tmp_path / "history.csv")
    checkpoints = str(tmp_path / "checkpoints")
    callbacks = [StepHistory(history_file, steps_per_epoch=2),
                 EncoderCheckpoint(checkpoints, every_epochs=2, steps_per_epoch=2)]
    history = pretrainer.fit(pretraining_batches(steps=6), epochs=3, steps_per_epoch=2,
                             verbose=0, callbacks=callbacks).history

    # One row per epoch, keyed by the global step at its end, with Keras' own numbers.
    with open(history_file, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "mlm_logits_loss", "nsp_logits_loss",
                             "mlm_logits_accuracy", "nsp_logits_accuracy"]
    assert [float(row["step"]) for row in rows] == [2.0, 4.0, 6.0]
    for name in rows[0]:
        if name != "step":
            np.testing.assert_allclose([float(row[name]) for row in rows], history[name],
                                       rtol=1e-6, err_msg=name)
    # A resumed run appends to the same file.
    StepHistory(history_file, steps_per_epoch=2).on_epoch_end(3, {"loss": 1.5})
    with open(history_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # Logs of one loss are an MLM-only run's: that loss is the MLM loss; NSP columns stay nan.
    assert len(lines) == 1 + 4 and lines[-1] == "8.0,1.5,1.5,nan,nan,nan"
    # A run resuming from the backup of step 4 drops the rows of the steps it will redo, so
    # each step is in the file once; the rows it keeps are unchanged, byte for byte.
    StepHistory(history_file, steps_per_epoch=2, resume_step=4)
    with open(history_file, encoding="utf-8") as f:
        assert f.read().splitlines() == lines[:3]
    StepHistory(history_file, steps_per_epoch=2, resume_step=0)  # restarted before any backup
    with open(history_file, encoding="utf-8") as f:
        assert f.read().splitlines() == lines[:1]

    # Every second epoch (step 4 of 6): the encoder as .keras, the pretrainer as Google's TF1
    # checkpoint with its bert_config.json; nothing half written left.
    assert sorted(os.listdir(checkpoints)) == ["step-4"]
    step = os.path.join(checkpoints, "step-4")
    assert sorted(os.listdir(step)) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                                        "bert_model.ckpt.index", "encoder.keras"]
    assert {name: tuple(shape) for name, shape in
            tf.train.list_variables(os.path.join(step, "bert_model.ckpt"))} == \
        google_shapes(CHECKPOINT_TINY)
    encoder = keras.saving.load_model(os.path.join(step, "encoder.keras"))
    assert isinstance(encoder, BertEncoder) and encoder.bert_config == CHECKPOINT_TINY
