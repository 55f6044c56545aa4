"""Argument checks and atomic writes, shared by every module (a leaf: imports nothing of ours).

    check_int, check_fraction,  one wording for every "must be an integer / a fraction /
    check_positive              a number above 0" error
    atomic_file                 write a file under a temporary name, rename it into place
    atomic_directory            build a directory under a temporary name, rename it into place
    write_json                  a JSON file, atomically
    directory_lock              one run at a time in a directory (released when a run dies)
    stop_point                  a named point where a test kills the process, as a crash would
    file_sha256                 the SHA-256 of a file, read in blocks

Every writer of the package goes through `atomic_file` or `atomic_directory`, so a killed write
never leaves output that looks complete, and its leftovers have one recognisable name: the
target's name plus `PARTIAL_SUFFIX`, in the target's own directory (so the rename never
crosses file systems). A re-run removes what a killed run left under that name before it
starts.
"""

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import socket

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded against each other
    fcntl = None

PARTIAL_SUFFIX = ".partial"
STOP_AT_ENV = "KERAS_BERT_MIN_STOP_AT"  # "name" or "name@N": SIGKILL at the Nth stop_point(name)
_stop_counts = {}


def check_int(name, value, minimum=1, maximum=None, hint=""):
    """`value` if it is an int (not a bool) in [minimum, maximum], else a ValueError naming it.

    Example:
    >>> check_int("batch_size", 32)
    32
    """
    in_range = (not isinstance(value, bool) and isinstance(value, int) and value >= minimum
                and (maximum is None or value <= maximum))
    if not in_range:
        wanted = (f"an integer of at least {minimum}" if maximum is None
                  else f"an integer in [{minimum}, {maximum}]")
        raise ValueError(f"{name} must be {wanted}{hint}, got {value!r}.")
    return value


def check_positive(name, value):
    """`value` if it is a finite number above 0 (not a bool), else a ValueError naming it.

    Example:
    >>> check_positive("learning_rate", 1e-4)
    0.0001
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a number above 0, got {value!r}.")
    return value


def check_fraction(name, value, low_open=False, high_open=False):
    """`value` if it is a number in [0, 1] (`low_open`: > 0; `high_open`: < 1), else a
    ValueError naming the interval.

    Example:
    >>> check_fraction("masked_lm_prob", 0.15, low_open=True)
    0.15
    """
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not (value > 0.0 if low_open else value >= 0.0) \
            or not (value < 1.0 if high_open else value <= 1.0):
        interval = ("(0" if low_open else "[0") + (", 1)" if high_open else ", 1]")
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return value


def partial_path(path):
    """Where `atomic_file` / `atomic_directory` build `path` before renaming it."""
    return os.fspath(path).rstrip(os.sep) + PARTIAL_SUFFIX


def remove_partial(path):
    """Removes what a killed write of `path` left behind; True if there was something."""
    partial = partial_path(path)
    if os.path.isdir(partial) and not os.path.islink(partial):
        shutil.rmtree(partial)
        return True
    if os.path.lexists(partial):
        os.remove(partial)
        return True
    return False


@contextlib.contextmanager
def atomic_file(path, mode="w", encoding="utf-8", newline=None):
    """Opens `path + PARTIAL_SUFFIX` for writing and renames it to `path` when the block ends
    without an error; on an error the partial file is removed and `path` is left as it was.

    Example:
    >>> with atomic_file("/tmp/notes.txt") as f:
    ...     _ = f.write("done\\n")
    """
    path = os.fspath(path)
    partial = partial_path(path)
    binary = "b" in mode
    remove_partial(path)
    try:
        with open(partial, mode, encoding=None if binary else encoding,
                  newline=None if binary else newline) as f:
            yield f
        os.replace(partial, path)
    except BaseException as error:
        if os.path.lexists(partial):
            os.remove(partial)
        _raise_write_error(error, path)
        raise


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yields an empty directory `path + PARTIAL_SUFFIX` to fill; when the block ends without
    an error it becomes `path`. A partial directory left by a killed run is removed first; on
    an error the partial directory is removed and `path` is left as it was.

    Args:
        path: the directory to create.
        overwrite: replace an existing `path` (after the new one is complete); otherwise an
            existing non-empty `path` is refused before anything is written, and an empty one
            is replaced.

    Example:
    >>> with atomic_directory("/tmp/run", overwrite=True) as staging:
    ...     _ = open(os.path.join(staging, "weights.bin"), "wb").write(b"")
    """
    path = os.fspath(path).rstrip(os.sep)
    old = path + ".old" + PARTIAL_SUFFIX
    if os.path.isdir(old):  # a run killed while replacing `path`: bring the old one back
        if os.path.lexists(path):
            shutil.rmtree(old)
        else:
            os.rename(old, path)
    refuse_non_empty(path, overwrite)
    partial = partial_path(path)
    remove_partial(path)
    os.makedirs(partial)
    try:
        yield partial
        if overwrite and os.path.isdir(path):
            # Move the old directory aside first: a directory cannot be renamed onto a
            # non-empty one, and the old one stays whole until the new one is in place (a kill
            # between the renames leaves it as `old`, restored above on the next call).
            os.rename(path, old)
            stop_point("atomic_directory:old_moved_aside")
            os.rename(partial, path)
            shutil.rmtree(old)
        else:
            # Replaces an empty directory; refuses one that another process filled meanwhile.
            os.rename(partial, path)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        _raise_write_error(error, path)
        raise


_DISK_FULL = ("No space left on device", "Disk quota exceeded", "File too large")


def _raise_write_error(error, path):
    """An OSError that says what was being written, where, and that nothing was left behind,
    for a failed write: an OSError, or a TF / h5py error whose message is a full disk's (TF
    names only its temporary file, `...variables_temp/part-00000-of-00001...`)."""
    full = any(text in str(error) for text in _DISK_FULL)
    if not isinstance(error, OSError) and not full:
        return
    if isinstance(error, FileNotFoundError) and not full:
        return  # a missing input, not a failed write: its own message says which
    if isinstance(error, OSError) and getattr(error, "_kbm_write_error", False):
        return  # already says it (an inner atomic write)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    wrapped = OSError(28 if full else getattr(error, "errno", None) or 5,
                      f"Writing {path} failed ({reason.splitlines()[0][:300]}); nothing was left "
                      "half-written (what was there before is unchanged). "
                      + ("Free disk space and try again." if full else "Fix the cause and try "
                                                                     "again."))
    wrapped._kbm_write_error = True
    raise wrapped from error


def refuse_non_empty(path, overwrite=False):
    """A ValueError if `path` is a file, or a non-empty directory and not `overwrite`."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} is a file, not a directory; pass a directory path.")
    if not overwrite and os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"{path!r} exists and is not empty; pass overwrite=True to replace "
                         "it, or a new directory.")


def file_sha256(path):
    """The hex SHA-256 of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, value, **dump_kwargs):
    """Writes `value` as indented UTF-8 JSON, atomically, with a final newline."""
    dump_kwargs.setdefault("indent", 2)
    dump_kwargs.setdefault("ensure_ascii", False)
    with atomic_file(path) as f:
        json.dump(value, f, **dump_kwargs)
        f.write("\n")


@contextlib.contextmanager
def directory_lock(directory, name=".lock", flag="--output_dir"):
    """Holds an exclusive lock on `directory` (created if missing) for the block; a second
    process asking for it gets a ValueError at once, naming the holder.

    The lock is the kernel's `flock` on `directory/name`, so a run that is killed releases it
    with its last file descriptor: the file it leaves behind blocks nobody. (On Windows, which
    lacks `flock`, runs are not guarded.)
    """
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "a+", encoding="utf-8") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise ValueError(f"{directory} is in use by another run ({holder}); wait for it "
                                 f"to finish, or pass another {flag}.") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def stop_point(name):
    """Kills this process with SIGKILL, as a crash or an OOM kill would, when the environment
    variable `KERAS_BERT_MIN_STOP_AT` is `name` (the first time it is reached) or `name@N` (the
    Nth time); does nothing otherwise. The tests use it to kill real runs inside the windows
    where a write is half done."""
    spec = os.environ.get(STOP_AT_ENV)
    if not spec or spec.split("@")[0] != name:
        return
    _stop_counts[name] = _stop_counts.get(name, 0) + 1
    nth = int(spec.split("@")[1]) if "@" in spec else 1
    if _stop_counts[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
