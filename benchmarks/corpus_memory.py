"""Memory per corpus size: the peak resident memory of `recipes/pretrain.py`'s data stage.

The data stage (`training.pretraining_data`, the recipe's defaults: 32 tokens, 5 predictions,
dupe factor 2) streams the corpus (`text.corpus.iter_documents`), splits off the held-out
documents, learns the vocab and pairs the sentences. A corpus of at most --shard_mb MB is paired
in memory, as Google's `create_pretraining_data.py` pairs its input, so there the peak grows
with the corpus; a bigger one is paired shard by shard into TFRecord files (`text.shards`), so
the peak stays that of one shard whatever the corpus size. Each size runs in a fresh process
(its peak `ru_maxrss`, minus the same process's resident memory after the imports), on a corpus
made of the Gutenberg books (each without its Project Gutenberg header and footer) repeated to
that size.

    python benchmarks/corpus_memory.py                  # 5 MB to 2 GB (about an hour)
    python benchmarks/corpus_memory.py --sizes_mb 50    # other sizes
    python benchmarks/corpus_memory.py --quick          # a smoke run in seconds

Outputs: `<output_dir>/corpus_memory.json` and `corpus_memory.md`.
"""

import json
import os
import subprocess
import sys
import tempfile

import common
from keras_bert_min.text.shards import DEFAULT_SHARD_MB

NAME = "corpus_memory"

MEASURE = """
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from keras_bert_min import training
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
base, started = rss_mib(), time.time()
data = training.pretraining_data(
    [sys.argv[2]], os.path.join(sys.argv[3], "vocab.txt"),
    shards_dir=os.path.join(sys.argv[3], "data"), shard_mb=float(sys.argv[4]), seq_length=32,
    max_predictions_per_seq=5, dupe_factor=2, vocab_size=8000)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1),
                  "instances": data.examples, "shards": len(data.shard_files or [None]),
                  "seconds": round(time.time() - started, 1)}))
"""


def make_corpus(path, size_mb, books):
    """`path` of about `size_mb` MB: the books' text, repeated."""
    from keras_bert_min.text.prose import strip_gutenberg_boilerplate

    # Each book without its Project Gutenberg header and footer: in one file, the reader would
    # keep only the text between the first book's markers.
    texts = [strip_gutenberg_boilerplate(open(book, encoding="utf-8").read()).encode("utf-8")
             + b"\n\n" for book in books]
    written, target = 0, int(size_mb * 2**20)
    with open(path, "wb") as f:
        while written < target:
            for text in texts:
                # The last book cut at a line end, so the corpus stays valid UTF-8 text.
                piece = text if written + len(text) <= target else \
                    text[:text.rfind(b"\n", 0, target - written) + 1]
                f.write(piece)
                written += len(piece)
                if written >= target or piece is not text:
                    written = target if piece is not text else written
                    break
    return os.path.getsize(path)


def measure(size_mb, books, work_dir, shard_mb):
    corpus = os.path.join(work_dir, f"corpus-{size_mb}.txt")
    size = make_corpus(corpus, size_mb, books)
    out = subprocess.run([sys.executable, "-c", MEASURE, os.path.dirname(common.HERE), corpus,
                          tempfile.mkdtemp(dir=work_dir), str(shard_mb)], capture_output=True,
                         text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    os.remove(corpus)
    row.update(size_mb=round(size / 2**20, 2),
               data_mib=round(row["peak_mib"] - row["baseline_mib"], 1))
    row["mib_per_corpus_mb"] = round(row["data_mib"] / row["size_mb"], 1)
    return row


def main(argv=None):
    parser = common.benchmark_parser(__doc__, "Two small sizes.", "The result files.")
    parser.add_argument("--sizes_mb", type=float, nargs="+", default=None,
                        help="Corpus sizes to measure.")
    parser.add_argument("--shard_mb", type=float, default=None,
                        help="The recipe's --shard_mb (default: its default).")
    parser.add_argument("--work_dir", default=None,
                        help="Where the corpora and shards are written (default: a temporary "
                             "directory; a 2 GB corpus needs about 6 GB free).")
    args = parser.parse_args(argv)
    common.fill_defaults(args, sizes_mb=([0.2, 0.4], [5, 10, 20, 64, 2048]),
                         shard_mb=(0.1, DEFAULT_SHARD_MB))
    from keras_bert_min.corpora import fetch_gutenberg

    books = sorted(fetch_gutenberg())
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        rows = []
        for size in args.sizes_mb:
            rows.append(measure(size, books, work_dir, args.shard_mb))
            print(rows[-1], flush=True)
    result = {"benchmark": NAME, "quick": args.quick, "shard_mb": args.shard_mb, "rows": rows,
              "environment": common.environment()}
    table = (f"Peak resident memory of the pretraining data stage (`training.pretraining_data`: "
             f"read streamed, split, learn the vocab, pair sentences; 32 tokens, dupe factor 2, "
             f"--shard_mb {args.shard_mb:g}) above the process's memory after its imports. A "
             f"corpus up to --shard_mb is paired in memory, as Google's script does; a bigger "
             f"one shard by shard into TFRecord files.\n\n" + common.markdown_table(
                 ["corpus", "shards", "examples", "peak above imports", "per MB of text",
                  "wall time"],
                 [[f"{r['size_mb']} MB", r["shards"], r["instances"], f"{r['data_mib']} MiB",
                   f"{r['mib_per_corpus_mb']} MiB", f"{r['seconds']:.0f} s"] for r in rows]))
    common.publish(args.output_dir, NAME, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
