"""What the benchmarks share: A/B alternation, the machine's matmul peak, and result files.

On a shared machine absolute speeds drift with the other jobs' load, so every benchmark runs
its contenders in alternation (A, B, A, B, ...) and reports the median of each and their ratio;
the load average is recorded next to the numbers so a reader can judge how noisy they were.

Results go to `<output_dir>/<name>.json` (everything measured) and `<output_dir>/<name>.md` (the
table for the README), each written to a temporary name and renamed, so an interrupted run
never leaves a result file that looks complete.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

from keras_bert_min._checks import atomic_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT_DIR = os.path.join(HERE, "results")
QUICK_OUTPUT_DIR = os.path.join(os.path.dirname(HERE), "runs", "benchmarks-quick")  # untracked

# Keep TensorFlow quiet in every benchmark process, before it is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing: the package is the benchmarks' parent directory.
sys.path.insert(0, os.path.dirname(HERE))


def alternate(contenders, rounds, measure):
    """Measures each contender once per round, in the same order every round (A, B, A, B).

    Args:
        contenders: names, in the order they run within a round.
        rounds: number of rounds.
        measure: function of a name returning one measurement (a float).

    Returns:
        {name: [measurement of round 0, round 1, ...]}.

    Example:
    >>> alternate(["a", "b"], 2, lambda name: len(name))
    {'a': [1, 1], 'b': [1, 1]}
    """
    results = {name: [] for name in contenders}
    for _ in range(rounds):
        for name in contenders:
            results[name].append(measure(name))
    return results


def median(values):
    return float(statistics.median(values))


def ratio(numerator, denominator):
    """numerator / denominator, or None when the denominator is 0 (nothing to compare)."""
    return float(numerator) / float(denominator) if denominator else None


def matmul_peak_gflops(dtype="float32", size=2048, repeats=5):
    """The best throughput of one `size`^3 `tf.matmul` in this process, in GFLOP/s.

    This is the ceiling that "utilisation" divides by: the same machine, the same threads and
    the same math library as the model's matmuls, measured rather than taken from a datasheet.

    Args:
        dtype: "float32" or "bfloat16".
        size: the matrices are size x size.
        repeats: timed matmuls; the fastest counts (the others met more contention).

    Example:
    >>> matmul_peak_gflops("float32", size=256, repeats=2) > 0
    True
    """
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype=tf.float32)
    b = tf.random.uniform((size, size), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    tf.matmul(a, b).numpy()  # warm-up: thread pools and the library's kernel choice
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def environment():
    """Versions, cores and load: what a reader needs to judge the numbers."""
    import keras
    import tensorflow as tf

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__}
    for module in ("keras_hub", "tensorflow_text"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return {
        "versions": versions,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def benchmark_parser(doc, quick_help, output_help):
    """The arguments every benchmark takes: `--quick` (a smoke run) and `--output_dir`.

    Args:
        doc: the script's module docstring; its first paragraph is the description.
        quick_help, output_help: what `--quick` does and what lands in `--output_dir`.

    Example:
    >>> benchmark_parser("Speed.", "Few steps.", "Results.").parse_args(["--quick"]).quick
    True
    """
    parser = _BenchmarkParser(description=doc.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output_dir", default=None, help=output_help + " Default: "
                        f"{os.path.relpath(DEFAULT_OUTPUT_DIR, os.path.dirname(HERE))}, or with --quick "
                        f"{os.path.relpath(QUICK_OUTPUT_DIR, os.path.dirname(HERE))} (so a smoke run never "
                        "replaces the published results).")
    return parser


class _BenchmarkParser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if parsed.output_dir is None:
            parsed.output_dir = QUICK_OUTPUT_DIR if parsed.quick else DEFAULT_OUTPUT_DIR
        return parsed


def fill_defaults(args, **defaults):
    """Sets each argument left at None to its default: `name=(quick value, full value)`.

    Example:
    >>> import argparse
    >>> args = argparse.Namespace(quick=True, steps=None, rounds=5)
    >>> fill_defaults(args, steps=(3, 10), rounds=(2, 3))
    >>> args.steps, args.rounds
    (3, 5)
    """
    for name, (quick_value, full_value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick_value if args.quick else full_value)


def markdown_table(headers, rows):
    """A Markdown table; cells are formatted with str().

    Example:
    >>> print(markdown_table(["a", "b"], [[1, 2]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(output_dir, name, result, markdown):
    """Writes `<name>.json` and `<name>.md` atomically; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", markdown + "\n")):
        path = os.path.join(output_dir, name + suffix)
        with atomic_file(path) as f:
            f.write(text)
        paths.append(path)
    return paths


def publish(output_dir, name, result, markdown, note=""):
    """Writes the result files (`write_results`) and prints the table and where they went."""
    paths = write_results(output_dir, name, result, markdown)
    print(markdown)
    print(f"[{name}] wrote {' and '.join(paths)}{note}")
