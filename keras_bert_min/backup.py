"""A training run's backup: its whole state, written as one unit at each epoch's end, so a killed
run resumes exactly where its last complete backup left it.

    BackupAndRestore    the `fit` callback: weights, optimizer state (step, moments,
                        accumulators), the dropout generators' state and the epoch, together
    completed_epochs    the epoch of the newest complete backup in a directory (0: none)
    backup_directory    where a run directory keeps worker N's backups
    remove_backups      once a run's last output is written, its backups are not needed

Each backup is a directory `<backup_dir>/epoch-<E>/` of two files: `state.npz`, every variable of
the model (the dropout generators' states among them) and of its optimizer, in order, and
`backup.json`, written last: the epoch, the variables' paths and shapes, the file's size and
SHA-256. The arrays are written by NumPy, so a full disk is an OSError (h5py, which Keras'
`save_weights` uses, can crash the process on one). It is built as `epoch-<E>.partial` and renamed
when complete (`_checks.atomic_directory`), so a kill anywhere in the write leaves the previous
backup as it was; the previous one is removed only after the new one is in place, and the last
two are kept. Loading checks every file against `backup.json`: a backup damaged afterwards (a
torn file on a filesystem that lost a write) is skipped for the one before it, with a warning.

Keras' own `keras.callbacks.BackupAndRestore` writes the weights file in place and its metadata
as a second file, deletes the backup when `fit` returns, and lacks the generators' state: a kill
during or between its writes, or after the last epoch, loses the run or resumes it wrongly.
"""

import json
import os
import re
import shutil
import warnings

import keras
import numpy as np

from keras_bert_min._checks import atomic_directory, atomic_file, file_sha256, stop_point

STATE_FILE = "state.npz"  # the model's variables ("model/<i>"), the optimizer's ("optimizer/<i>")
INDEX_FILE = "backup.json"  # written last: epoch, variables, the state file's size and SHA-256
KEEP = 2  # complete backups kept: the newest and the one before, in case the newest is damaged
_NAME = re.compile(r"^epoch-(\d+)$")


def backup_directory(directory, worker=0):
    """Where a run in `directory` backs up worker `worker`'s training state."""
    return os.path.join(directory, "backup", f"worker-{worker}")


def remove_backups(directory):
    """Removes the backups of the run in `directory` (call once its last output is written)."""
    shutil.rmtree(os.path.join(directory, "backup"), ignore_errors=True)


def _backups(backup_dir):
    """[(epoch, path)] of the backup directories in `backup_dir`, newest first."""
    if not os.path.isdir(backup_dir):
        return []
    found = [(int(m.group(1)), os.path.join(backup_dir, name))
             for name in os.listdir(backup_dir) for m in [_NAME.match(name)] if m]
    return sorted(found, reverse=True)


def _damage(path, epoch):
    """Why the backup at `path` cannot be used (None when every file checks out)."""
    try:
        with open(os.path.join(path, INDEX_FILE), encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        return f"its {INDEX_FILE} cannot be read ({e})"
    if index.get("epoch") != epoch:
        return f"its {INDEX_FILE} names epoch {index.get('epoch')}"
    for name, expected in index.get("files", {}).items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            return f"{name} is missing"
        if (os.path.getsize(file) != expected["bytes"]
                or file_sha256(file) != expected["sha256"]):
            return f"{name} does not match its size and SHA-256 in {INDEX_FILE} (a torn write?)"
    if set(index.get("files", {})) != {STATE_FILE}:
        return f"its {INDEX_FILE} lists {sorted(index.get('files', {}))}"
    return None


def newest_backup(backup_dir):
    """`(epoch, path)` of the newest complete backup in `backup_dir`, or `(0, None)`.

    A damaged backup is passed over for an older one, with a warning; if every backup there is
    damaged, a ValueError says so (starting afresh would silently drop the run's progress).
    """
    damaged = []
    for epoch, path in _backups(backup_dir):
        problem = _damage(path, epoch)
        if problem is None:
            for name, why in damaged:
                warnings.warn(f"The backup {name} is damaged ({why}); resuming from the one "
                              f"before it, epoch {epoch}.", stacklevel=2)
            return epoch, path
        damaged.append((path, problem))
    if damaged:
        raise ValueError(f"No usable backup in {backup_dir}: " + "; ".join(
            f"{path} is damaged ({why})" for path, why in damaged)
            + f". Delete {backup_dir} to start the run afresh.")
    return 0, None


def completed_epochs(backup_dir):
    """Epochs completed by the newest complete backup in `backup_dir` (0 without a backup).

    Training runs in epochs of `steps_per_epoch` steps and backs up at each epoch's end, so a
    restarted run resumes at step `completed_epochs * steps_per_epoch` exactly; the input
    pipeline skips that many batches so it sees the batches the killed run would have seen.
    """
    return newest_backup(backup_dir)[0]


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up the whole training state at the end of every epoch; `fit` restores the newest
    complete backup when it starts (then runs only the epochs after it).

    The backup holds the weights, the optimizer's variables (so the step and the learning-rate
    schedule resume where they were), the `SeedGenerator` states of the dropout layers (in
    `model.variables`, not `model.weights`; without them a resumed run would redraw its first
    dropout masks) and the epoch. It is kept when `fit` returns: a run that is killed while
    writing its outputs resumes at its end; call `remove_backups` once they are complete.

    Before writing, the free disk space is checked against the size of the state; a write that
    fails anyway (a full disk, a quota) raises an OSError that names the backup still usable.

    Args:
        backup_dir: a directory of this run and worker only.
    """

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)

    def _variables(self):
        """{"model": [...], "optimizer": [...]}: everything a resumed run needs, in order."""
        optimizer = self.model.optimizer
        return {"model": list(self.model.variables),
                "optimizer": list(optimizer.variables) if optimizer is not None else []}

    def on_train_begin(self, logs=None):
        epoch, path = newest_backup(self.backup_dir)
        if path is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables must exist to load
        with open(os.path.join(path, INDEX_FILE), encoding="utf-8") as f:
            saved = json.load(f)["variables"]
        variables = self._variables()
        # Shapes, in order (paths carry per-process counters, as in seed_generator_5).
        here = {group: [list(v.shape) for v in found] for group, found in variables.items()}
        there = {group: [shape for _, shape in found] for group, found in saved.items()}
        if here != there:
            raise ValueError(f"The backup {path} is of another model or optimizer ("
                             f"{_first_difference(variables, saved)}); resume with the arguments "
                             "of the run that wrote it, or pass a new --output_dir.")
        with np.load(os.path.join(path, STATE_FILE)) as arrays:
            for group, found in variables.items():
                for i, variable in enumerate(found):
                    variable.assign(arrays[f"{group}/{i}"])
        self.model._initial_epoch = epoch  # where fit starts (Keras' own callback does this)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            return  # TerminateOnNaN stops the run: a re-run resumes from the last finite state
        self.save(epoch + 1)

    def save(self, epoch):
        """Writes the backup of `epoch` completed epochs, then removes all but the last KEEP."""
        os.makedirs(self.backup_dir, exist_ok=True)
        variables = self._variables()
        self._check_free_space(epoch, variables)
        try:
            with atomic_directory(os.path.join(self.backup_dir, f"epoch-{epoch}"),
                                  overwrite=True) as staging:
                state = os.path.join(staging, STATE_FILE)
                with open(state, "wb") as f:
                    np.savez(f, **{f"{group}/{i}": np.asarray(v)
                                   for group, found in variables.items()
                                   for i, v in enumerate(found)})
                    stop_point("backup:state_written")
                    f.flush()
                    os.fsync(f.fileno())
                index = {"epoch": epoch,
                         "files": {STATE_FILE: {"bytes": os.path.getsize(state),
                                                "sha256": file_sha256(state)}},
                         "variables": {group: [[v.path, list(v.shape)] for v in found]
                                       for group, found in variables.items()}}
                with atomic_file(os.path.join(staging, INDEX_FILE)) as f:
                    json.dump(index, f, indent=1)
                _fsync(os.path.join(staging, INDEX_FILE))
                stop_point("backup:complete_not_renamed")
        except OSError as e:
            cause = e.__cause__ if isinstance(e.__cause__, Exception) else e  # atomic_directory's
            reason = getattr(cause, "strerror", None) or str(cause).splitlines()[0]
            message = (f"Writing the backup of epoch {epoch} in {self.backup_dir} failed "
                       f"({reason}). {self._still_usable()} Free disk space and re-run the "
                       "same command to resume.")
            raise OSError(*((e.errno, message) if e.errno else (message,))) from e
        _fsync(self.backup_dir)
        for _, path in _backups(self.backup_dir)[KEEP:]:
            shutil.rmtree(path, ignore_errors=True)

    def _still_usable(self):
        newest = [epoch for epoch, _ in _backups(self.backup_dir)]
        return (f"The backup of epoch {newest[0]} is still complete." if newest
                else "No earlier backup exists.")

    def _check_free_space(self, epoch, variables):
        needed = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                     for found in variables.values() for v in found)
        needed = int(needed * 1.05) + (1 << 20)  # the npz's headers
        free = shutil.disk_usage(self.backup_dir).free
        if free < needed:
            raise OSError(28, f"Not enough disk space for the backup of epoch {epoch} in "
                          f"{self.backup_dir}: it needs about {needed / 2**20:.0f} MiB, "
                          f"{free / 2**20:.0f} MiB are free. {self._still_usable()} Free disk "
                          "space and re-run the same command to resume.")


def _first_difference(variables, saved):
    for group in ("model", "optimizer"):
        ours, theirs = variables.get(group, []), saved.get(group, [])
        for i in range(max(len(ours), len(theirs))):
            mine = f"{ours[i].path} {list(ours[i].shape)}" if i < len(ours) else "nothing"
            other = f"{theirs[i][0]} {theirs[i][1]}" if i < len(theirs) else "nothing"
            if mine.split(" ", 1)[-1] != other.split(" ", 1)[-1]:
                return f"{group} variable {i}: this run has {mine}, the backup {other}"
    return "the same shapes"


def _fsync(path):
    """Flushes a file, or a directory's entries, to the disk (where the OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not fsync directories
    finally:
        os.close(fd)
