"""Memory per corpus size: the peak resident memory of `recipes/pretrain.py`'s data stage.

The data stage reads the whole corpus (`training.corpus_with_vocab`: documents, the held-out
split and the learned vocab) and pairs its sentences (`training.pretraining_instances`, the
recipe's defaults: 32 tokens, 5 predictions, dupe factor 2). Both hold the corpus in memory, as
Google's `create_pretraining_data.py` does, so the peak grows with the corpus; this measures by
how much. Each size runs in a fresh process (its peak `ru_maxrss`, minus the same process's
resident memory after the imports), on a corpus made of the Gutenberg books (each without its
Project Gutenberg header and footer) repeated to that size.

    python benchmarks/corpus_memory.py                  # 5, 10 and 20 MB (a few minutes)
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

NAME = "corpus_memory"

MEASURE = """
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
from keras_bert_min import training
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
base = rss_mib()
preprocessor, documents, heldout = training.corpus_with_vocab(
    [sys.argv[2]], os.path.join(sys.argv[3], "vocab.txt"), seq_length=32, vocab_size=8000)
instances = training.pretraining_instances(documents, preprocessor, 32, 5, dupe_factor=2)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1),
                  "instances": len(instances), "documents": len(documents)}))
"""


def make_corpus(path, size_mb, books):
    """`path` of about `size_mb` MB: the books' text, repeated."""
    from keras_bert_min.text.corpus import strip_gutenberg_boilerplate

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


def measure(size_mb, books, work_dir):
    corpus = os.path.join(work_dir, f"corpus-{size_mb}.txt")
    size = make_corpus(corpus, size_mb, books)
    out = subprocess.run([sys.executable, "-c", MEASURE, os.path.dirname(common.HERE), corpus,
                          tempfile.mkdtemp(dir=work_dir)], capture_output=True, text=True,
                         check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    os.remove(corpus)
    row.update(size_mb=round(size / 2**20, 2),
               data_mib=round(row["peak_mib"] - row["baseline_mib"], 1))
    row["mib_per_corpus_mb"] = round(row["data_mib"] / row["size_mb"], 1)
    return row


def main(argv=None):
    parser = common.benchmark_parser(__doc__, "Two small sizes.", "The result files.")
    parser.add_argument("--sizes_mb", type=float, nargs="+", default=None)
    args = parser.parse_args(argv)
    common.fill_defaults(args, sizes_mb=([0.2, 0.4], [5, 10, 20]))
    from keras_bert_min.corpora import fetch_gutenberg

    books = sorted(fetch_gutenberg())
    with tempfile.TemporaryDirectory() as work_dir:
        rows = [measure(size, books, work_dir) for size in args.sizes_mb]
    result = {"benchmark": NAME, "quick": args.quick, "rows": rows,
              "environment": common.environment()}
    table = ("Peak resident memory of the pretraining data stage (read, split, learn the vocab, "
             "pair sentences; 32 tokens, dupe factor 2) above the process's memory after its "
             "imports.\n\n" + common.markdown_table(
                 ["corpus", "documents", "instances", "peak above imports", "per MB of text"],
                 [[f"{r['size_mb']} MB", r["documents"], r["instances"], f"{r['data_mib']} MiB",
                   f"{r['mib_per_corpus_mb']} MiB"] for r in rows]))
    common.publish(args.output_dir, NAME, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
