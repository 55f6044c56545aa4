"""Pretrain BERT (masked LM + next sentence) with model.fit under a tf.distribute strategy.

With no arguments it runs the embedded default: fetch 18 public-domain Gutenberg books, learn
an 8k WordPiece vocab, pretrain BERT-tiny (2 layers, hidden 128) for 1,500 steps of 64 x 64
tokens on CPU, report held-out MLM loss/accuracy and NSP accuracy, export a SavedModel, show a
fill-mask demo and draw the loss curve. Everything goes under --output_dir.

    python recipes/pretrain.py                                   # the default run
    python recipes/pretrain.py --corpus 'wiki/*.txt' --config base --seq_length 128 \\
        --batch_size 256 --steps 900000 --strategy mirrored --precision mixed_bfloat16
    python recipes/pretrain.py --tfrecords 'data/*.tfrecord' ...  # Google's static examples
    python recipes/pretrain.py --init_checkpoint runs/phase1 --seq_length 512 ...  # phase 2

Killed runs resume where their last backup was (re-run the same command); a finished output
directory is never overwritten.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_bert_min as kbm  # noqa: E402
from keras_bert_min import distribute, training  # noqa: E402
from keras_bert_min.export import export_saved_model  # noqa: E402
from keras_bert_min.text import corpus, masking, pretraining, tfrecords  # noqa: E402
from keras_bert_min.text import vocab as vocab_lib  # noqa: E402
from keras_bert_min.text.preprocessor import BertPreprocessor  # noqa: E402

DONE_FILE = "run_summary.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--corpus", nargs="+", default=None,
                      help="Text files or globs: BERT format (one sentence per line, blank line "
                           "between documents) or prose. Default: the Gutenberg books, fetched.")
    data.add_argument("--tfrecords", nargs="+", default=None,
                      help="Pretraining TFRecords (Google's create_pretraining_data.py layout) "
                           "instead of --corpus; needs --vocab.")
    data.add_argument("--vocab", default=None,
                      help="vocab.txt; learned from the corpus when absent and saved in the "
                           "output directory.")
    data.add_argument("--vocab_size", type=int, default=8000, help="Size of a learned vocab.")
    data.add_argument("--cased", action="store_true", help="Keep case and accents.")
    data.add_argument("--seq_length", type=int, default=64,
                      help="Tokens per example (Google: 128 in phase 1, 512 in phase 2).")
    data.add_argument("--max_predictions_per_seq", type=int, default=10,
                      help="Masked positions per example (Google: 20 at 128, 80 at 512).")
    data.add_argument("--masking", choices=["dynamic", "static"], default="dynamic",
                      help="dynamic: masks drawn afresh for every batch in tf.data; static: "
                           "Google's, drawn once in Python for --dupe_factor copies of the "
                           "data. Both are a pure function of --seed. (--tfrecords files "
                           "carry their own static masks.)")
    data.add_argument("--dupe_factor", type=int, default=2,
                      help="Passes over the corpus when pairing sentences (each with its own "
                           "masks under --masking static).")
    data.add_argument("--heldout_fraction", type=float, default=0.02,
                      help="Fraction of documents held out to report MLM and NSP metrics.")
    model = parser.add_argument_group("model")
    model.add_argument("--config", default="tiny",
                       help=f"A preset ({', '.join(['tiny', 'mini', 'small', 'medium', 'base', 'large'])}, "
                            "bert_L-<l>_H-<h>) or a bert_config.json; a preset takes the vocab's size.")
    model.add_argument("--init_checkpoint", default=None,
                       help="Start from these weights: an earlier output directory (phase 2 at a "
                            "longer --seq_length, as Google trained at 128 then 512), a .keras "
                            "file or a Google TF1 checkpoint prefix. The config must match.")
    train = parser.add_argument_group("training")
    train.add_argument("--batch_size", type=int, default=64, help="Global batch size.")
    train.add_argument("--steps", type=int, default=None,
                       help="Training steps (default: 1500, or --epochs over the data).")
    train.add_argument("--epochs", type=float, default=None,
                       help="Passes over the training examples, instead of --steps.")
    train.add_argument("--learning_rate", type=float, default=2e-3,
                       help="Peak learning rate (Google: 1e-4 for BERT-base at batch 256; small "
                            "models and short runs take more).")
    train.add_argument("--warmup_steps", type=int, default=None, help="Default: 10%% of --steps.")
    train.add_argument("--optimizer", choices=["adamw", "lamb"], default="adamw")
    train.add_argument("--steps_per_loop", type=int, default=100,
                       help="Steps between backups, logs and checkpoints (one Keras epoch).")
    train.add_argument("--checkpoint_every", type=int, default=5,
                       help="Save the encoder (Keras and Google layouts) every N loops.")
    train.add_argument("--strategy", choices=distribute.STRATEGIES, default="auto")
    train.add_argument("--tpu", default=None, help="TPU name or address for --strategy tpu.")
    train.add_argument("--precision", choices=distribute.PRECISIONS, default="float32")
    train.add_argument("--jit_compile", action="store_true", help="Compile steps with XLA.")
    train.add_argument("--seed", type=int, default=12345)
    train.add_argument("--deterministic", action="store_true",
                       help="TF's deterministic ops, so that a resumed run ends with exactly "
                            "the weights of an uninterrupted one (the data and the masks are "
                            "a pure function of --seed in any case).")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output_dir", default="runs/pretrain", help="Where everything goes.")
    out.add_argument("--no_export", action="store_true", help="Skip the SavedModel export.")
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args):
    """Every argument error, before any data is read or any training starts."""
    if args.steps is not None and args.steps <= 0:
        raise SystemExit(f"error: --steps must be positive, got {args.steps}.")
    if args.epochs is not None and args.epochs <= 0:
        raise SystemExit(f"error: --epochs must be positive, got {args.epochs}.")
    if args.steps is not None and args.epochs is not None:
        raise SystemExit("error: give --steps or --epochs, not both.")
    if args.corpus and args.tfrecords:
        raise SystemExit("error: give --corpus or --tfrecords, not both.")
    if args.tfrecords and not args.vocab:
        raise SystemExit("error: --tfrecords needs the --vocab the records were made with.")
    for name in ("batch_size", "seq_length", "max_predictions_per_seq", "steps_per_loop",
                 "vocab_size", "dupe_factor", "checkpoint_every"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name} must be positive, got {getattr(args, name)}.")
    if not 0 < args.heldout_fraction < 0.5:
        raise SystemExit(f"error: --heldout_fraction must be in (0, 0.5), got {args.heldout_fraction}.")
    if args.init_checkpoint:
        path = init_checkpoint_path(args.init_checkpoint)
        if not os.path.exists(path) and not os.path.exists(path + ".index"):
            raise SystemExit(f"error: --init_checkpoint {path} does not exist.")


# --- data ---------------------------------------------------------------------------------------

def prepare_vocab(args, train_documents):
    """The vocab file to use: --vocab, one learned earlier in this output dir, or a new one."""
    target = os.path.join(args.output_dir, "vocab.txt")
    if args.vocab:
        vocab_lib.read_vocab(args.vocab)  # validates, with a clear error
        if os.path.abspath(args.vocab) != os.path.abspath(target):
            shutil.copyfile(args.vocab, target)
        return target
    if os.path.exists(target):
        return target
    print(f"Learning a {args.vocab_size}-token WordPiece vocab from the corpus...", flush=True)
    texts = [sentence for document in train_documents for sentence in document]
    vocab_lib.write_vocab(vocab_lib.learn_vocab(texts, args.vocab_size, lower_case=not args.cased),
                          target)
    return target


def corpus_instances(args, preprocessor, documents, static_masking, seed, dupe_factor):
    tokenized = pretraining.tokenize_documents(documents, preprocessor)
    return pretraining.create_training_instances(
        tokenized, pretraining.PretrainingVocab.from_preprocessor(preprocessor),
        max_seq_length=args.seq_length, max_predictions_per_seq=args.max_predictions_per_seq,
        dupe_factor=dupe_factor, static_masking=static_masking, seed=seed)


def static_dataset(instances, args, batch_size, input_context=None, train=False):
    """Examples whose masks were drawn in Python (Google's static masking) as a dataset: the
    held-out set, and the training set under --masking static."""
    features = [pretraining.instance_to_features(i, args.seq_length, args.max_predictions_per_seq)
                for i in instances]
    stacked = {k: np.stack([f[k] for f in features]) for k in pretraining.FEATURE_NAMES}
    dataset = tf.data.Dataset.from_tensor_slices(stacked)
    if input_context is not None:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if train:
        dataset = dataset.shuffle(len(features), seed=args.seed).repeat()
    return dataset.batch(batch_size, drop_remainder=True)


def heldout_dataset(args, preprocessor, documents, batch_size):
    """Fixed (static) masks on held-out documents, so every evaluation sees the same examples."""
    instances = corpus_instances(args, preprocessor, documents, True, args.seed + 1, 1)
    if len(instances) < batch_size:
        raise SystemExit(f"error: the held-out documents give {len(instances)} examples, fewer "
                         f"than one batch of {batch_size}; raise --heldout_fraction.")
    return static_dataset(instances, args, batch_size).map(training.split_pretraining_features)


def train_dataset_fn(args, preprocessor, instances, per_replica_batch, skip_batches):
    """A function of an InputContext, for `strategy.distribute_datasets_from_function`."""
    def dataset_fn(input_context):
        if args.tfrecords:
            dataset = tfrecords.pretraining_dataset_from_tfrecords(
                args.tfrecords, per_replica_batch, args.seq_length, args.max_predictions_per_seq,
                seed=args.seed, input_context=input_context)
        elif args.masking == "static":
            dataset = static_dataset(instances, args, per_replica_batch, input_context, train=True)
        else:
            dataset = masking.pretraining_dataset_from_instances(
                instances, pretraining.PretrainingVocab.from_preprocessor(preprocessor),
                per_replica_batch, args.seq_length, args.max_predictions_per_seq,
                seed=args.seed, input_context=input_context)
        # A resumed run continues with the batches the interrupted run had not reached.
        return dataset.skip(skip_batches).map(training.split_pretraining_features)
    return dataset_fn


# --- model --------------------------------------------------------------------------------------

def build_config(args, vocab_size):
    if os.path.isfile(args.config):
        config = kbm.BertConfig.from_json_file(args.config)
        if config.vocab_size != vocab_size:
            raise SystemExit(f"error: {args.config} has vocab_size {config.vocab_size} but the "
                             f"vocab has {vocab_size} tokens; use the matching vocab.")
    else:
        try:
            config = kbm.BertConfig.from_preset(args.config, vocab_size=vocab_size)
        except ValueError as e:
            raise SystemExit(f"error: --config: {e} Or pass a bert_config.json path.") from None
    if args.seq_length > config.max_position_embeddings:
        raise SystemExit(f"error: --seq_length {args.seq_length} exceeds the config's "
                         f"max_position_embeddings ({config.max_position_embeddings}).")
    return config


def init_checkpoint_path(path):
    """--init_checkpoint as a file: a run directory stands for its model.keras; anything else
    is a .keras file or a Google TF1 checkpoint prefix."""
    return os.path.join(path, "model.keras") if os.path.isdir(path) else path


def load_init_checkpoint(pretrainer, path):
    """Phase-2 start: weights of an earlier run; the configs must match exactly."""
    path = init_checkpoint_path(path)
    if path.endswith(".keras"):
        source = keras.saving.load_model(path)
        source_encoder = getattr(source, "encoder", source)
        if source_encoder.bert_config != pretrainer.bert_config:
            raise SystemExit(
                f"error: --init_checkpoint {path} was trained with config "
                f"{source_encoder.bert_config}, not {pretrainer.bert_config}; pass the same "
                "--config and --vocab.")
        targets = pretrainer if isinstance(source, kbm.BertPretrainer) else pretrainer.encoder
        for target, value in zip(targets.weights, source.weights):
            target.assign(value)
        return f"Initialised from {path}."
    try:
        return str(kbm.load_google_checkpoint(pretrainer, path))
    except ValueError as e:
        raise SystemExit(f"error: --init_checkpoint {path} does not fit the model: {e}") from None


# --- after training -----------------------------------------------------------------------------

def fill_mask_demo(pretrainer, preprocessor, sentence, rng):
    """Masks about 15% of a held-out sentence's word pieces and prints the top-5 guesses."""
    ids = preprocessor([sentence])["input_word_ids"].numpy()[0]
    real = [i for i, token in enumerate(ids) if token not in (preprocessor.cls_id,
                                                             preprocessor.sep_id,
                                                             preprocessor.pad_id)]
    positions = sorted(rng.choice(real, size=max(1, round(0.15 * len(real))), replace=False))
    masked = ids.copy()
    masked[positions] = preprocessor.mask_id
    inputs = {"input_word_ids": masked[None], "input_mask": (ids != 0).astype("int32")[None],
              "input_type_ids": np.zeros_like(ids)[None],
              "masked_lm_positions": np.array([positions], "int32")}
    # A direct call, not predict(): it runs no cross-worker collective, so the chief alone may.
    logits = keras.ops.convert_to_numpy(pretrainer(inputs, training=False)["mlm_logits"])[0]
    vocab = preprocessor.vocab
    lines = ["Fill-mask demo on a held-out sentence:",
             "  " + " ".join(vocab[t] for t in masked if t != preprocessor.pad_id)]
    for position, row in zip(positions, logits):
        top = np.argsort(row)[::-1][:5]
        lines.append(f"  [MASK] at {position} (was {vocab[ids[position]]!r}): "
                     + ", ".join(f"{vocab[t]} {p:.2f}" for t, p in zip(top, _softmax(row)[top])))
    return "\n".join(lines)


def _softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


def plot_loss_curve(history_csv, heldout, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.genfromtxt(history_csv, delimiter=",", names=True)
    rows = np.atleast_1d(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rows["step"], rows["mlm_logits_loss"], label="train MLM loss")
    ax.plot(rows["step"], rows["nsp_logits_loss"], label="train NSP loss")
    ax.scatter([h["step"] for h in heldout], [h["mlm_logits_loss"] for h in heldout],
               color="black", zorder=3, label="held-out MLM loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class StepHistory(keras.callbacks.Callback):
    """Appends each loop's training metrics, keyed by global step, to a CSV (survives resumes)."""

    def __init__(self, path, steps_per_epoch):
        super().__init__()
        self.path, self.steps_per_epoch = path, steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        keys = ["step", "loss", "mlm_logits_loss", "nsp_logits_loss", "mlm_logits_accuracy",
                "nsp_logits_accuracy"]
        logs = dict(logs or {}, step=(epoch + 1) * self.steps_per_epoch)
        new = not os.path.exists(self.path)
        with open(self.path, "a", encoding="utf-8") as f:
            if new:
                f.write(",".join(keys) + "\n")
            f.write(",".join(str(float(logs.get(k, float("nan")))) for k in keys) + "\n")


# --- main ---------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    done_path = os.path.join(args.output_dir, DONE_FILE)
    if os.path.exists(done_path):
        print(f"{args.output_dir} already holds a finished run ({done_path}); nothing to do. "
              "Pass a new --output_dir to train again.")
        return 0
    strategy = distribute.get_strategy(args.strategy, args.tpu)  # first: see its docstring
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(args.seed)
    distribute.set_precision(args.precision)
    per_replica_batch = distribute.per_replica_batch_size(args.batch_size, strategy)
    chief = distribute.is_chief(strategy)
    os.makedirs(args.output_dir, exist_ok=True)

    # Data: documents -> vocab -> sentence pairs (masked in tf.data, fresh each epoch).
    heldout_documents = None
    if args.tfrecords:
        vocab_file = prepare_vocab(args, None)
    else:
        if args.corpus is None:
            from keras_bert_min.datasets import fetch_gutenberg
            args.corpus = fetch_gutenberg()
        documents = corpus.read_documents(args.corpus)
        documents, heldout_documents = corpus.split_documents(
            documents, args.heldout_fraction, seed=args.seed)
        vocab_file = prepare_vocab(args, documents)
    preprocessor = BertPreprocessor(vocab_file, args.seq_length, lower_case=not args.cased)
    instances = None
    if not args.tfrecords:
        print(f"Pairing sentences of {len(documents)} documents...", flush=True)
        instances = corpus_instances(args, preprocessor, documents, args.masking == "static",
                                     args.seed, args.dupe_factor)
        if len(instances) < args.batch_size:
            raise SystemExit(f"error: the corpus gives {len(instances)} examples, fewer than one "
                             f"batch of {args.batch_size}; add text or lower --batch_size.")
    if args.steps is None:
        if args.epochs is not None and instances is not None:
            args.steps = max(1, int(args.epochs * len(instances) / args.batch_size))
        else:
            args.steps = 1500
    steps_per_loop = min(args.steps_per_loop, args.steps)
    loops = math.ceil(args.steps / steps_per_loop)
    total_steps = loops * steps_per_loop
    warmup = args.warmup_steps if args.warmup_steps is not None else total_steps // 10

    config = build_config(args, preprocessor.vocab_size)
    with strategy.scope():
        pretrainer = kbm.bert_pretrainer(config)
        init_report = load_init_checkpoint(pretrainer, args.init_checkpoint) \
            if args.init_checkpoint else None
        optimizer = training.create_optimizer(args.learning_rate, total_steps, warmup,
                                              optimizer=args.optimizer)
        training.compile_pretrainer(pretrainer, optimizer, jit_compile=args.jit_compile)
    if init_report:
        print(init_report)

    backup_dir = os.path.join(args.output_dir, "backup", f"worker-{distribute.worker_index(strategy)}")
    resumed_loops = training.completed_epochs(backup_dir)
    if resumed_loops:
        print(f"Resuming from the backup at step {resumed_loops * steps_per_loop}.")
    dataset = strategy.distribute_datasets_from_function(train_dataset_fn(
        args, preprocessor, instances, per_replica_batch, resumed_loops * steps_per_loop))

    # Held-out metrics before training (a resumed run's weights are restored inside fit, so
    # this is the step-0 model in every run) and after it.
    heldout, heldout_results = None, []
    heldout_log = os.path.join(args.output_dir, "heldout_metrics.json")
    if heldout_documents:
        heldout = heldout_dataset(args, preprocessor, heldout_documents, args.batch_size)
        heldout_results.append({"step": 0, **pretrainer.evaluate(heldout, verbose=0,
                                                                 return_dict=True)})

    logs_dir = os.path.join(args.output_dir, "logs")
    callbacks = [training.BackupAndRestore(backup_dir, save_freq="epoch"),
                 keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [keras.callbacks.TensorBoard(logs_dir),
                      StepHistory(os.path.join(args.output_dir, "history.csv"), steps_per_loop),
                      training.EncoderCheckpoint(os.path.join(args.output_dir, "checkpoints"),
                                                 args.checkpoint_every, steps_per_loop)]
    print(f"Training {config.num_hidden_layers}-layer H-{config.hidden_size} BERT for "
          f"{total_steps} steps of {args.batch_size} x {args.seq_length} tokens on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}, "
          f"{args.precision}).", flush=True)
    pretrainer.fit(dataset, epochs=loops, steps_per_epoch=steps_per_loop, callbacks=callbacks,
                   shuffle=False,  # the dataset shuffles itself
                   verbose=1 if chief and sys.stdout.isatty() else 2)

    summary = {"steps": total_steps, "config": config.to_dict(), "args": vars(args)}
    if heldout is not None:  # on every worker: evaluation is a collective under multi-worker
        heldout_results.append({"step": total_steps, **pretrainer.evaluate(heldout, verbose=0,
                                                                           return_dict=True)})
    if not chief:
        # Non-chief workers keep their final model apart, so a run can check they agree.
        worker_dir = os.path.join(args.output_dir, "workers",
                                  f"worker-{distribute.worker_index(strategy)}")
        os.makedirs(worker_dir, exist_ok=True)
        pretrainer.save(os.path.join(worker_dir, "model.keras"))
        return 0
    if heldout is not None:
        with open(heldout_log, "w", encoding="utf-8") as f:
            json.dump(heldout_results, f, indent=2)
        summary["heldout"] = heldout_results
    save_outputs(args, pretrainer, preprocessor, vocab_file)
    if heldout_documents:
        rng = np.random.default_rng(args.seed)
        sentence = max(heldout_documents[0][:5], key=len)
        summary["fill_mask"] = fill_mask_demo(pretrainer, preprocessor, sentence, rng)
        print(summary["fill_mask"])
        plot_loss_curve(os.path.join(args.output_dir, "history.csv"), heldout_results,
                        os.path.join(args.output_dir, "loss_curve.png"))
    if not args.no_export:
        summary["export"] = export(args, pretrainer, preprocessor)
    summary["seconds"] = round(time.time() - started, 1)
    with open(done_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    os.replace(done_path + ".tmp", done_path)
    report(args, summary)
    return 0


def save_outputs(args, pretrainer, preprocessor, vocab_file):
    """The trained pretrainer in Keras and Google layouts, with what a user needs to reload it."""
    out = args.output_dir
    pretrainer.save(os.path.join(out, "model.keras"))
    kbm.save_google_checkpoint(pretrainer, os.path.join(out, "google", "bert_model.ckpt"))
    training.write_google_config(pretrainer.bert_config, os.path.join(out, "google"))
    shutil.copyfile(vocab_file, os.path.join(out, "google", "vocab.txt"))
    pretrainer.bert_config.to_json_file(os.path.join(out, "config.json"))
    with open(os.path.join(out, "preprocessor.json"), "w", encoding="utf-8") as f:
        json.dump({"seq_length": preprocessor.seq_length, "lower_case": preprocessor.lower_case}, f)


def export(args, pretrainer, preprocessor):
    """The encoder as a SavedModel that takes token ids or raw text (TF Serving layout)."""
    return export_saved_model(pretrainer.encoder, os.path.join(args.output_dir, "export"),
                              preprocessor=preprocessor)


def report(args, summary):
    print(f"\nFinished {summary['steps']} steps in {summary['seconds']:.0f} s.")
    for row in summary.get("heldout", []):
        print(f"  held-out at step {row['step']:>6}: MLM loss {row['mlm_logits_loss']:.3f}, "
              f"MLM accuracy {row['mlm_logits_accuracy']:.3f}, "
              f"NSP accuracy {row['nsp_logits_accuracy']:.3f}")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, google/ (TF1 checkpoint), "
          f"vocab.txt, checkpoints/, logs/ (TensorBoard), history.csv, loss_curve.png, "
          f"heldout_metrics.json, export/ ({summary.get('export')}), {DONE_FILE}")


if __name__ == "__main__":
    sys.exit(main())
