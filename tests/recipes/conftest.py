"""A small real corpus and its vocab, shared by the recipe tests (made once per session)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """The first chapters of a real Gutenberg book (fetched into the cache) and a 1k vocab."""
    from keras_bert_min.corpora import fetch_gutenberg
    from keras_bert_min.text.vocab import learn_vocab, write_vocab

    directory = tmp_path_factory.mktemp("corpus")
    book = sorted(fetch_gutenberg())[0]
    with open(book, encoding="utf-8") as f:
        lines = f.readlines()[:2500]
    corpus = directory / "book.txt"
    corpus.write_text("".join(lines), encoding="utf-8")
    vocab = directory / "vocab.txt"
    write_vocab(learn_vocab([str(corpus)], 1000, progress=False), str(vocab))
    return str(corpus), str(vocab)


def recipe_error(capsys, function, argv):
    """Calls a recipe's `main` (or `parse_args`) on `argv` as its `__main__` does, through
    `keras_bert_min.cli.run`, expecting it to fail: checks exit code 2 and one `error:` line on
    stderr, and returns that line's message."""
    from keras_bert_min import cli

    capsys.readouterr()  # what came before is not this call's
    with pytest.raises(SystemExit) as exit_info:
        cli.run(function, argv)
    assert exit_info.value.code == 2, exit_info.value.code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0][len("error: "):]


def load_recipe(script):
    """`recipes/<script>` imported as a module (as tests call a recipe's functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script[:-3],
                                                  os.path.join(REPO, "recipes", script))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def run_recipe(script, args, env=None, check=True, timeout=600):
    """Runs `recipes/<script>` in a fresh Python process; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", script), *args],
                            cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result
