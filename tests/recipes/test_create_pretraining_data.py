"""recipes/create_pretraining_data.py, and pretrain.py reading what it wrote (--tfrecords)."""

import json

import numpy as np
import tensorflow as tf

from tests.recipes.conftest import run_recipe
from tests.recipes.test_pretrain import SMALL


def test_static_records_train_with_the_pretraining_recipe(small_corpus, tmp_path):
    corpus, _ = small_corpus
    vocab = tmp_path / "vocab.txt"
    prefix = tmp_path / "data" / "train.tfrecord"
    result = run_recipe("create_pretraining_data.py", [
        "--input_file", corpus, "--vocab_file", str(vocab), "--learn_vocab_size", "800",
        "--output_file", str(prefix), "--max_seq_length", "32", "--max_predictions_per_seq", "5",
        "--dupe_factor", "2", "--num_shards", "2"])
    files = sorted(str(p) for p in (tmp_path / "data").iterdir())
    assert len(files) == 2 and "Wrote 2 TFRecord file(s)" in result.stdout
    # Google's seven features, with Google's dtypes and lengths.
    record = next(iter(tf.data.TFRecordDataset(files[0]).take(1)))
    example = tf.train.Example.FromString(record.numpy())
    features = example.features.feature
    assert sorted(features) == sorted(["input_ids", "input_mask", "segment_ids",
                                       "masked_lm_positions", "masked_lm_ids",
                                       "masked_lm_weights", "next_sentence_labels"])
    assert len(features["input_ids"].int64_list.value) == 32
    assert len(features["masked_lm_weights"].float_list.value) == 5

    out = tmp_path / "run"
    args = ["--tfrecords", *files, "--vocab", str(vocab), "--output_dir", str(out),
            "--steps", "10", "--no_export", *SMALL]
    run_recipe("pretrain.py", args)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["steps"] == 10
    assert np.isfinite(np.genfromtxt(out / "history.csv", delimiter=",", skip_header=1)).all()
