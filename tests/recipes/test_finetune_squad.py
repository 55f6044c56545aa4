"""recipes/finetune_squad.py end to end, in subprocesses: MiniLM fine-tuned on a small part of
the hand-made SQuAD 2.0 set; the written predictions rescored by the official v2.0 script's
transcription (tests/text/reference_squad.py); the saved model reloaded; the export's
serve_question answering; resume after SIGKILL; bad input named before any work."""

import json
import os
import re
import signal

import numpy as np
import pytest

from keras_bert_min._checks import STOP_AT_ENV
from keras_bert_min.text import handmade
from tests.recipes import conftest
from tests.recipes.conftest import recipe_error, run_recipe
from tests.text import reference_squad

QUICK = ["--epochs", "2", "--seq_length", "64", "--doc_stride", "32", "--max_query_length",
         "16", "--batch_size", "16", "--learning_rate", "2e-4", "--deterministic"]


def small_split(name, paragraphs):
    data = handmade.squad_dataset(name)
    data["data"][0]["paragraphs"] = data["data"][0]["paragraphs"][:paragraphs]
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("squad_files")
    paths = {}
    for name, paragraphs in (("train", 16), ("dev", 6), ("test", 6)):
        paths[name] = str(directory / f"{name}.json")
        with open(paths[name], "w", encoding="utf-8") as f:
            json.dump(small_split(name, paragraphs), f)
    return paths


def files_args(files):
    return ["--train", files["train"], "--dev", files["dev"], "--test", files["test"]]


def test_end_to_end_scores_as_the_official_script_and_serves(files, tmp_path):
    """Mechanics on a small part of the hand-made set (its full default run's scores are in
    the README): the files run_squad.py writes, rescored by the official script; the best
    epoch's dev F1; the model reloaded; the export answering."""
    import tensorflow as tf

    import keras_bert_min as kbm

    out = tmp_path / "squad"
    result = run_recipe("finetune_squad.py", [*files_args(files), "--output_dir", str(out),
                                              *QUICK])
    assert "test exact match" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["version_2_with_negative"] is True
    assert len(metrics["dev_f1_per_epoch"]) == 2
    assert metrics["windows"]["train"] > metrics["questions"]["train"]  # doc stride at work
    for split in ("dev", "test"):
        with open(files[split], encoding="utf-8") as f:
            dataset = json.load(f)["data"]
        predictions = json.loads((out / f"predictions_{split}.json").read_text())
        official = reference_squad.evaluate_v2(dataset, predictions)
        assert metrics[split]["exact_match"] == pytest.approx(official["exact"])
        assert metrics[split]["f1"] == pytest.approx(official["f1"])
        assert (out / f"null_odds_{split}.json").exists()
    assert metrics["dev"]["f1"] == pytest.approx(max(metrics["dev_f1_per_epoch"]))

    reader, preprocessor = kbm.from_pretrained(str(out))
    assert type(reader).__name__ == "BertSpanPredictor" and preprocessor.seq_length == 64
    serve = tf.saved_model.load(str(out / metrics["export"])).signatures["serve_question"]
    context = "Anna Kowalski lives in Oslo . Tom Berg works as a pilot ."
    answer = serve(question=tf.constant(["Where does Anna Kowalski live ?"]),
                   context=tf.constant([context]))
    start, end = int(answer["answer_start"][0]), int(answer["answer_end"][0])
    assert answer["answer"][0].numpy().decode() == (context[start:end] if start >= 0 else "")


def test_a_killed_run_resumes_to_the_uninterrupted_reader(files, tmp_path):
    import keras

    args = [*files_args(files), "--no_export", *QUICK]
    reference = tmp_path / "uninterrupted"
    run_recipe("finetune_squad.py", [*args, "--output_dir", str(reference)])
    out = tmp_path / "killed"
    result = run_recipe("finetune_squad.py", [*args, "--output_dir", str(out)],
                        env={STOP_AT_ENV: "backup:state_written@2"}, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    result = run_recipe("finetune_squad.py", [*args, "--output_dir", str(out)])
    assert re.search(r"Resuming from the backup of epoch 1\.", result.stdout)
    for a, b in zip(keras.saving.load_model(str(out / "model.keras")).weights,
                    keras.saving.load_model(str(reference / "model.keras")).weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (json.loads((out / "metrics.json").read_text())["dev_f1_per_epoch"]
            == json.loads((reference / "metrics.json").read_text())["dev_f1_per_epoch"])


def test_bad_input_is_named_before_any_model_is_built(files, tmp_path, capsys):
    recipe = conftest.load_recipe("finetune_squad.py")
    data = small_split("train", 2)
    data["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] += 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    out = str(tmp_path / "out")
    message = recipe_error(capsys, recipe.main, ["--train", str(bad), "--dev", files["dev"],
                                                 "--output_dir", out])
    assert re.search(r"bad.json' question 'train-1-0': the answer .* does not match", message)
    assert "--train needs --dev" in recipe_error(capsys, recipe.main,
                                                 ["--train", str(bad), "--output_dir", out])
    assert "leaves no room for the context" in recipe_error(
        capsys, recipe.main, ["--seq_length", "32", "--max_query_length", "29",
                              "--output_dir", out])
    assert not os.path.exists(out)


def test_the_default_data_is_the_hand_made_set():
    recipe = conftest.load_recipe("finetune_squad.py")
    splits = recipe.load_splits(recipe.parse_args(["--output_dir", "unused"]))
    assert {name: len(examples) for name, examples in splits.items()} == {
        "train": 740, "dev": 168, "test": 161}
    assert sum(e.is_impossible for e in splits["train"]) == 120


def test_help_explains_every_flag(capsys):
    recipe = conftest.load_recipe("finetune_squad.py")
    with pytest.raises(SystemExit):
        recipe.build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--doc_stride", "--max_query_length", "--n_best_size", "--max_answer_length",
                 "--null_score_diff_threshold", "--init"):
        assert flag in text
