"""The benchmark scripts: each `--quick` run writes complete result files, and the pieces that
compute the reported numbers (FLOP counts, batches, alternation, merging, result writing) agree
with hand-computed references. Speeds themselves are never asserted."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_train  # noqa: E402
import common  # noqa: E402
from keras_bert_min.config import BertConfig  # noqa: E402

# A few real sentences, so the quick runs need no download.
SENTENCES = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "Call me Ishmael.",
    "Some years ago, never mind how long precisely, I thought I would sail about a little.",
    "The sun had not yet risen.",
    "In the beginning God created the heaven and the earth.",
    "Whan that Aprill with his shoures soote the droghte of March hath perced to the roote.",
    "She was not yet sure whether the door would open, and she waited.",
]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """Prose with chapters of several paragraphs: enough sentences for NSP pairs."""
    path = tmp_path_factory.mktemp("text") / "book.txt"
    paragraphs = []
    for chapter in range(1, 6):
        paragraphs.append(f"CHAPTER {chapter}")
        for i in range(12):
            paragraphs.append(" ".join(SENTENCES[(i + j + chapter) % len(SENTENCES)]
                                       for j in range(3)))
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return str(path)


def run_quick(script, output_dir, *extra):
    """Runs `benchmarks/<script> --quick` in a subprocess; returns its JSON and Markdown."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), "--quick", "--output_dir",
         str(output_dir), *extra],
        capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    name = script[:-len(".py")]
    with open(os.path.join(output_dir, name + ".json"), encoding="utf-8") as f:
        result = json.load(f)
    with open(os.path.join(output_dir, name + ".md"), encoding="utf-8") as f:
        markdown = f.read()
    assert not [p for p in os.listdir(output_dir) if p.endswith((".tmp", ".partial"))]
    return result, markdown


def assert_positive_numbers(values):
    assert values and all(isinstance(v, float) and v > 0 and np.isfinite(v) for v in values)


def assert_environment(result):
    env = result["environment"]
    assert env["cpu_count"] == os.cpu_count()
    assert len(env["load_average_1_5_15_min"]) == 3
    assert {"python", "tensorflow", "keras", "keras_hub"} <= set(env["versions"])


# --- the quick runs -------------------------------------------------------------------------------

def test_bench_train_quick(tmp_path):
    result, markdown = run_quick("bench_train.py", tmp_path)
    assert result["benchmark"] == "bench_train" and result["quick"] is True
    setup = result["setup"]
    assert (setup["seq_length"], setup["batch_size"], setup["num_predictions"]) == (16, 4, 3)
    assert result["flops_per_token"] == bench_train.flops_per_token(
        BertConfig.from_dict(setup["config"]), 16, 3)
    assert result["training_flops_per_token"] == 3 * result["flops_per_token"]
    assert [(r["precision"], r["xla"]) for r in result["rows"]] == [
        ("float32", "off"), ("mixed_bfloat16", "off")]
    for row in result["rows"]:
        assert row["jit_compile"] == {"ours": False, "keras_hub": False}
        for name in ("ours", "keras_hub"):
            runs = row["tokens_per_second_runs"][name]
            assert len(runs) == setup["rounds"] == 2
            assert_positive_numbers(runs)
            assert row["tokens_per_second"][name] == pytest.approx(float(np.median(runs)))
            gflops = row["tokens_per_second"][name] * result["training_flops_per_token"] / 1e9
            assert row["model_gflops"][name] == pytest.approx(gflops)
            peak = row["matmul_peak_gflops"][row["utilisation_peak"]]
            assert row["utilisation_percent"][name] == pytest.approx(100 * gflops / peak)
        assert row["utilisation_peak"] == ("float32" if row["precision"] == "float32"
                                           else "bfloat16")
        for dtype in ("float32", "bfloat16"):
            assert_positive_numbers(row["matmul_peak_gflops_runs"][dtype])
        tps = row["tokens_per_second"]
        assert row["ratio_ours_over_keras_hub"] == pytest.approx(tps["ours"] / tps["keras_hub"])
        assert set(row["met_targets"]) == {"ratio_ours_over_keras_hub", "utilisation"}
        assert len(row["load_average_1min"]) == 2
    assert result["targets"] == {"ratio_ours_over_keras_hub": 1.0,
                                 "utilisation_percent": {"float32": 65.0, "mixed_bfloat16": 60.0}}
    assert_environment(result)
    assert "| precision | XLA | ours tokens/s |" in markdown
    assert f"**{result['rows'][0]['ratio_ours_over_keras_hub']:.2f}**" in markdown


def test_bench_serve_quick(tmp_path, text_file):
    result, markdown = run_quick("bench_serve.py", tmp_path, "--text", text_file)
    assert result["benchmark"] == "bench_serve" and result["quick"] is True
    setup = result["setup"]
    assert setup["vocab_size"] == 30522  # the real bert-base-uncased vocab
    assert (setup["seq_length"], setup["batch_size"], setup["precision"]) == (32, 8, "float32")
    m = result["measurements"]
    for name in ("ours", "keras_hub", "ours_max_length"):
        assert_positive_numbers(m["sentences_per_second_runs"][name])
        assert m["sentences_per_second"][name] == pytest.approx(
            float(np.median(m["sentences_per_second_runs"][name])))
        latency = m["latency_ms"][name]
        assert latency["calls"] == setup["latency_calls"] * setup["rounds"]
        assert 0 < latency["p50"] <= latency["p99"]
    sps = m["sentences_per_second"]
    assert result["throughput_ratio_ours_over_keras_hub"] == pytest.approx(
        sps["ours"] / sps["keras_hub"])
    assert result["throughput_ratio_max_length_over_keras_hub"] == pytest.approx(
        sps["ours_max_length"] / sps["keras_hub"])
    # The test text's sentences are shorter than the quick run's 32 tokens, [CLS] and [SEP] in.
    assert 3 < result["mean_tokens_per_sentence"] < 32
    # Both preprocessors follow BERT's rules; on plain English sentences they must agree.
    assert result["same_ids_fraction"] == 1.0
    assert result["targets"] == {"throughput_ratio_ours_over_keras_hub": 1.2}
    assert_environment(result)
    assert "| server | sentences/s (batch 8) |" in markdown


def test_bench_optimizer_quick(tmp_path):
    result, markdown = run_quick("bench_optimizer.py", tmp_path)
    assert result["benchmark"] == "bench_optimizer" and result["quick"] is True
    setup = result["setup"]
    # BERT-tiny's pretrainer, vocab 30522: embeddings 3,972,864 + 2 blocks of 198,272 + pooler
    # 16,512 + MLM head 47,290 (transform, LayerNorm, output bias) + NSP head 258.
    assert setup["model"] == "tiny" and setup["weights"] == 4_433_468
    for name in ("ours", "keras"):
        runs = result["ms_per_step_runs"][name]
        assert len(runs) == setup["rounds"]
        assert_positive_numbers(runs)
        assert result["ms_per_step"][name] == pytest.approx(float(np.median(runs)))
    assert result["speedup_keras_over_ours"] == pytest.approx(
        result["ms_per_step"]["keras"] / result["ms_per_step"]["ours"])
    # Same formula, same gradients: the two optimizers' weights stay within float32 rounding.
    assert result["steps_applied"] == 1 + setup["steps"] * setup["rounds"]
    assert result["max_weight_difference"] < 1e-6
    assert_environment(result)
    assert "| optimizer | ms per step |" in markdown


def test_corpus_memory_quick(tmp_path):
    result, markdown = run_quick("corpus_memory.py", tmp_path)
    assert result["benchmark"] == "corpus_memory" and [round(r["size_mb"], 1)
                                                       for r in result["rows"]] == [0.2, 0.4]
    for row in result["rows"]:
        assert row["peak_mib"] >= row["baseline_mib"] > 0 and row["instances"] > 0
        assert row["data_mib"] == pytest.approx(row["peak_mib"] - row["baseline_mib"], abs=0.11)
    assert "| 0.2 MB |" in markdown


def test_bench_data_quick(tmp_path, text_file):
    result, markdown = run_quick("bench_data.py", tmp_path, "--text", text_file)
    assert result["benchmark"] == "bench_data" and result["quick"] is True
    m = result["measurements"]
    assert m["prepare_counts"]["sentences"] > 100 and m["instances"] >= 8
    for key in ("pipeline_examples_per_second_runs", "training_examples_per_second_runs"):
        assert len(m[key]) == result["setup"]["rounds"] == 2
        assert_positive_numbers(m[key])
    assert result["ratio_pipeline_over_training"] == pytest.approx(
        m["pipeline_examples_per_second"] / m["training_examples_per_second"])
    assert m["prepare_examples_per_second"] == pytest.approx(
        m["instances"] / m["prepare_seconds"])
    assert result["met_targets"]["ratio_pipeline_over_training"] == (
        result["ratio_pipeline_over_training"] >= 10.0)
    assert_environment(result)
    assert "| tf.data pipeline (dynamic masking) |" in markdown


def test_profile_train_quick(tmp_path):
    result, markdown = run_quick("profile_train.py", tmp_path)
    assert result["setup"]["model"] == "ours" and result["setup"]["xla"] == "off"
    summary = result["summary"]
    assert summary["op_seconds"] > 0
    assert sum(p["percent"] for p in summary["by_part"]) == pytest.approx(100.0)
    parts = {p["name"] for p in summary["by_part"]}
    # Every part of a training step shows up, by the name scopes TensorFlow gives its ops.
    assert {"forward matmul", "backward matmul", "optimizer", "loss and metrics",
            "forward random (dropout)"} <= parts
    assert any("MatMul" in t["name"] for t in summary["by_type"])
    assert os.path.isdir(result["trace_dir"])
    assert "| part of the step | op seconds | share |" in markdown


@pytest.mark.parametrize("script, args, message", [
    ("bench_train.py", ["--steps", "1"], "--steps (1) must be at least twice"),
    ("bench_train.py", ["--num_predictions", "15"], "--num_predictions (15) must leave"),
    ("bench_serve.py", ["--vocab", "/no/such/vocab.txt"], "is not a file"),
    ("bench_data.py", ["--train_steps", "1"], "--train_steps must be at least 2"),
    ("profile_train.py", ["--steps", "1"], "--steps must be at least 2"),
    ("bench_optimizer.py", ["--rounds", "0"], "--rounds must be at least 1, got 0"),
])
def test_bad_arguments_fail_with_a_message(tmp_path, script, args, message):
    completed = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), "--quick", "--output_dir",
         str(tmp_path), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode != 0
    assert message in completed.stderr
    assert os.listdir(tmp_path) == []


# --- the numbers behind the tables ----------------------------------------------------------------

@pytest.mark.parametrize("op_name, op_type, part", [
    ("StatefulPartitionedCall/gradient_tape/bert_pretrainer_1/masked_lm_1/MatMul", "_MklMatMul",
     "backward matmul"),
    ("StatefulPartitionedCall/bert_pretrainer_1/bert_encoder_1/dropout/stateless_random_uniform",
     "StatelessRandomUniformV2", "forward random (dropout)"),
    ("StatefulPartitionedCall/adam_w/Sub_3", "Sub", "optimizer"),
    ("StatefulPartitionedCall/compile_loss/mlm_loss/SparseSoftmaxCrossEntropyWithLogits",
     "SparseSoftmaxCrossEntropyWithLogits", "loss and metrics"),
    ("", "multiply_add_fusion", "XLA kernel or unscoped, other"),
])
def test_profile_parts_of_the_step(op_name, op_type, part):
    import profile_train

    assert profile_train.part_of_step(op_name, op_type) == part


def test_flops_per_token_by_hand():
    # BERT-tiny, vocab 1000, S=4, P=1. Per layer: 2 * (4*128^2 [q,k,v,out] + 2*4*128 [scores,
    # context] + 2*128*512 [ffn]) = 395,264; two layers 790,528. MLM per prediction:
    # 2 * (128^2 + 128*1000) = 288,768; pooler + NSP per sequence 2 * (128^2 + 2*128) = 33,280;
    # both over S=4 tokens: 80,512.
    config = BertConfig.from_preset("tiny", vocab_size=1000)
    assert bench_train.flops_per_token(config, 4, 1) == 790_528 + 80_512


def test_flops_per_token_of_bert_base_is_twice_the_weights_plus_attention():
    # The usual estimate: 2 FLOPs per encoder weight per token (85M weights in the 12 blocks'
    # dense layers) + 4*L*S*H for attention scores and context, + the [CLS] pooler/NSP share.
    config = BertConfig.from_preset("base")
    block_weights = 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert block_weights == 84_934_656
    expected = 2 * block_weights + 4 * 12 * 128 * 768 + 2 * (768 * 768 + 2 * 768) / 128
    assert bench_train.flops_per_token(config, 128, 0) == pytest.approx(expected)


def test_random_batch_has_valid_pretraining_features():
    config = BertConfig.from_preset("tiny", vocab_size=50)
    batch = bench_train.random_batch(config, batch_size=6, seq_length=12, num_predictions=4)
    positions = batch["masked_lm_positions"]
    assert positions.shape == (6, 4) and positions.dtype == np.int32
    for row in positions:  # distinct, ascending, never [CLS] (0) or the last position
        assert list(row) == sorted(set(row.tolist())) and row.min() >= 1 and row.max() <= 10
    assert batch["input_word_ids"].max() < 50 and batch["masked_lm_ids"].max() < 50
    assert batch["input_type_ids"].tolist()[0] == [0] * 6 + [1] * 6
    assert (batch["input_mask"] == 1).all() and (batch["masked_lm_weights"] == 1.0).all()
    assert set(batch["next_sentence_labels"].ravel()) <= {0, 1}


def test_alternate_runs_contenders_in_turn():
    calls = []
    runs = common.alternate(["a", "b", "peak"], 2, lambda name: calls.append(name) or len(calls))
    assert calls == ["a", "b", "peak", "a", "b", "peak"]
    assert runs == {"a": [1, 4], "b": [2, 5], "peak": [3, 6]}


def test_step_timer_counts_steps_between_first_and_last_mark():
    timer = bench_train.StepTimer()
    timer.marks = [(0, 10.0), (1, 12.0), (3, 16.0)]  # steps 0..3 end at these times
    assert timer.steps_per_second() == pytest.approx(3 / 6.0)


def test_settings_to_measure_measures_default_as_on():
    assert bench_train.settings_to_measure(["default", "on", "off"]) == ["on", "off"]
    assert bench_train.settings_to_measure(["default", "off"]) == ["default", "off"]
    assert bench_train.settings_to_measure(["off"]) == ["off"]


def test_merged_rows_keep_other_settings_and_refuse_another_setup(tmp_path):
    setup = {"model": "small"}
    old = [{"precision": "float32", "xla": "off", "v": 1},
           {"precision": "mixed_bfloat16", "xla": "off", "v": 2}]
    (tmp_path / "bench_train.json").write_text(json.dumps({"setup": setup, "rows": old}))
    new = [{"precision": "float32", "xla": "off", "v": 3},
           {"precision": "float32", "xla": "on", "v": 4}]
    merged = bench_train.merged_rows(str(tmp_path / "bench_train.json"), setup, new)
    assert [(r["precision"], r["xla"], r["v"]) for r in merged] == [
        ("float32", "on", 4), ("float32", "off", 3), ("mixed_bfloat16", "off", 2)]
    with pytest.raises(SystemExit, match="another setup"):
        bench_train.merged_rows(str(tmp_path / "bench_train.json"), {"model": "base"}, new)


def test_write_results_writes_both_files_whole(tmp_path):
    paths = common.write_results(str(tmp_path / "out"), "x", {"a": 1}, "| a |")
    assert [os.path.basename(p) for p in paths] == ["x.json", "x.md"]
    assert json.loads(open(paths[0]).read()) == {"a": 1}
    assert open(paths[1]).read() == "| a |\n"
    assert sorted(os.listdir(tmp_path / "out")) == ["x.json", "x.md"]


def test_markdown_table():
    assert common.markdown_table(["a", "b"], [[1, "x"], [2.5, None]]) == (
        "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |")


def test_quick_runs_never_write_into_the_published_results():
    parser = common.benchmark_parser("Speed.", "Few steps.", "Results.")
    results = os.path.join(ROOT, "benchmarks", "results")
    assert parser.parse_args([]).output_dir == results
    quick = parser.parse_args(["--quick"]).output_dir
    assert quick == os.path.join(ROOT, "runs", "benchmarks-quick")
    assert parser.parse_args(["--quick", "--output_dir", "x"]).output_dir == "x"
    # runs/ is ignored by git, so a quick run leaves the clone clean.
    with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as f:
        assert "/runs/" in f.read().splitlines()


def test_ratio_of_nothing_is_none():
    assert common.ratio(3, 2) == 1.5 and common.ratio(3, 0) is None


# --- pretraining against random initialisation ----------------------------------------------------

def test_eval_pretraining_fine_tunes_both_arms_and_reports_the_dev_chosen_gain(tmp_path):
    """Both arms fine-tuned on the same small labelled files with the same grid; each arm's
    reported setting is the learning rate of its best dev accuracy (recomputed here from the
    per-run records) and the gain is the difference of their test accuracies."""
    import keras_bert_min as kbm
    from tests.fixtures import SPECIAL_TOKENS, tiny_config, write_vocab_file

    words = sorted({w.strip(".,").lower() for s in SENTENCES for w in s.split()})
    write_vocab_file(tmp_path / "vocab.txt", SPECIAL_TOKENS + [".", ","] + words)
    preprocessor = kbm.BertPreprocessor(str(tmp_path / "vocab.txt"), 16, True)
    pretrained = tmp_path / "pretrained"
    kbm.save_pretrained(kbm.bert_pretrainer(tiny_config(preprocessor.vocab_size)), pretrained,
                        preprocessor)
    for split, count in (("train", 32), ("dev", 16), ("test", 16)):
        rows = [f"{SENTENCES[i % len(SENTENCES)]}\t{i % 2}" for i in range(count)]
        (tmp_path / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    results = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "eval_pretraining.py"), "--pretrained",
         str(pretrained), "--learning_rates", "1e-3", "1e-2", "--seeds", "1", "--epochs", "1",
         "--seq_length", "16", "--batch_size", "8", "--work_dir", str(tmp_path / "runs"),
         "--output_dir",
         str(results), "--", "--train", str(tmp_path / "train.tsv"), "--dev",
         str(tmp_path / "dev.tsv"), "--test", str(tmp_path / "test.tsv")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode in (0, 1), completed.stderr[-3000:]  # 1: the target is missed
    result = json.loads((results / "eval_pretraining.json").read_text())
    for arm in ("pretrained", "random init"):
        runs = result["runs"][arm]
        assert sorted(r["learning_rate"] for r in runs) == [1e-3, 1e-2]
        best = max(runs, key=lambda r: r["dev_accuracy"])
        assert result["best"][arm]["learning_rate"] == best["learning_rate"]
        assert result["best"][arm]["test_accuracy"] == best["test_accuracy"]
    gain = 100 * (result["best"]["pretrained"]["test_accuracy"]
                  - result["best"]["random init"]["test_accuracy"])
    assert result["gain_points"] == round(gain, 2)
    assert completed.returncode == (0 if gain >= 3 else 1)
    markdown = (results / "eval_pretraining.md").read_text()
    assert "| pretrained |" in markdown and "| random init |" in markdown
    # The random arm starts from other weights than the pretrained directory's.
    random_model, _ = kbm.from_pretrained(tmp_path / "runs" / "random_init-1")
    original, _ = kbm.from_pretrained(pretrained)
    assert not np.array_equal(random_model.encoder.weights[0], original.encoder.weights[0])


def test_eval_pretraining_train_examples_is_a_seeded_subset_of_the_reviews(tmp_path):
    """--train_examples: the same seeded subset of the movie reviews' train file for both
    arms, header kept, dev and test files unchanged."""
    import eval_pretraining

    from keras_bert_min.corpora import fetch_movie_reviews

    paths = fetch_movie_reviews()
    args = eval_pretraining.training_subset(500, 0, str(tmp_path))
    again = eval_pretraining.training_subset(500, 0, str(tmp_path / "again"))
    assert args[2:] == ["--dev", paths["dev"], "--test", paths["test"]]
    with open(paths["train"], encoding="utf-8") as f:
        header, *all_rows = f.readlines()
    with open(args[1], encoding="utf-8") as f:
        subset = f.readlines()
    with open(again[1], encoding="utf-8") as f:
        assert f.readlines() == subset
    assert subset[0] == header and len(subset) == 501
    assert set(subset[1:]) <= set(all_rows)
    with pytest.raises(SystemExit, match="--train_examples must be 1 to 8451"):
        eval_pretraining.training_subset(0, 0, str(tmp_path))
