"""recipes/finetune_tagger.py end to end, in subprocesses: the hand-made NER set from MiniLM,
outputs that from_pretrained and conlleval agree on, resume after SIGKILL, bad input."""

import json
import os
import re
import signal

import numpy as np
import pytest

from keras_bert_min._checks import STOP_AT_ENV
from tests.recipes import conftest
from tests.recipes.conftest import recipe_error, run_recipe

QUICK = ["--epochs", "2", "--seq_length", "24", "--deterministic"]


def load_recipe():
    return conftest.load_recipe("finetune_tagger.py")


def test_the_default_data_trains_a_tagger_that_loads_and_scores_the_same(tmp_path):
    import keras_bert_min as kbm
    from keras_bert_min.text import conll, handmade

    out = tmp_path / "tagger"
    result = run_recipe("finetune_tagger.py", ["--output_dir", str(out), *QUICK])
    assert "test entity F1" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tags"] == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    assert metrics["sentences"] == {"train": 160, "dev": 40, "test": 40}
    assert sorted(os.listdir(out / "export")) == ["1"]
    # The saved tagger, reloaded, gives the recorded test scores (conlleval on its word tags).
    tagger, preprocessor = kbm.from_pretrained(str(out))
    assert tagger.label_names == metrics["tags"]
    test = handmade.ner_sentences("test")
    features = conll.tagger_features(test, preprocessor,
                                     {t: i for i, t in enumerate(metrics["tags"])})
    logits = tagger.predict(features.inputs, verbose=0)["logits"]
    predicted = conll.word_tags(np.argmax(logits, -1), features, metrics["tags"], len(test))
    scores = conll.conlleval([s.tags for s in test], predicted)
    assert scores["f1"] == pytest.approx(metrics["test"]["f1"])
    assert metrics["test"]["f1"] > 0.5  # two epochs of 10 steps already find most entities


def test_a_killed_run_resumes_to_the_uninterrupted_tagger(tmp_path):
    import keras

    reference = tmp_path / "uninterrupted"
    run_recipe("finetune_tagger.py", ["--output_dir", str(reference), "--no_export", *QUICK])
    out = tmp_path / "killed"
    args = ["--output_dir", str(out), "--no_export", *QUICK]
    result = run_recipe("finetune_tagger.py", args, env={STOP_AT_ENV: "backup:state_written@2"},
                        check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    result = run_recipe("finetune_tagger.py", args)
    assert re.search(r"Resuming from the backup of epoch 1\.", result.stdout)
    for a, b in zip(keras.saving.load_model(str(out / "model.keras")).weights,
                    keras.saving.load_model(str(reference / "model.keras")).weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not os.path.exists(f"{out}.partial")


def test_bad_input_is_named_before_any_model_is_built(tmp_path, capsys):
    recipe = load_recipe()
    train = tmp_path / "eng.train"
    train.write_text("EU B-ORG\nrejects O\n\nPeter\n", encoding="utf-8")
    dev = tmp_path / "eng.testa"
    dev.write_text("Paris B-LOC\n", encoding="utf-8")
    out = str(tmp_path / "out")
    assert re.search(r"eng.train:4: the line has one column", recipe_error(
        capsys, recipe.main, ["--train", str(train), "--dev", str(dev), "--output_dir", out]))
    assert "--train needs --dev" in recipe_error(
        capsys, recipe.main, ["--train", str(train), "--output_dir", out])
    train.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    message = recipe_error(capsys, recipe.main, ["--train", str(train), "--dev", str(dev),
                                                 "--output_dir", out])
    assert re.search(r"eng.testa:1: tags \['B-LOC'\] never occur in the training data", message)
    assert not os.path.exists(out)
