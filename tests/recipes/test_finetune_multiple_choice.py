"""recipes/finetune_multiple_choice.py end to end, in subprocesses: MiniLM fine-tuned on part
of the hand-made multiple-choice set; accuracy recomputed from the reloaded model with NumPy;
the export's serve_choices answering; the default data; bad input named by file and line."""

import json
import os
import re

import numpy as np
import pytest

from keras_bert_min.text import handmade
from tests.recipes import conftest
from tests.recipes.conftest import recipe_error, run_recipe

QUICK = ["--epochs", "2", "--seq_length", "64", "--batch_size", "8", "--deterministic",
         "--precision", "float32"]  # float32, as the predictions recomputed here


def write_split(path, examples):
    with open(path, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"id": e.source, "context": e.context,
                                "choices": list(e.choices), "label": e.label}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("choice_files")
    return {name: write_split(directory / f"{name}.jsonl", handmade.choice_examples(name)[:size])
            for name, size in (("train", 48), ("dev", 16), ("test", 16))}


def test_end_to_end_accuracy_reloads_and_serves(files, tmp_path):
    import tensorflow as tf

    import keras_bert_min as kbm
    from keras_bert_min.text.choices import choice_inputs, read_choices_jsonl

    out = tmp_path / "chooser"
    result = run_recipe("finetune_multiple_choice.py", [
        "--train", files["train"], "--dev", files["dev"], "--test", files["test"],
        "--output_dir", str(out), *QUICK])
    assert "test accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["choices"] == 4 and len(metrics["dev_accuracy_per_epoch"]) == 2
    chooser, preprocessor = kbm.from_pretrained(str(out))
    test = read_choices_jsonl(files["test"])
    inputs = choice_inputs([e.context for e in test], [list(e.choices) for e in test],
                           preprocessor)
    logits = chooser.predict(inputs, verbose=0)["logits"]
    labels = np.array([e.label for e in test])
    # Mechanics on a small part of the set (its default run's accuracy is in the README; a
    # tiny BERT learns a choice rule in tests/test_tasks.py).
    assert metrics["test_accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))

    serve = tf.saved_model.load(str(out / metrics["export"])).signatures["serve_choices"]
    served = serve(context=tf.constant([test[0].context]),
                   choices=tf.constant([list(test[0].choices)]))
    np.testing.assert_allclose(served["logits"].numpy(), logits[:1], rtol=1e-4, atol=1e-4)


def test_bad_input_is_named_before_any_model_is_built(files, tmp_path, capsys):
    recipe = conftest.load_recipe("finetune_multiple_choice.py")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "c", "choices": ["a", "b"], "label": 0}\n'
                   '{"id": "x7", "context": "c", "choices": ["only"], "label": 0}\n',
                   encoding="utf-8")
    out = str(tmp_path / "out")
    message = recipe_error(capsys, recipe.main, ["--train", str(bad), "--dev", files["dev"],
                                                 "--output_dir", out])
    assert re.search(r"bad.jsonl:2 \(id 'x7'\): 'choices' must be a list of two or more",
                     message)
    three = tmp_path / "three.jsonl"
    three.write_text('{"context": "c", "choices": ["a", "b", "c"], "label": 0}\n',
                     encoding="utf-8")
    assert "different numbers of choices" in recipe_error(
        capsys, recipe.main, ["--train", str(three), "--dev", files["dev"],
                              "--output_dir", out])
    assert not os.path.exists(out)


def test_the_default_data_is_the_hand_made_set():
    recipe = conftest.load_recipe("finetune_multiple_choice.py")
    splits = recipe.load_splits(recipe.parse_args(["--output_dir", "unused"]))
    assert {name: len(examples) for name, examples in splits.items()} == {
        "train": 620, "dev": 156, "test": 142}
    assert {len(e.choices) for e in splits["train"]} == {4}
