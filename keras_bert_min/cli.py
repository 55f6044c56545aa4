"""What the recipes' command lines share: one way to check arguments and to report an error.

    parse_args              argparse, then the recipe's `check_args(args)`
    run                     calls a recipe's `main(argv)` as a program: the exit code
    fail                    prints `error: <message>` on stderr and exits with code 2
    finished_run            the note that an output directory holds a finished run, or None
    refuse_used_output_dir  a ValueError for a finished run or any other file in the directory
    lower_case_flag         "auto" / "yes" / "no" (LOWER_CASE_CHOICES) -> None / True / False

The parser itself is built from `recipes/_flags.py` (the standard library only), so that
`--help` answers before TensorFlow is imported. A recipe checks its flags with the package's
own checks (`_checks.check_int`, `_checks.check_fraction`), passing the flag as the name
("--steps must be an integer of at least 1, got 0."), so its errors read as the package's do.
Every ValueError or FileNotFoundError, from the checks or from the work, and every OSError (a
full disk, a missing file), leaves the program the same way: one `error:` line, exit code 2
(argparse's own code for a usage error); any other exception is a bug and keeps its traceback.
"""

import os
import sys

EXIT_ERROR = 2
# Bad input, and writes that failed (a full disk: the package's OSErrors say what and where).
ERRORS = (ValueError, OSError)
LOWER_CASE_CHOICES = ("auto", "yes", "no")


def fail(message):
    """Prints `error: <message>` as one line on stderr and exits with `EXIT_ERROR`."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"error: {text}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_ERROR)


def parse_args(parser, argv=None, check=None):
    """`parser.parse_args(argv)`, then `check(args)`; an error of the check goes to `fail`.

    Args:
        parser: an `argparse.ArgumentParser` (its own usage errors exit 2 as well).
        argv: the arguments; None reads `sys.argv`.
        check: a function of the parsed arguments raising ValueError or FileNotFoundError.

    Returns:
        The parsed, checked `argparse.Namespace`.

    Example:
    >>> args = parse_args(parser, ["--steps", "10"], check_args)
    """
    args = parser.parse_args(argv)
    if check is not None:
        try:
            check(args)
        except ERRORS as error:
            fail(error)
    return args


def run(main, argv=None):
    """Calls `main(argv)`; returns exit code 0, or `fail`s on a ValueError or an OSError.

    Example:
    >>> if __name__ == "__main__":
    ...     sys.exit(run(main))
    """
    try:
        main(argv)
    except ERRORS as error:
        fail(error)
    return 0


def finished_run(output_dir, marker):
    """The note that `output_dir` holds a finished run (its file `marker`), or None."""
    if not os.path.exists(os.path.join(output_dir, marker)):
        return None
    return (f"{output_dir} already holds a finished run ({marker}); it is not overwritten. "
            "Pass a new --output_dir to run again.")


def refuse_used_output_dir(output_dir, marker):
    """A ValueError if `output_dir` holds a finished run, is a file, or holds other files: for a
    run written in one piece (`_checks.atomic_directory`), checked before any work."""
    note = finished_run(output_dir, marker)
    if note:
        raise ValueError(note)
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file.")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(f"{output_dir} exists and is not empty; pass a new --output_dir.")


def lower_case_flag(value):
    """A `--lower_case` flag ("auto", "yes", "no") as `from_pretrained`'s lower_case argument."""
    if value not in LOWER_CASE_CHOICES:
        raise ValueError(f"--lower_case must be one of {LOWER_CASE_CHOICES}, got {value!r}.")
    return None if value == "auto" else value == "yes"
