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


def test_googles_own_command_line_works_unchanged(tmp_path):
    """absl's boolean forms and comma-separated lists, as run_pretraining's README writes them,
    and --output_file naming exactly the files written (Google's script writes those names)."""
    import recipes.create_pretraining_data as recipe

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat",
                                "sat", "on", "mat", "a", "dog", "ran", "."]) + "\n")
    base = ["--vocab_file", str(vocab), "--output_file", str(tmp_path / "out.tfrecord")]
    args = recipe.parse_args(["--input_file", "a.txt,b.txt", "c.txt", "--do_lower_case=False",
                              "--do_whole_word_mask=True", *base])
    assert args.input_file == ["a.txt", "b.txt", "c.txt"]
    assert (args.do_lower_case, args.do_whole_word_mask) == (False, True)
    for flags, lower, whole in ((["--nodo_lower_case"], False, False),
                                (["--do_lower_case", "--do_whole_word_mask"], True, True),
                                (["--do_lower_case=true", "--nodo_whole_word_mask"], True, False),
                                ([], True, False)):
        args = recipe.parse_args(["--input_file", "a.txt", *flags, *base])
        assert (args.do_lower_case, args.do_whole_word_mask) == (lower, whole), flags

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"The cat sat on a mat {i}.\nA dog ran.\nThe dog sat.\n\n"
                              for i in range(30)))
    one = tmp_path / "one" / "train.tfrecord"
    files = recipe.main(["--input_file", str(corpus), "--vocab_file", str(vocab),
                         "--output_file", str(one), "--max_seq_length", "16",
                         "--max_predictions_per_seq", "2", "--dupe_factor", "1"])
    assert files == [str(one)] and sorted(p.name for p in one.parent.iterdir()) == [one.name]
    two = [tmp_path / "two" / "a.tfrecord", tmp_path / "two" / "b.tfrecord"]
    files = recipe.main(["--input_file", str(corpus), "--vocab_file", str(vocab),
                         "--output_file", ",".join(map(str, two)), "--max_seq_length", "16",
                         "--max_predictions_per_seq", "2", "--dupe_factor", "1",
                         "--input_format", "bert"])
    assert files == [str(p) for p in two]
    counts = [sum(1 for _ in tf.data.TFRecordDataset(str(p))) for p in two]
    total = sum(1 for _ in tf.data.TFRecordDataset(str(one)))
    assert counts[0] - counts[1] in (0, 1) and sum(counts) == total  # dealt in turn
