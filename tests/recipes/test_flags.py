"""Tests for recipes/_flags.py: the values its flags offer are the package's, and every recipe's
--help answers without importing TensorFlow (checked by what the process imported, not by time)."""

import os
import subprocess
import sys

import pytest

from tests.recipes.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "recipes"))
import _flags  # noqa: E402

RECIPES = sorted(name for name in os.listdir(os.path.join(REPO, "recipes"))
                 if name.endswith(".py") and not name.startswith("_"))

HELP_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("tensorflow", "keras", "keras_bert_min") if m in sys.modules)
print("EXIT", code, "IMPORTED", heavy)
"""


def test_the_flags_offer_the_packages_values():
    from keras_bert_min import cli, distribute, finetuning, optimization, pretrained
    from keras_bert_min.text import preprocessor, shards

    assert _flags.STRATEGIES == distribute.STRATEGIES
    assert _flags.PRECISIONS == distribute.PRECISIONS
    assert _flags.LOWER_CASE_CHOICES == cli.LOWER_CASE_CHOICES
    assert _flags.PADDING_MODES == preprocessor.PADDING_MODES
    assert _flags.DEFAULT_SHARD_MB == shards.DEFAULT_SHARD_MB
    assert _flags.DEFAULT_WARMUP_FRACTION == optimization.DEFAULT_WARMUP_FRACTION
    assert _flags.DEFAULT_SEQ_LENGTH == pretrained.DEFAULT_SEQ_LENGTH
    assert _flags.MINILM_PACKAGE == finetuning.MINILM_PACKAGE


def test_the_recipes_metrics_file_is_the_packages():
    from keras_bert_min import finetuning
    from tests.recipes.conftest import load_recipe

    for script in ("finetune_classifier.py", "finetune_tagger.py", "finetune_squad.py",
                   "finetune_multiple_choice.py"):
        assert load_recipe(script).METRICS_FILE == finetuning.METRICS_FILE, script


@pytest.mark.parametrize("script", RECIPES)
def test_help_answers_before_tensorflow_is_imported(script):
    out = subprocess.run([sys.executable, "-c", HELP_PROBE, os.path.join(REPO, "recipes", script)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.rstrip().endswith("EXIT 0 IMPORTED []"), out.stdout[-500:]
    assert out.stdout.startswith(f"usage: {script} ") and "show this help message" in out.stdout
    assert out.stderr == ""  # no CUDA or TensorFlow log lines


def test_answer_help_does_nothing_without_a_help_flag():
    calls = []
    _flags.answer_help(lambda: calls.append(1), ["--steps", "3"])
    assert calls == []
