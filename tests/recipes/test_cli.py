"""The recipes' shared command line (keras_bert_min.cli): one way to check arguments and fail."""

import argparse

import pytest

from keras_bert_min import cli
from keras_bert_min._checks import check_int
from tests.recipes.conftest import run_recipe


@pytest.mark.parametrize("script, args, message", [
    ("pretrain.py", ["--steps", "0"], "--steps must be an integer of at least 1, got 0."),
    ("finetune_classifier.py", ["--dev_fraction", "1"],
     "--dev_fraction must be in (0, 1), got 1.0."),
    ("finetune_tagger.py", ["--seq_length", "2"],
     "--seq_length must be an integer of at least 3 ([CLS], a word piece and [SEP]), got 2."),
    ("export.py", ["--pretrained", "x", "--export_base", "y", "--rest_port", "0"],
     "--rest_port must be an integer in [1, 65535], got 0."),
    ("create_pretraining_data.py", ["--input_file", "a.txt", "--output_file", "out",
                                    "--vocab_file", "v.txt", "--dupe_factor", "0"],
     "--dupe_factor must be an integer of at least 1, got 0."),
    ("export.py", ["--model", "m.keras", "--export_base", "y"], "--model needs --vocab"),
    ("export.py", ["--pretrained", "x", "--export_base", "y", "--seq_length", "0"],
     "--seq_length must be an integer of at least 3 ([CLS] and two [SEP]), got 0."),
])
def test_every_recipe_refuses_a_bad_flag_with_one_error_line(script, args, message):
    result = run_recipe(script, args, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def check(args):
    check_int("--steps", args.steps)


def test_parse_args_checks_and_fails_with_exit_code_2(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1)
    assert cli.parse_args(parser, ["--steps", "3"], check).steps == 3
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(parser, ["--steps", "0"], check)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --steps must be an integer of at least 1, got 0.\n"


def test_run_turns_value_and_file_errors_into_one_line(capsys):
    def main(argv):
        raise FileNotFoundError(f"{argv[0]} is missing;\n  give another.")

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, ["data.txt"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: data.txt is missing; give another.\n"
    assert cli.run(lambda argv: {"any": "result"}, []) == 0

    def disk_full(argv):  # a failed write (the package's OSErrors say what and where)
        raise OSError(28, "Writing runs/x failed (No space left on device)")

    with pytest.raises(SystemExit):
        cli.run(disk_full, [])
    assert capsys.readouterr().err.startswith("error: [Errno 28] Writing runs/x failed")

    def crash(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        cli.run(crash, [])


def test_output_directories(tmp_path):
    run = tmp_path / "run"
    assert cli.finished_run(str(run), "metrics.json") is None
    cli.refuse_used_output_dir(str(run), "metrics.json")  # missing: fine
    run.mkdir()
    cli.refuse_used_output_dir(str(run), "metrics.json")  # empty: fine
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty; pass a new --output_dir"):
        cli.refuse_used_output_dir(str(run), "metrics.json")
    (run / "metrics.json").write_text("{}")
    assert "already holds a finished run (metrics.json)" in cli.finished_run(str(run),
                                                                            "metrics.json")
    with pytest.raises(ValueError, match="already holds a finished run"):
        cli.refuse_used_output_dir(str(run), "metrics.json")
    with pytest.raises(ValueError, match="is a file"):
        cli.refuse_used_output_dir(str(run / "notes.txt"), "metrics.json")


def test_lower_case_flag():
    assert [cli.lower_case_flag(v) for v in cli.LOWER_CASE_CHOICES] == [None, True, False]
    with pytest.raises(ValueError, match="--lower_case must be one of"):
        cli.lower_case_flag("maybe")


@pytest.mark.parametrize("script", ["pretrain.py", "finetune_classifier.py",
                                    "finetune_tagger.py", "export.py",
                                    "create_pretraining_data.py"])
def test_every_flag_of_every_recipe_has_help(script):
    import importlib.util
    import os

    from tests.recipes.conftest import REPO

    spec = importlib.util.spec_from_file_location(script[:-3], os.path.join(REPO, "recipes",
                                                                              script))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assert [a.option_strings for a in recipe.build_parser()._actions if not a.help] == []
