"""Argument checks and atomic writes, shared by every module (a leaf: imports nothing of ours).

    check_int, check_fraction   one wording for every "must be an integer / a fraction" error
    atomic_file                 write a file under a temporary name, rename it into place
    atomic_directory            build a directory under a temporary name, rename it into place
    write_json                  a JSON file, atomically

Every writer of the package goes through `atomic_file` or `atomic_directory`, so a killed write
never leaves output that looks complete, and its leftovers have one recognisable name: the
target's name plus `PARTIAL_SUFFIX`, in the target's own directory (so the rename never
crosses file systems). A re-run removes what a killed run left under that name before it
starts.
"""

import contextlib
import json
import os
import shutil

PARTIAL_SUFFIX = ".partial"


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
    except BaseException:
        if os.path.lexists(partial):
            os.remove(partial)
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
    refuse_non_empty(path, overwrite)
    partial = partial_path(path)
    remove_partial(path)
    os.makedirs(partial)
    try:
        yield partial
        if overwrite and os.path.isdir(path):
            # Move the old directory aside first: a directory cannot be renamed onto a
            # non-empty one, and the old one stays whole until the new one is in place.
            old = path + ".old" + PARTIAL_SUFFIX
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
            os.rename(partial, path)
            shutil.rmtree(old)
        else:
            # Replaces an empty directory; refuses one that another process filled meanwhile.
            os.rename(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def refuse_non_empty(path, overwrite=False):
    """A ValueError if `path` is a file, or a non-empty directory and not `overwrite`."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} is a file, not a directory; pass a directory path.")
    if not overwrite and os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"{path!r} exists and is not empty; pass overwrite=True to replace "
                         "it, or a new directory.")


def write_json(path, value, **dump_kwargs):
    """Writes `value` as indented UTF-8 JSON, atomically, with a final newline."""
    dump_kwargs.setdefault("indent", 2)
    dump_kwargs.setdefault("ensure_ascii", False)
    with atomic_file(path) as f:
        json.dump(value, f, **dump_kwargs)
        f.write("\n")
