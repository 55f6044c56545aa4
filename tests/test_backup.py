"""The backup of a run (keras_bert_min.backup): a resumed run against an uninterrupted one, the
files of a backup checked with hashlib, and every way a write can fail: a damaged newest backup,
a write that fails half way, a full disk, a NaN epoch. Real runs killed with SIGKILL inside each
window are in tests/recipes/test_pretrain.py."""

import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest

from keras_bert_min import backup
from keras_bert_min.backup import BackupAndRestore, completed_epochs
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.training import compile_pretrainer
from tests.fixtures import CHECKPOINT_TINY
from tests.helpers import file_size_limit
from tests.test_training import pretraining_batches


def new_pretrainer(initial=None):
    # CHECKPOINT_TINY has dropout 0.1, so the dropout generators' state matters on resuming.
    keras.utils.set_random_seed(3)
    pretrainer = BertPretrainer(BertEncoder(CHECKPOINT_TINY))
    if initial is not None:
        for variable, value in zip(pretrainer.weights, initial):
            variable.assign(value)
    # Eager: short runs are faster without tracing, and the arithmetic is the same.
    return compile_pretrainer(pretrainer, keras.optimizers.Adam(1e-3), run_eagerly=True)


class KillAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("killed")


class WeightsAtEpochEnd(keras.callbacks.Callback):
    """The weights after each epoch, to compare a restored backup with."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [np.array(w) for w in self.model.weights]


def weights_of(model):
    return [np.array(w) for w in model.weights]


def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(tmp_path):
    """Two epochs of two steps: run A straight through; run B killed before its second epoch,
    then restarted from its backup with the batches it had not seen."""
    data = pretraining_batches(steps=4)
    uninterrupted = new_pretrainer()
    initial = weights_of(uninterrupted)
    uninterrupted.fit(data, epochs=2, steps_per_epoch=2, verbose=0)

    directory = str(tmp_path / "backup")
    assert completed_epochs(directory) == 0  # no backup yet
    killed = new_pretrainer(initial)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(data, epochs=2, steps_per_epoch=2, verbose=0,
                   callbacks=[BackupAndRestore(directory), KillAtEpoch(1)])
    assert completed_epochs(directory) == 1

    # A new process: fresh model and generators; the backup restores the weights, the
    # optimizer and the dropout generators; the input skips the epoch already trained on.
    resumed = new_pretrainer(initial)
    resumed.fit(data.skip(completed_epochs(directory) * 2), epochs=2, steps_per_epoch=2,
                verbose=0, callbacks=[BackupAndRestore(directory)])
    for a, b in zip(resumed.weights, uninterrupted.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # Kept when fit returns (the run's outputs are still to be written), the last two only.
    assert sorted(os.listdir(directory)) == ["epoch-1", "epoch-2"]
    backup.remove_backups(str(tmp_path))
    assert not os.path.exists(directory)


def test_a_backup_is_one_directory_whose_index_checks_every_file(tmp_path):
    directory = str(tmp_path / "backup")
    model = new_pretrainer()
    model.fit(pretraining_batches(steps=6), epochs=3, steps_per_epoch=2, verbose=0,
              callbacks=[BackupAndRestore(directory)])
    assert sorted(os.listdir(directory)) == ["epoch-2", "epoch-3"]  # epoch-1 removed after 3
    newest = os.path.join(directory, "epoch-3")
    assert sorted(os.listdir(newest)) == ["backup.json", "state.npz"]
    with open(os.path.join(newest, "backup.json"), encoding="utf-8") as f:
        index = json.load(f)
    assert index["epoch"] == 3
    data = open(os.path.join(newest, "state.npz"), "rb").read()
    assert index["files"] == {"state.npz": {"bytes": len(data),
                                            "sha256": hashlib.sha256(data).hexdigest()}}
    # Every variable of the model (dropout generators included) and of the optimizer (its step
    # counter among them), each with its value after epoch 3.
    with np.load(os.path.join(newest, "state.npz")) as arrays:
        for group, variables in (("model", model.variables),
                                 ("optimizer", model.optimizer.variables)):
            assert index["variables"][group] == [[v.path, list(v.shape)] for v in variables]
            for i, variable in enumerate(variables):
                np.testing.assert_array_equal(arrays[f"{group}/{i}"], np.asarray(variable))
    assert any(path.endswith("seed_generator_state") for path, _ in index["variables"]["model"])
    assert int(model.optimizer.iterations) == 6

    # A model of another shape does not load it, and says why.
    other = BertPretrainer(BertEncoder(CHECKPOINT_TINY.replace(intermediate_size=64)))
    h, i = CHECKPOINT_TINY.hidden_size, CHECKPOINT_TINY.intermediate_size
    compile_pretrainer(other, keras.optimizers.Adam(1e-3), run_eagerly=True)
    with pytest.raises(ValueError, match=r"epoch-3 is of another model or optimizer \(model "
                                         r"variable \d+: this run has \S+/intermediate/kernel "
                                         rf"\[{h}, 64\], the backup \S+ \[{h}, {i}\]\)"):
        callback = BackupAndRestore(directory)
        callback.set_model(other)
        callback.on_train_begin()
    assert not [name for name in os.listdir(directory) if name.endswith(".partial")]


def test_a_damaged_newest_backup_is_passed_over_for_the_one_before(tmp_path):
    directory = str(tmp_path / "backup")
    trained, snapshots = new_pretrainer(), WeightsAtEpochEnd()
    initial = weights_of(trained)
    trained.fit(pretraining_batches(steps=6), epochs=3, steps_per_epoch=2, verbose=0,
                callbacks=[BackupAndRestore(directory), snapshots])
    state = os.path.join(directory, "epoch-3", "state.npz")
    with open(state, "r+b") as f:  # a torn write: the file cut short
        f.truncate(os.path.getsize(state) // 2)
    with pytest.warns(UserWarning, match=r"epoch-3 is damaged \(state.npz does not match"):
        assert completed_epochs(directory) == 2
    restored = new_pretrainer(initial)
    with pytest.warns(UserWarning, match="resuming from the one before it, epoch 2"):
        restored.fit(pretraining_batches(steps=6), epochs=2, steps_per_epoch=2, verbose=0,
                     callbacks=[BackupAndRestore(directory)])  # nothing left to train
    for a, b in zip(weights_of(restored), snapshots.weights[2]):
        np.testing.assert_array_equal(a, b)

    # With every backup damaged the run refuses to silently start again from step 0.
    os.remove(os.path.join(directory, "epoch-2", "state.npz"))
    with pytest.raises(ValueError, match="No usable backup .*state.npz is missing.*"
                                         "Delete .* to start the run afresh"):
        completed_epochs(directory)


def test_a_failed_write_leaves_the_previous_backup_whole(tmp_path, monkeypatch):
    """A real write failure (the file-size limit fails a write as a full disk does; h5py
    crashed the process on one): an error that names the usable backup, no partial directory
    left, and the previous backup loads."""
    directory = str(tmp_path / "backup")
    model, snapshots = new_pretrainer(), WeightsAtEpochEnd()
    initial = weights_of(model)
    callback = BackupAndRestore(directory)
    model.fit(pretraining_batches(steps=2), epochs=1, steps_per_epoch=2, verbose=0,
              callbacks=[callback, snapshots])
    model.fit(pretraining_batches(steps=2), epochs=1, steps_per_epoch=2, verbose=0)  # epoch 2
    with file_size_limit(50_000):
        with pytest.raises(OSError, match=r"Writing the backup of epoch 2 in .* failed .*The "
                                          r"backup of epoch 1 is still complete\. Free disk"):
            callback.save(2)
    assert sorted(os.listdir(directory)) == ["epoch-1"]
    restored = new_pretrainer(initial)
    restored.fit(pretraining_batches(steps=2), epochs=1, steps_per_epoch=2, verbose=0,
                 callbacks=[BackupAndRestore(directory)])
    for a, b in zip(weights_of(restored), snapshots.weights[1]):
        np.testing.assert_array_equal(a, b)

    # Too little free space is found before anything is written.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(
        10 << 20, 10 << 20, 1 << 20))
    with pytest.raises(OSError, match=r"Not enough disk space for the backup of epoch 2 .* it "
                                      r"needs about \d+ MiB, 1 MiB are free"):
        callback.save(2)
    assert sorted(os.listdir(directory)) == ["epoch-1"]


def test_an_epoch_that_ends_in_nan_is_not_backed_up(tmp_path):
    directory = str(tmp_path / "backup")
    callback = BackupAndRestore(directory)
    callback.set_model(new_pretrainer())
    callback.on_epoch_end(0, {"loss": 2.0})
    callback.on_epoch_end(1, {"loss": float("nan")})
    assert completed_epochs(directory) == 1
