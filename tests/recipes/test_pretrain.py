"""recipes/pretrain.py end to end, in subprocesses: outputs, resume after SIGKILL, two workers."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import keras

import keras_bert_min as kbm
from tests.recipes.conftest import REPO, recipe_error, run_recipe

SMALL = ["--config", "tiny", "--seq_length", "32", "--max_predictions_per_seq", "5",
         "--batch_size", "8", "--dupe_factor", "1", "--heldout_fraction", "0.1"]


def recipe_args(corpus, vocab, output_dir, *extra):
    return ["--corpus", corpus, "--vocab", vocab, "--output_dir", str(output_dir), *SMALL, *extra]


def final_weights(output_dir):
    return [np.asarray(w) for w in keras.saving.load_model(
        os.path.join(output_dir, "model.keras")).weights]


def test_end_to_end_on_a_real_book(small_corpus, tmp_path):
    corpus, vocab = small_corpus
    out = tmp_path / "run"
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, "--steps", "60",
                                                   "--steps_per_loop", "20",
                                                   "--checkpoint_every", "2"))
    summary = json.loads((out / "run_summary.json").read_text())
    heldout = summary["heldout"]
    assert [row["step"] for row in heldout] == [0, 60]
    assert heldout[1]["mlm_logits_loss"] < heldout[0]["mlm_logits_loss"]
    for name in ("model.keras", "vocab.txt", "config.json", "preprocessor.json", "history.csv",
                 "loss_curve.png", "heldout_metrics.json", "google/bert_model.ckpt.index",
                 "google/bert_config.json", "checkpoints/step-40/encoder.keras",
                 "checkpoints/step-40/bert_model.ckpt.index", "export/1/saved_model.pb"):
        assert (out / name).exists(), name
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard events"
    assert (out / "vocab.txt").read_bytes() == (out / "google" / "vocab.txt").read_bytes() \
        == open(vocab, "rb").read()
    assert json.loads((out / "preprocessor.json").read_text()) == {"seq_length": 32,
                                                                    "lower_case": True}
    assert not list(out.rglob("*.partial"))
    assert "[MASK] at" in result.stdout and "Outputs in" in result.stdout
    assert "Fill-mask probes (top-1 hits: " in result.stdout
    assert summary["probes"]["of"] == 8 and 0 <= summary["probes"]["hits"] <= 8
    # The Google-layout checkpoint loads into a fresh pretrainer with the same numbers.
    reloaded = keras.saving.load_model(str(out / "model.keras"))
    fresh = kbm.bert_pretrainer(reloaded.bert_config)
    kbm.load_google_checkpoint(fresh, str(out / "google" / "bert_model.ckpt"))
    for a, b in zip(fresh.weights, reloaded.weights):
        np.testing.assert_array_equal(a, b)
    # One call reads the run back: the pretrainer with its preprocessor, or a new task on it.
    loaded, preprocessor = kbm.from_pretrained(out)
    assert isinstance(loaded, kbm.BertPretrainer) and preprocessor.seq_length == 32
    classifier, _ = kbm.from_pretrained(out / "google", "classifier", num_classes=2)
    np.testing.assert_array_equal(classifier.encoder.get_layer("pooler").kernel,
                                  reloaded.encoder.get_layer("pooler").kernel)
    # Re-running the same command on a finished directory says so and changes nothing.
    mtime = (out / "model.keras").stat().st_mtime
    again = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, "--steps", "60"))
    assert "already holds a finished run" in again.stdout
    assert (out / "model.keras").stat().st_mtime == mtime

    # Phase 2 continues from phase 1 at a longer sequence length.
    phase2 = tmp_path / "phase2"
    args = recipe_args(corpus, vocab, phase2, "--steps", "10", "--no_export",
                       "--init_checkpoint", str(out))
    args[args.index("--seq_length") + 1] = "64"
    result = run_recipe("pretrain.py", args)
    assert "Initialised from" in result.stdout
    heldout = json.loads((phase2 / "heldout_metrics.json").read_text())
    # Starting from trained weights, phase 2's step-0 loss is far below a random init's.
    assert heldout[0]["mlm_logits_loss"] < json.loads(
        (out / "heldout_metrics.json").read_text())[0]["mlm_logits_loss"] - 0.5


# The pretraining options, all in one run: MLM only, whole-word masks, 2 micro-batches a step.
OPTIONS = ["--no_nsp", "--whole_word_mask", "--gradient_accumulation_steps", "2"]


@pytest.mark.parametrize("masking, options", [("dynamic", []), ("static", []),
                                              ("dynamic", OPTIONS)])
def test_killed_run_resumes_to_the_same_weights(small_corpus, tmp_path, masking, options):
    """SIGKILL after the second backup, restart: same step count and bit-identical final weights
    to an uninterrupted run. No tolerance is needed: the masks (drawn in tf.data, or once in
    Python) are a pure function of the seed and the batch's place in the run, --deterministic
    enables TF's deterministic ops, the backup holds weights, optimizer state (with gradient
    accumulation, at a loop's end the accumulators are empty) and the dropout generators'
    state, and the resumed pipeline skips the batches the killed run had already trained on."""
    corpus, vocab = small_corpus
    extra = ["--steps", "80", "--steps_per_loop", "10", "--deterministic", "--no_export",
             "--checkpoint_every", "100", "--masking", masking, *options]
    reference = tmp_path / "uninterrupted"
    run_recipe("pretrain.py", recipe_args(corpus, vocab, reference, *extra))

    out = tmp_path / "killed"
    metadata = out / "backup" / "worker-0" / "training_metadata.json"

    def backed_up_twice():
        # The moment Keras' metadata names the second backup: callbacks.BackupAndRestore wrote
        # that epoch's dropout-generator states before it, so any kill from here resumes exactly.
        return metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2

    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "recipes", "pretrain.py"),
         *recipe_args(corpus, vocab, out, *extra)], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if backed_up_twice():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "run_summary.json").exists()

    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, *extra))
    assert "Resuming from the backup at step" in result.stdout
    assert json.loads((out / "run_summary.json").read_text())["steps"] == 80
    for resumed, uninterrupted in zip(final_weights(out), final_weights(reference)):
        np.testing.assert_array_equal(resumed, uninterrupted)
    if options:  # an MLM-only run: no NSP metrics anywhere, and it loads as a pretrainer
        heldout = json.loads((out / "heldout_metrics.json").read_text())
        assert heldout[-1]["mlm_logits_accuracy"] > 0 and "nsp_logits_accuracy" not in heldout[-1]
        assert "nsp accuracy" not in result.stdout and "step 80/80 (100%)" in result.stdout
        assert isinstance(kbm.from_pretrained(out)[0], kbm.BertPretrainer)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_together(small_corpus, tmp_path):
    from keras_bert_min.distribute import tf_config_for_local_workers

    corpus, vocab = small_corpus
    out = tmp_path / "multi"
    ports = free_ports(2)
    args = [sys.executable, os.path.join(REPO, "recipes", "pretrain.py"),
            *recipe_args(corpus, vocab, out, "--steps", "20", "--steps_per_loop", "10",
                         "--strategy", "multi_worker", "--no_export")]
    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ,
                                                "TF_CONFIG": tf_config_for_local_workers(ports, i)})
               for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]
    assert "on 2 replica(s)" in outputs[0]
    chief = final_weights(out)
    other = [np.asarray(w) for w in keras.saving.load_model(
        str(out / "workers" / "worker-1" / "model.keras")).weights]
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    # Only the chief wrote the shared outputs; its checkpoint loads.
    assert (out / "run_summary.json").exists() and (out / "logs").exists()
    fresh = kbm.bert_pretrainer(keras.saving.load_model(str(out / "model.keras")).bert_config)
    kbm.load_google_checkpoint(fresh, str(out / "google" / "bert_model.ckpt"))


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be an integer of at least 1"),
    (["--corpus", "/nonexistent/*.txt"], "/nonexistent"),
    (["--strategy", "mirrored", "--batch_size", "3"], "must be a positive multiple of the number "
                                                       "of replicas \\(2\\)"),
    (["--config", "enormous"], "Unknown BERT preset 'enormous'"),
    (["--gradient_accumulation_steps", "3"], "--batch_size 8 must split into "
                                             "--gradient_accumulation_steps 3 equal"),
    (["--dropout", "1"], r"--dropout must be in \[0, 1\), got 1.0"),
])
def test_bad_input_fails_before_training(small_corpus, tmp_path, capsys, extra, message):
    import recipes.pretrain as recipe  # in-process: the two logical CPUs of conftest exist here

    corpus, vocab = small_corpus
    args = recipe_args(corpus, vocab, tmp_path / "bad")
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert re.search(message, recipe_error(capsys, recipe.main, args))
    assert not (tmp_path / "bad" / "model.keras").exists()


def test_init_checkpoint_is_checked_with_the_arguments(tmp_path, capsys):
    import recipes.pretrain as recipe

    # A run directory stands for its model.keras.
    assert recipe_error(capsys, recipe.parse_args, ["--init_checkpoint", str(tmp_path)]) \
        .startswith(f"--init_checkpoint {tmp_path}/model.keras does not")
    assert recipe_error(capsys, recipe.parse_args, [
        "--init_checkpoint", "/nonexistent/bert_model.ckpt"]).startswith(
        "--init_checkpoint /nonexistent/bert_model.ckpt does")


def test_corpus_too_small_for_one_batch(small_corpus, tmp_path, capsys):
    import recipes.pretrain as recipe

    _, vocab = small_corpus
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("".join(f"Document {i} starts here.\nIt ends here.\n\n" for i in range(6)))
    assert re.search("the corpus gives \\d+ examples, fewer than one batch", recipe_error(
        capsys, recipe.main, recipe_args(str(tiny), vocab, tmp_path / "out",
                                         "--heldout_fraction", "0.2")))


def test_init_checkpoint_from_another_config_is_refused(small_corpus, tmp_path, capsys):
    import recipes.pretrain as recipe

    corpus, vocab = small_corpus
    other = kbm.bert_pretrainer(kbm.BertConfig.from_preset(
        "mini", vocab_size=len(open(vocab, encoding="utf-8").read().splitlines())))
    other.save(str(tmp_path / "other.keras"))
    assert "was trained with config" in recipe_error(capsys, recipe.main, recipe_args(
        corpus, vocab, tmp_path / "out", "--init_checkpoint", str(tmp_path / "other.keras")))
