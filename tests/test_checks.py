"""keras_bert_min._checks: the one wording of argument errors, and the atomic writers every
output of the package goes through. Expected messages and directory listings are written out
by hand."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from keras_bert_min._checks import (PARTIAL_SUFFIX, STOP_AT_ENV, atomic_directory, atomic_file,
                                    check_fraction, check_int, check_positive, directory_lock,
                                    partial_path, write_json)


class Killed(BaseException):
    """Stands for a KeyboardInterrupt or SystemExit: not an Exception, still cleaned up."""


# --- check_int ----------------------------------------------------------------------------------

def test_check_int_returns_the_value():
    assert check_int("batch_size", 32) == 32
    assert check_int("version", 0, minimum=0) == 0
    assert check_int("seq_length", 512, 3, 512) == 512


@pytest.mark.parametrize("value, shown", [(0, "0"), (-3, "-3"), (2.0, "2.0"), ("2", "'2'"),
                                          (True, "True"), (None, "None")])
def test_check_int_names_the_argument_and_the_value(value, shown):
    # A bool is not an integer here, though Python's bool is an int subclass.
    with pytest.raises(ValueError) as error:
        check_int("batch_size", value)
    assert str(error.value) == f"batch_size must be an integer of at least 1, got {shown}."


def test_check_int_range_and_hint():
    with pytest.raises(ValueError) as error:
        check_int("seq_length", 600, 3, 512, hint=" (the position table's size)")
    assert str(error.value) == \
        "seq_length must be an integer in [3, 512] (the position table's size), got 600."
    with pytest.raises(ValueError, match=r"^seq_length must be an integer in \[3, 512\], got 2\.$"):
        check_int("seq_length", 2, 3, 512)
    with pytest.raises(ValueError, match=r"^version must be an integer of at least 0, got -1\.$"):
        check_int("version", -1, minimum=0)


# --- check_fraction -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kwargs", [
    (0.0, {}), (1.0, {}), (1, {}), (0.15, {"low_open": True}), (1.0, {"low_open": True}),
    (0.0, {"high_open": True}), (0.5, {"low_open": True, "high_open": True})])
def test_check_fraction_returns_the_value(value, kwargs):
    assert check_fraction("masked_lm_prob", value, **kwargs) == value


@pytest.mark.parametrize("value, kwargs, interval", [
    (-0.1, {}, "[0, 1]"), (1.5, {}, "[0, 1]"), (True, {}, "[0, 1]"), ("0.5", {}, "[0, 1]"),
    (0.0, {"low_open": True}, "(0, 1]"), (1.0, {"high_open": True}, "[0, 1)"),
    (0.0, {"low_open": True, "high_open": True}, "(0, 1)"),
    (1.0, {"low_open": True, "high_open": True}, "(0, 1)")])
def test_check_fraction_names_the_interval(value, kwargs, interval):
    with pytest.raises(ValueError) as error:
        check_fraction("masked_lm_prob", value, **kwargs)
    assert str(error.value) == f"masked_lm_prob must be in {interval}, got {value!r}."


# --- atomic_file --------------------------------------------------------------------------------

def test_partial_path_is_next_to_the_target():
    assert PARTIAL_SUFFIX == ".partial"
    assert partial_path("out/model.keras") == "out/model.keras.partial"
    assert partial_path("out/run/") == "out/run.partial"


def test_atomic_file_writes_text_and_bytes(tmp_path):
    with atomic_file(tmp_path / "notes.txt") as f:
        f.write("café\n")
    with atomic_file(tmp_path / "data.bin", "wb") as f:
        f.write(b"\x00\xff")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "café\n"
    assert (tmp_path / "data.bin").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir(tmp_path)) == ["data.bin", "notes.txt"]


def test_atomic_file_shows_nothing_until_the_block_ends(tmp_path):
    target = tmp_path / "notes.txt"
    with atomic_file(target) as f:
        f.write("half")
        f.flush()
        # Meanwhile the content sits under the partial name, and the target does not exist.
        assert sorted(os.listdir(tmp_path)) == ["notes.txt.partial"]
    assert target.read_text() == "half"


@pytest.mark.parametrize("error", [ValueError("bad row"), Killed()])
def test_atomic_file_leaves_the_target_untouched_when_the_block_raises(tmp_path, error):
    target = tmp_path / "notes.txt"
    target.write_text("old\n")
    with pytest.raises(type(error)):
        with atomic_file(target) as f:
            f.write("new and half written")
            raise error
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # no .partial left over

    with pytest.raises(type(error)):
        with atomic_file(tmp_path / "new.txt") as f:
            raise error
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_atomic_file_replaces_what_a_killed_write_left(tmp_path):
    (tmp_path / "notes.txt.partial").write_text("left by a killed run, longer than the new text")
    with atomic_file(tmp_path / "notes.txt") as f:
        f.write("new")
    assert (tmp_path / "notes.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_write_json_is_indented_utf8_with_a_final_newline(tmp_path):
    write_json(tmp_path / "labels.json", {"names": ["négatif", "positif"]})
    text = (tmp_path / "labels.json").read_text(encoding="utf-8")
    assert text == '{\n  "names": [\n    "négatif",\n    "positif"\n  ]\n}\n'
    assert json.loads(text) == {"names": ["négatif", "positif"]}


# --- atomic_directory ---------------------------------------------------------------------------

def listing(directory):
    """Every path under `directory`, relative to it, with its text."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = open(path, encoding="utf-8").read()
    return found


def fill(directory, files):
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(directory, name)), exist_ok=True)
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(text)


def test_atomic_directory_builds_under_the_partial_name_then_renames(tmp_path):
    target = tmp_path / "run"
    with atomic_directory(target) as staging:
        assert staging == str(tmp_path / "run.partial")
        assert os.listdir(staging) == []
        fill(staging, {"model.keras": "m", "google/bert_config.json": "{}"})
        assert not target.exists()
    assert listing(target) == {"model.keras": "m", os.path.join("google", "bert_config.json"): "{}"}
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_atomic_directory_refuses_a_non_empty_directory_before_writing(tmp_path):
    target = tmp_path / "run"
    fill(target, {"model.keras": "old"})
    entered = []
    with pytest.raises(ValueError, match="exists and is not empty; pass overwrite=True"):
        with atomic_directory(target):
            entered.append(True)
    assert entered == []  # refused before the block ran: nothing was computed or written
    assert listing(target) == {"model.keras": "old"}
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_atomic_directory_replaces_an_empty_directory(tmp_path):
    (tmp_path / "run").mkdir()
    with atomic_directory(tmp_path / "run") as staging:
        fill(staging, {"a.txt": "new"})
    assert listing(tmp_path / "run") == {"a.txt": "new"}


def test_atomic_directory_with_overwrite_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "run"
    fill(target, {"model.keras": "old", "stale.txt": "from the old run"})
    with atomic_directory(target, overwrite=True) as staging:
        # The old directory stays whole until the new one is complete.
        assert listing(target) == {"model.keras": "old", "stale.txt": "from the old run"}
        fill(staging, {"model.keras": "new"})
    assert listing(target) == {"model.keras": "new"}
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no .partial nor .old.partial left


def test_atomic_directory_removes_what_a_killed_run_left(tmp_path):
    fill(tmp_path / "run.partial", {"model.keras": "half written", "sub/x": "junk"})
    with atomic_directory(tmp_path / "run") as staging:
        assert os.listdir(staging) == []
        fill(staging, {"model.keras": "whole"})
    assert listing(tmp_path / "run") == {"model.keras": "whole"}
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), Killed()])
def test_atomic_directory_leaves_nothing_on_error(tmp_path, error):
    with pytest.raises(type(error)):
        with atomic_directory(tmp_path / "new") as staging:
            fill(staging, {"model.keras": "half"})
            raise error
    assert os.listdir(tmp_path) == []

    # With overwrite, the old directory is kept whole.
    fill(tmp_path / "run", {"model.keras": "old"})
    with pytest.raises(type(error)):
        with atomic_directory(tmp_path / "run", overwrite=True) as staging:
            fill(staging, {"model.keras": "half"})
            raise error
    assert listing(tmp_path / "run") == {"model.keras": "old"}
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_atomic_directory_refuses_a_file(tmp_path):
    (tmp_path / "run").write_text("a file")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        with atomic_directory(tmp_path / "run", overwrite=True):
            pass
    assert (tmp_path / "run").read_text() == "a file"


def test_atomic_directory_restores_the_old_directory_a_kill_moved_aside(tmp_path):
    """A kill between moving the old directory aside and renaming the new one into place left
    only `<path>.old.partial`: the next write brings it back first, so nothing is lost."""
    target = tmp_path / "step-10"
    target.mkdir()
    (target / "weights.bin").write_bytes(b"old")
    aside = tmp_path / ("step-10.old" + PARTIAL_SUFFIX)
    target.rename(aside)  # the state a SIGKILL between the two renames leaves
    (tmp_path / ("step-10" + PARTIAL_SUFFIX)).mkdir()  # the new, unfinished one
    with pytest.raises(ValueError, match="exists and is not empty"):
        with atomic_directory(target):  # without overwrite the restored directory is refused
            pass
    assert (target / "weights.bin").read_bytes() == b"old" and not aside.exists()
    with atomic_directory(target, overwrite=True) as staging:
        (open(os.path.join(staging, "weights.bin"), "wb")).write(b"new")
    assert (target / "weights.bin").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["step-10"]


# The child processes load _checks.py alone (it is a leaf): importing the package starts TF.
LOAD_CHECKS = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("_checks", {os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_bert_min", "_checks.py")!r})
_checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(_checks)
"""
HOLD_LOCK = LOAD_CHECKS + """
import sys, time
with _checks.directory_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_directory_lock_refuses_a_second_run_and_frees_with_a_killed_one(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ValueError, match=rf"run is in use by another run \(pid {holder.pid} "
                                             r"on .*\); wait for it to finish, or pass another "
                                             r"--output_dir\."):
            with directory_lock(tmp_path / "run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder's lock file is still there, and blocks nobody.
    assert (tmp_path / "run" / ".lock").exists()
    with directory_lock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text() == f"pid {os.getpid()} on " \
            f"{socket.gethostname()}\n"


STOP_TWICE = LOAD_CHECKS + """
for i in range(3):
    print(i, flush=True)
    _checks.stop_point("here")
    _checks.stop_point("elsewhere")
"""


@pytest.mark.parametrize("spec, printed, code", [("here@2", "0\n1\n", -signal.SIGKILL),
                                                 ("here", "0\n", -signal.SIGKILL),
                                                 ("", "0\n1\n2\n", 0)])
def test_stop_point_kills_at_the_named_point(spec, printed, code):
    result = subprocess.run([sys.executable, "-c", STOP_TWICE], capture_output=True, text=True,
                            env={**os.environ, STOP_AT_ENV: spec})
    assert (result.stdout, result.returncode) == (printed, code)


@pytest.mark.parametrize("value", [0, -1e-3, float("nan"), float("inf"), True, "1e-3", None])
def test_check_positive_refuses_what_is_not_a_finite_number_above_zero(value):
    with pytest.raises(ValueError, match=rf"^learning_rate must be a number above 0, got "
                                         rf"{re.escape(repr(value))}\.$"):
        check_positive("learning_rate", value)
    assert check_positive("learning_rate", 3) == 3


def test_a_failed_write_says_what_where_and_that_nothing_was_left(tmp_path):
    """A real failed write (the file-size limit fails a write as a full disk does), a TF error
    whose message is a full disk's (TF names only its temporary file), and a missing input,
    which is not a write error and keeps its own message."""
    from tests.helpers import file_size_limit

    target = tmp_path / "model.bin"
    with file_size_limit(1000):
        with pytest.raises(OSError, match=rf"Writing {re.escape(str(target))} failed \(File too "
                                          r"large\); nothing was left half-written"):
            with atomic_file(target, "wb") as f:
                f.write(b"x" * 5000)
                f.flush()
    assert os.listdir(tmp_path) == []

    class FakeTFError(Exception):
        pass

    with pytest.raises(OSError, match=r"\[Errno 28\] Writing .*export failed \(.*part-00000-of-"
                                      r"00001.*\); nothing was left half-written .* Free disk"):
        with atomic_directory(tmp_path / "export"):
            raise FakeTFError("variables_temp/part-00000-of-00001.data-00000-of-00001.tempstate; "
                              "No space left on device")
    with pytest.raises(FileNotFoundError, match="^no such input$"):
        with atomic_directory(tmp_path / "export"):
            raise FileNotFoundError("no such input")
    assert os.listdir(tmp_path) == []
