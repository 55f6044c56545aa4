"""Pretrain BERT (masked LM + next sentence) with model.fit under a tf.distribute strategy.

With no arguments it runs the embedded default (benchmarks/results/pretrain_tuning.md says why):
fetch 18 Gutenberg books, learn an 8k WordPiece vocab, pretrain BERT-tiny without dropout for
1,600 steps of 128 x 32 tokens, report held-out MLM and NSP accuracy, ask the fill-mask probes,
export a SavedModel and draw the loss curve, all under --output_dir.

    python recipes/pretrain.py                                   # the default run
    python recipes/pretrain.py --corpus 'wiki/*.txt' --config base --seq_length 128 \\
        --batch_size 256 --steps 900000 --strategy mirrored --precision mixed_bfloat16
    python recipes/pretrain.py --tfrecords 'data/*.tfrecord' ...  # Google's static examples
    python recipes/pretrain.py --init_checkpoint runs/phase1 --seq_length 512 ...  # phase 2

A killed run resumes from its last backup when re-run; a finished run is never overwritten.
"""

import math
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

DONE_FILE = "run_summary.json"
DATA_DIR = "data"  # the shards of a corpus over --shard_mb, removed once the run is done
DEFAULT_STEPS = 1600


def build_parser():
    parser = _flags.parser(__doc__)
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--corpus", nargs="+", help="Text files or globs, BERT format or prose. "
                        "Default: the Gutenberg books, fetched.")
    source.add_argument("--tfrecords", nargs="+", help="Google's pretraining TFRecords instead "
                        "of --corpus; needs --vocab.")
    data.add_argument("--vocab", help="vocab.txt; default: learned from the corpus.")
    data.add_argument("--vocab_size", type=int, default=8000, help="Size of a learned vocab.")
    data.add_argument("--cased", action="store_true", help="Keep case and accents.")
    data.add_argument("--seq_length", type=int, default=32, help="Tokens per example (Google: "
                      "128, then 512 in phase 2; short runs learn context sooner at 32).")
    data.add_argument("--max_predictions_per_seq", type=int, default=5, help="Masked positions "
                      "per example (15%%; Google: 20 at 128).")
    data.add_argument("--masking", choices=["dynamic", "static"], default="dynamic",
                      help="dynamic: drawn for every batch in tf.data; static: Google's, once "
                           "per --dupe_factor copy. Both a pure function of --seed.")
    data.add_argument("--whole_word_mask", action="store_true", help="Mask words with their ##s.")
    data.add_argument("--no_nsp", action="store_true", help="MLM only, on contiguous segments.")
    data.add_argument("--dupe_factor", type=int, default=2,
                      help="Passes over the corpus when pairing sentences.")
    data.add_argument("--heldout_fraction", type=float, default=0.02, help="Documents held out.")
    data.add_argument("--shard_mb", type=float, default=_flags.DEFAULT_SHARD_MB,
                      help="A corpus over this many MB of text is paired in shards of it, "
                           "written under --output_dir/data: memory stays bounded.")
    model = parser.add_argument_group("model")
    model.add_argument("--config", default="tiny", help="A preset (tiny, mini, small, medium, "
                       "base, large, bert_L-<l>_H-<h>) or a bert_config.json.")
    model.add_argument("--dropout", type=lambda v: None if v == "config" else float(v),
                       default=0.0, help="Dropout while pretraining (Google: 0.1; short runs "
                       "learn faster without, as Cramming found); 'config': the config's.")
    model.add_argument("--init_checkpoint", help="Start from an earlier run directory (phase 2 "
                       "at a longer --seq_length), a .keras file or a TF1 checkpoint prefix.")
    train = parser.add_argument_group("training")
    train.add_argument("--batch_size", type=int, default=128, help="Global batch of a step.")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1,
                       help="Split each batch into N micro-batches, gradients averaged.")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help=f"Optimizer steps (default {DEFAULT_STEPS}).")
    length.add_argument("--epochs", type=float, help="Passes over the examples, not --steps.")
    train.add_argument("--learning_rate", type=float, default=2e-3, help="Peak learning rate "
                       "(Google: 1e-4 for BERT-base; small models take more).")
    train.add_argument("--warmup_steps", type=int, help="Default: 10%% of --steps.")
    train.add_argument("--optimizer", choices=["adamw", "lamb"], default="adamw",
                       help="adamw (Google's AdamWeightDecay) or lamb (for large batches).")
    train.add_argument("--steps_per_loop", type=int, default=100,
                       help="Steps between backups and logs (one Keras epoch).")
    train.add_argument("--checkpoint_every", type=int, default=5, help="Encoder every N loops.")
    _flags.add_device_arguments(train)
    train.add_argument("--seed", type=int, default=12345,
                       help="Seed of the data, the masks, dropout and initialization.")
    train.add_argument("--deterministic", action="store_true", help="TF's deterministic ops: "
                       "a resumed run ends with exactly an uninterrupted one's weights.")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output_dir", default="runs/pretrain", help="Where everything goes.")
    out.add_argument("--no_export", action="store_true", help="Skip the SavedModel export.")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_bert_min as kbm  # noqa: E402
from keras_bert_min import (backup, callbacks, cli, corpora, distribute,  # noqa: E402
                            pretrained, reporting, training)
from keras_bert_min._checks import (check_fraction, check_int, check_positive,  # noqa: E402
                                    directory_lock, stop_point, write_json)
from keras_bert_min.text import pretraining, vocab  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Every argument error, before any data is read or any training starts."""
    if args.tfrecords and not args.vocab:
        raise ValueError("--tfrecords needs the --vocab the records were made with.")
    minimum = {"seq_length": pretraining.MIN_SEQ_LENGTH, "warmup_steps": 0}
    for name in ("steps", "batch_size", "seq_length", "max_predictions_per_seq", "steps_per_loop",
                 "vocab_size", "dupe_factor", "checkpoint_every", "warmup_steps",
                 "gradient_accumulation_steps"):
        if getattr(args, name) is not None:
            check_int(f"--{name}", getattr(args, name), minimum.get(name, 1))
    check_positive("--learning_rate", args.learning_rate)
    check_positive("--shard_mb", args.shard_mb)
    check_int("--max_predictions_per_seq", args.max_predictions_per_seq, 1, args.seq_length - 2,
              hint=" (tokens of --seq_length other than [CLS] and [SEP])")
    if args.batch_size % args.gradient_accumulation_steps:
        raise ValueError(f"--batch_size {args.batch_size} must split into "
                         f"--gradient_accumulation_steps {args.gradient_accumulation_steps} "
                         "equal micro-batches; pass a multiple of it.")
    args.dropout is None or check_fraction("--dropout", args.dropout, high_open=True)
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"--epochs must be a number above 0, got {args.epochs!r}.")
    if check_fraction("--heldout_fraction", args.heldout_fraction, low_open=True) >= 0.5:
        raise ValueError(f"--heldout_fraction must be in (0, 0.5), got {args.heldout_fraction!r}.")
    path = args.init_checkpoint and training.init_checkpoint_path(args.init_checkpoint)
    if path and not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise FileNotFoundError(f"--init_checkpoint {path} does not exist.")
    if path and not args.vocab:  # phase 2 must keep phase 1's token ids
        args.vocab = os.path.join(args.init_checkpoint, pretrained.VOCAB_FILE)
        if not os.path.isfile(args.vocab):
            raise ValueError(f"--init_checkpoint {args.init_checkpoint} has no "
                             f"{pretrained.VOCAB_FILE} beside it; pass the --vocab it was "
                             "trained with.")
    if args.vocab and not os.path.isfile(args.vocab):
        raise FileNotFoundError(f"--vocab {args.vocab} is not a file.")
    config = bert_config(args, len(vocab.read_vocab(args.vocab)) if args.vocab else None)
    if args.warmup_steps is not None and args.epochs is None:  # else the length needs the data
        steps = run_length(args, None)[2]
        if args.warmup_steps > steps:
            raise ValueError(f"--warmup_steps {args.warmup_steps} is over the run's {steps} "
                             "steps; lower it, or raise --steps.")
    if path:  # names and shapes, on a throwaway model: seconds, not the data's minutes
        training.check_init_checkpoint(config, args.init_checkpoint)


def bert_config(args, vocab_size):
    """The config the run trains, for a vocab of `vocab_size` (None: not learned yet)."""
    try:
        return training.pretraining_config(args.config, vocab_size, seq_length=args.seq_length,
                                           dropout=args.dropout)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"--config {args.config}: {e}") from None


def load_data(args, strategy):
    """A `training.PretrainingData`; a vocab learned goes in --output_dir."""
    if args.tfrecords:
        preprocessor = kbm.BertPreprocessor(args.vocab, args.seq_length, not args.cased)
        return training.PretrainingData(preprocessor, None, None, None, None)
    workers, worker = distribute.input_pipeline(strategy)
    data = training.pretraining_data(
        args.corpus or corpora.fetch_gutenberg(),
        args.vocab or os.path.join(args.output_dir, pretrained.VOCAB_FILE),
        shards_dir=os.path.join(args.output_dir, DATA_DIR, f"worker-{worker}"),
        shard_mb=args.shard_mb, worker=worker, num_workers=workers,
        heldout_fraction=args.heldout_fraction, vocab_size=args.vocab_size,
        lower_case=not args.cased, seq_length=args.seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq, dupe_factor=args.dupe_factor,
        static_masking=args.masking == "static", seed=args.seed,
        whole_word_mask=args.whole_word_mask, next_sentence=not args.no_nsp)
    if data.examples < args.batch_size:
        raise ValueError(f"the corpus gives {data.examples} examples, fewer than one batch of "
                         f"{args.batch_size}; add text or lower --batch_size.")
    return data


def run_length(args, examples):
    """(steps per loop, loops, steps): --steps, --epochs over the examples or the default,
    rounded up to whole loops."""
    if args.steps is None:
        args.steps = (max(1, int(args.epochs * examples / args.batch_size))
                      if args.epochs is not None and examples is not None else DEFAULT_STEPS)
    steps_per_loop = min(args.steps_per_loop, args.steps)
    loops = math.ceil(args.steps / steps_per_loop)
    return steps_per_loop, loops, loops * steps_per_loop


def build_pretrainer(args, strategy, vocab_size, total_steps):
    """The compiled pretrainer, built under `strategy.scope()`, from --init_checkpoint if given."""
    config = bert_config(args, vocab_size)
    warmup = total_steps // 10 if args.warmup_steps is None else args.warmup_steps
    with strategy.scope():
        optimizer = kbm.create_optimizer(
            args.learning_rate, total_steps, warmup, optimizer=args.optimizer,
            gradient_accumulation_steps=args.gradient_accumulation_steps)
        pretrainer, loaded = training.build_pretrainer(
            config, optimizer, init_checkpoint=args.init_checkpoint,
            next_sentence=not args.no_nsp, jit_compile=args.jit_compile)
    if loaded:
        print(f"Initialised from {args.init_checkpoint}: {loaded}")
    return pretrainer


def main(argv=None):
    args = parse_args(argv)
    if cli.finished_run(args.output_dir, DONE_FILE):
        backup.remove_backups(args.output_dir)  # left if the run was killed after its summary
        shutil.rmtree(os.path.join(args.output_dir, DATA_DIR), ignore_errors=True)
        print(cli.finished_run(args.output_dir, DONE_FILE))
        return 0
    strategy = distribute.get_strategy(args.strategy, args.tpu)  # first: see its docstring
    worker = distribute.worker_index(strategy)
    with directory_lock(args.output_dir, f".lock-worker-{worker}"):  # one run per directory
        return train(args, strategy, worker, started=time.time())


def train(args, strategy, worker, started):
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(args.seed)
    args.precision = distribute.set_precision(args.precision, strategy)
    micro = args.gradient_accumulation_steps  # batches per optimizer step
    per_replica_batch = distribute.per_replica_batch_size(args.batch_size // micro, strategy)
    data = load_data(args, strategy)
    preprocessor, heldout_documents = data.preprocessor, data.heldout_documents
    steps_per_loop, loops, steps = run_length(args, data.examples)
    pretrainer = build_pretrainer(args, strategy, preprocessor.vocab_size, steps)
    resumed = backup.completed_epochs(backup.backup_directory(args.output_dir, worker))
    if resumed:
        print(f"Resuming from the backup at step {resumed * steps_per_loop}.")
    dataset = strategy.distribute_datasets_from_function(training.pretraining_input_fn(
        per_replica_batch, args.seq_length, args.max_predictions_per_seq,
        instances=data.instances, shard_files=data.shard_files,
        special_ids=pretraining.SpecialTokenIds.from_preprocessor(preprocessor),
        static_masking=args.masking == "static", tfrecords=args.tfrecords, seed=args.seed,
        skip_batches=resumed * steps_per_loop * micro, whole_word_mask=args.whole_word_mask))
    # Held-out metrics at step 0 (fit restores a resumed run later) and at the end, on all workers.
    heldout, results = None, []
    if heldout_documents:
        heldout = training.heldout_dataset(heldout_documents, preprocessor, args.batch_size,
                                           args.seq_length, args.max_predictions_per_seq,
                                           args.seed + 1, args.whole_word_mask, not args.no_nsp)
        results.append(training.heldout_metrics(pretrainer, heldout, 0))
    print(f"Training {args.config} BERT for {steps} steps of {args.batch_size} x {args.seq_length} "
          f"tokens on {strategy.num_replicas_in_sync} replica(s) ({args.precision}).", flush=True)
    chief = distribute.is_chief(strategy)
    pretrainer.fit(dataset, epochs=loops, steps_per_epoch=steps_per_loop * micro, shuffle=False,
                   callbacks=callbacks.pretraining_callbacks(
                       args.output_dir, steps_per_loop, args.checkpoint_every, worker, chief,
                       total_steps=steps, resumed_epochs=resumed), verbose=0)
    stop_point("pretrain:after_last_loop")
    if heldout is not None:
        results.append(training.heldout_metrics(pretrainer, heldout, steps))
    if not chief:  # keeps its final model apart, so a run can check the workers agree
        kbm.save_pretrained(pretrainer, os.path.join(args.output_dir, f"workers/worker-{worker}"),
                            overwrite=True)
        shutil.rmtree(os.path.join(args.output_dir, DATA_DIR, f"worker-{worker}"),
                      ignore_errors=True)
        return 0
    save_outputs(args, pretrainer, preprocessor, heldout_documents, results, steps, started)
    return 0


def save_outputs(args, pretrainer, preprocessor, heldout_documents, results, steps, started):
    """The chief's outputs, the run summary last, and where they went."""
    out = args.output_dir
    summary = {"steps": steps, "config": pretrainer.bert_config.to_dict(), "args": vars(args)}
    kbm.save_pretrained(pretrainer, out, preprocessor, overwrite=True)  # beside the logs
    if pretrainer.bert_config.fits_google_format:  # Google's JSON can say the activation
        kbm.save_pretrained(pretrainer, f"{out}/google", preprocessor, "google", overwrite=True)
    if results:
        summary.update(reporting.heldout_report(out, pretrainer, preprocessor, results,
                                                max(heldout_documents[0][:5], key=len), args.seed))
        print(summary["fill_mask"])
    if not args.no_export:  # the encoder, on token ids or raw text, in TF Serving's layout
        shutil.rmtree(os.path.join(out, "export"), ignore_errors=True)  # a killed run's, if any
        summary["export"] = kbm.export_saved_model(pretrainer.encoder, os.path.join(out, "export"),
                                                   preprocessor=preprocessor)
    summary["seconds"] = round(time.time() - started, 1)
    stop_point("pretrain:before_summary")
    write_json(os.path.join(out, DONE_FILE), summary, default=str)
    backup.remove_backups(out)  # kept until now, so a kill above resumes here, not at step 0
    shutil.rmtree(os.path.join(out, DATA_DIR), ignore_errors=True)  # the shards, likewise
    print(f"\nFinished {steps} steps in {summary['seconds']:.0f} s.",
          *reporting.heldout_lines(results), sep="\n")
    written = ["model.keras", "google/", "vocab.txt", "checkpoints/", "logs/", "history.csv",
               "loss_curve.png", "heldout_metrics.json", "export/", DONE_FILE]
    print(f"Outputs in {os.path.abspath(out)}: " + ", ".join(  # only what this run wrote
        name for name in written if os.path.exists(os.path.join(out, name))))


if __name__ == "__main__":
    sys.exit(cli.run(main))
