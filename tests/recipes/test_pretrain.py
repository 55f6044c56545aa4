"""recipes/pretrain.py end to end, in subprocesses: outputs, resume after SIGKILL, two workers."""

import csv
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import keras

import keras_bert_min as kbm
from keras_bert_min._checks import STOP_AT_ENV, directory_lock
from tests.helpers import free_ports
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
RESUMABLE = ["--steps", "80", "--steps_per_loop", "10", "--deterministic", "--checkpoint_every",
             "100"]


def killed_at(point, corpus, vocab, out, *extra):
    """Runs the recipe with the test hook that SIGKILLs it at `point` (_checks.stop_point)."""
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, *extra), check=False,
                        env={STOP_AT_ENV: point})
    assert result.returncode == -signal.SIGKILL, (point, result.stdout[-2000:],
                                                  result.stderr[-3000:])
    assert not (out / "run_summary.json").exists()
    return result


def history_steps(out):
    with open(out / "history.csv", encoding="utf-8") as f:
        return [float(row["step"]) for row in csv.DictReader(f)]


def test_static_masks_resume_exactly_after_a_kill_inside_a_backup(small_corpus, tmp_path):
    """SIGKILL while the third backup is being written (complete but not yet renamed into
    place), restart: the run resumes from the second and ends bit-identical to an uninterrupted
    one. No tolerance is needed: the masks (drawn once in Python here, in tf.data by default)
    are a pure function of the seed and the batch's place in the run, --deterministic enables
    TF's deterministic ops, the backup holds weights, optimizer state and the dropout
    generators' state, and the resumed pipeline skips the batches already trained on."""
    corpus, vocab = small_corpus
    extra = [*RESUMABLE, "--no_export", "--masking", "static"]
    reference = tmp_path / "uninterrupted"
    run_recipe("pretrain.py", recipe_args(corpus, vocab, reference, *extra))
    out = tmp_path / "killed"
    killed_at("backup:complete_not_renamed@3", corpus, vocab, out, *extra)
    assert sorted(os.listdir(out / "backup" / "worker-0")) == [
        "epoch-1", "epoch-2", "epoch-3.partial"]
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, *extra))
    assert "Resuming from the backup at step 20." in result.stdout
    listed = result.stdout.split("Outputs in ")[1].split(": ", 1)[1].split("\n")[0].split(", ")
    assert "export/" not in listed and "run_summary.json" in listed  # --no_export: not listed
    for resumed, uninterrupted in zip(final_weights(out), final_weights(reference)):
        np.testing.assert_array_equal(resumed, uninterrupted)
    assert history_steps(out) == history_steps(reference) == [10.0 * i for i in range(1, 9)]


def test_a_corpus_over_shard_mb_is_paired_in_shards_and_resumes_exactly(small_corpus, tmp_path):
    """The small corpus (about 120 KB) over --shard_mb 0.03: paired in shards written under
    data/, which a kill in the data stage leaves half written and a kill in training leaves in
    place; the twice-killed run ends bit-identical to an uninterrupted one, and the shards go
    once the run is done."""
    corpus, vocab = small_corpus
    extra = [*RESUMABLE, "--no_export", "--shard_mb", "0.03"]
    reference = tmp_path / "uninterrupted"
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, reference, *extra))
    found = re.search(r"(\d+) shard\(s\) of (\d+) examples in (\S+)worker-0", result.stdout)
    assert found and int(found.group(1)) >= 3, result.stdout[-3000:]
    out = tmp_path / "killed"
    killed_at("shards:written@2", corpus, vocab, out, *extra)
    assert len(list((out / "data" / "worker-0").glob("shard-*.tfrecord"))) == 2
    killed_at("backup:complete_not_renamed@3", corpus, vocab, out, *extra)
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, *extra))
    assert "Resuming from the backup at step 20." in result.stdout
    for resumed, uninterrupted in zip(final_weights(out), final_weights(reference)):
        np.testing.assert_array_equal(resumed, uninterrupted)
    assert history_steps(out) == history_steps(reference)
    assert not (out / "data").exists() and not (reference / "data").exists()


def test_a_run_killed_in_every_window_ends_as_an_uninterrupted_one(small_corpus, tmp_path):
    """One run killed five times, each time inside another window where a write is half done:
    while the second backup's state is written, with that backup complete but not renamed,
    after the last loop, while the SavedModel is exported and just before the run summary.
    Every re-run resumes from the last complete backup; the last ends with the uninterrupted
    run's weights, each step once in history.csv, one export version and no backup left. All
    with the pretraining options on (MLM only, whole-word masks, gradient accumulation)."""
    corpus, vocab = small_corpus
    extra = [*RESUMABLE, *OPTIONS]
    reference = tmp_path / "uninterrupted"
    run_recipe("pretrain.py", recipe_args(corpus, vocab, reference, *extra))
    out = tmp_path / "killed"
    resumed_at = []
    for point in ("backup:state_written@2", "backup:complete_not_renamed@2",
                  "pretrain:after_last_loop", "export:written_not_renamed",
                  "pretrain:before_summary"):
        result = killed_at(point, corpus, vocab, out, *extra)
        resumed_at.append(re.findall(r"Resuming from the backup at step (\d+)\.", result.stdout))
    # Killed in the 2nd backup (1 complete); then from step 10 in the 2nd after it (step 30 not
    # renamed, 20 complete); from then on the backup of the last step is kept until the end.
    assert resumed_at == [[], ["10"], ["20"], ["80"], ["80"]]
    assert sorted(os.listdir(out / "export")) == ["1"]  # run 5's: it was killed after exporting
    result = run_recipe("pretrain.py", recipe_args(corpus, vocab, out, *extra))
    assert "Resuming from the backup at step 80." in result.stdout
    assert json.loads((out / "run_summary.json").read_text())["steps"] == 80
    for resumed, uninterrupted in zip(final_weights(out), final_weights(reference)):
        np.testing.assert_array_equal(resumed, uninterrupted)
    assert history_steps(out) == history_steps(reference) == [10.0 * i for i in range(1, 9)]
    assert sorted(os.listdir(out / "export")) == ["1"] and not (out / "backup").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    # An MLM-only run: no NSP metrics anywhere, and it loads as a pretrainer.
    heldout = json.loads((out / "heldout_metrics.json").read_text())
    assert heldout[-1]["mlm_logits_accuracy"] > 0 and "nsp_logits_accuracy" not in heldout[-1]
    assert isinstance(kbm.from_pretrained(out)[0], kbm.BertPretrainer)


def test_a_second_run_on_a_busy_output_dir_is_refused_at_once(small_corpus, tmp_path, capsys,
                                                              monkeypatch):
    import recipes.pretrain as recipe

    corpus, vocab = small_corpus
    monkeypatch.setattr(recipe, "load_data", lambda args: pytest.fail("the data was read"))
    with directory_lock(tmp_path / "busy", ".lock-worker-0"):  # as a running recipe holds it
        message = recipe_error(capsys, recipe.main, recipe_args(corpus, vocab, tmp_path / "busy"))
    assert re.fullmatch(rf"{tmp_path}/busy is in use by another run \(pid {os.getpid()} on .*\); "
                        r"wait for it to finish, or pass another --output_dir\.", message)


def test_two_workers_train_together(small_corpus, tmp_path):
    from keras_bert_min.distribute import tf_config_for_local_workers

    corpus, vocab = small_corpus
    out = tmp_path / "multi"
    ports = free_ports(2)
    args = [sys.executable, os.path.join(REPO, "recipes", "pretrain.py"),
            *recipe_args(corpus, vocab, out, "--steps", "20", "--steps_per_loop", "10",
                         "--strategy", "multi_worker", "--no_export", "--shard_mb", "0.03")]
    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ,
                                                "TF_CONFIG": tf_config_for_local_workers(ports, i)})
               for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]
    assert "on 2 replica(s)" in outputs[0]
    # Over --shard_mb, each worker paired and reads only its own shards: 0, 2, ... and 1, 3, ...
    for index, output in enumerate(outputs):
        assert re.search(rf"shard\(s\) of \d+ examples in \S+/data/worker-{index}\.",
                         output), output
    chief = final_weights(out)
    other = [np.asarray(w) for w in keras.saving.load_model(
        str(out / "workers" / "worker-1" / "model.keras")).weights]
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    # Only the chief wrote the shared outputs; its checkpoint loads.
    assert (out / "run_summary.json").exists() and (out / "logs").exists()
    fresh = kbm.bert_pretrainer(keras.saving.load_model(str(out / "model.keras")).bert_config)
    kbm.load_google_checkpoint(fresh, str(out / "google" / "bert_model.ckpt"))


def test_sigterm_stops_a_multi_worker_run(small_corpus, tmp_path):
    # TF's preemption notifier takes SIGTERM while the strategy is made and only records it;
    # the recipe gives it back, so a scheduler's SIGTERM stops a worker (which resumes later).
    import threading
    from keras_bert_min.distribute import tf_config_for_local_workers

    corpus, vocab = small_corpus
    ports = free_ports(2)
    args = [sys.executable, os.path.join(REPO, "recipes", "pretrain.py"),
            *recipe_args(corpus, vocab, tmp_path / "multi", "--steps", "100000", "--strategy",
                         "multi_worker", "--no_export")]
    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ,
                                                "TF_CONFIG": tf_config_for_local_workers(ports, i)})
               for i in range(2)]
    watchdog = threading.Timer(600, lambda: [w.kill() for w in workers])
    watchdog.start()
    try:
        seen = []
        for line in workers[0].stdout:  # until the run trains
            seen.append(line)
            if line.startswith("Training "):
                break
        assert seen and seen[-1].startswith("Training "), "".join(seen)[-3000:]
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(timeout=120) == -signal.SIGTERM
    finally:
        watchdog.cancel()
        for worker in workers:
            worker.kill()
            worker.communicate()


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be an integer of at least 1"),
    (["--strategy", "mirrored", "--batch_size", "3"], "must be a positive multiple of the number "
                                                       "of replicas \\(2\\)"),
    (["--config", "enormous"], "Unknown BERT preset 'enormous'"),
    (["--config", "/nonexistent/bert_config.json"], "--config /nonexistent/bert_config.json: "
     "/nonexistent/bert_config.json does not exist; pass an existing config JSON file or a preset"),
    (["--config", "{tmp}/vocab999.json"], "has vocab_size 999 but the vocab has \\d+ tokens"),
    (["--seq_length", "600"], "seq_length 600 is over the config's max_position_embeddings "
                              "\\(512\\)"),
    (["--warmup_steps", "100", "--steps", "50"], "--warmup_steps 100 is over the run's 50 steps"),
    (["--init_checkpoint", "{tmp}/other.keras"], "The init checkpoint .*other.keras: .* was "
                                                 "trained with config"),
    (["--gradient_accumulation_steps", "3"], "--batch_size 8 must split into "
                                             "--gradient_accumulation_steps 3 equal"),
    (["--dropout", "1"], r"--dropout must be in \[0, 1\), got 1.0"),
    (["--learning_rate", "-0.001"], "--learning_rate must be a number above 0, got -0.001"),
    (["--max_predictions_per_seq", "40"], r"--max_predictions_per_seq must be an integer in "
                                          r"\[1, 30\] \(tokens of --seq_length other than"),
])
def test_every_bad_argument_fails_before_the_data_is_read(small_corpus, tmp_path, capsys,
                                                          monkeypatch, extra, message):
    """Config, vocab, sequence length, warmup and init checkpoint are all checked before the
    corpus is read (reading it is what takes minutes on a large corpus)."""
    import recipes.pretrain as recipe  # in-process: the two logical CPUs of conftest exist here

    corpus, vocab = small_corpus
    vocab_size = len(open(vocab, encoding="utf-8").read().splitlines())
    kbm.BertConfig.from_preset("tiny", vocab_size=999).to_json_file(tmp_path / "vocab999.json")
    kbm.bert_pretrainer(kbm.BertConfig.from_preset("mini", vocab_size=vocab_size)).save(
        str(tmp_path / "other.keras"))
    monkeypatch.setattr(recipe, "load_data", lambda args: pytest.fail("the data was read"))
    args = recipe_args(corpus, vocab, tmp_path / "bad")
    for flag, value in zip(extra[::2], extra[1::2]):
        value = value.format(tmp=tmp_path)
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert re.search(message, recipe_error(capsys, recipe.main, args))
    assert not (tmp_path / "bad" / "model.keras").exists()


def test_a_missing_corpus_is_named(small_corpus, tmp_path, capsys):
    import recipes.pretrain as recipe

    _, vocab = small_corpus
    assert "/nonexistent" in recipe_error(capsys, recipe.main, recipe_args(
        "/nonexistent/*.txt", vocab, tmp_path / "bad"))


def test_init_checkpoint_is_checked_with_the_arguments(tmp_path, capsys):
    import recipes.pretrain as recipe

    # A run directory stands for its model.keras, and brings its vocab.txt.
    assert recipe_error(capsys, recipe.parse_args, ["--init_checkpoint", str(tmp_path)]) \
        .startswith(f"--init_checkpoint {tmp_path}/model.keras does not")
    (tmp_path / "model.keras").write_bytes(b"")
    assert recipe_error(capsys, recipe.parse_args, ["--init_checkpoint", str(tmp_path)]) == (
        f"--init_checkpoint {tmp_path} has no vocab.txt beside it; pass the --vocab it was "
        "trained with.")
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
