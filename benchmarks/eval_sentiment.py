"""Sentiment accuracy of the default fine-tuning recipe: MiniLM-L6 on the movie-review snippets.

Runs `recipes/finetune_classifier.py` with its defaults (any extra arguments are passed on to
it), then writes the result as JSON and as a Markdown table. The goal is at least 80% accuracy
on the held-out test split.

    python benchmarks/eval_sentiment.py
    python benchmarks/eval_sentiment.py --results_dir /tmp/results -- --epochs 2

Outputs: `<results_dir>/eval_sentiment.json` and `<results_dir>/eval_sentiment.md`; the run
itself in `--output_dir` (default: a new `runs/eval_sentiment-<time>` directory).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, os.pardir, "recipes", "finetune_classifier.py")
TARGET_TEST_ACCURACY = 0.80

TABLE_ROWS = (  # (column heading, metrics.json key, format)
    ("test accuracy", "test_accuracy", "{:.4f}"),
    ("dev accuracy", "dev_accuracy", "{:.4f}"),
    ("epochs (best)", None, None),
    ("seq_length", "seq_length", "{}"),
    ("batch", "batch_size", "{}"),
    ("peak lr", "learning_rate", "{:g}"),
    ("wall time", "wall_time_seconds", "{:.0f} s"),
)


def load_recipe():
    spec = importlib.util.spec_from_file_location("finetune_classifier", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def markdown_table(metrics):
    """One-row Markdown table of the headline numbers of a recipe's metrics.json."""
    cells = []
    for _, key, form in TABLE_ROWS:
        if key is None:
            cells.append(f"{metrics['epochs']} ({metrics['best_epoch']})")
        else:
            cells.append(form.format(metrics[key]))
    header = "| " + " | ".join(name for name, _, _ in TABLE_ROWS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_ROWS) + "|"
    return "\n".join([header, rule, "| " + " | ".join(cells) + " |"]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results"),
                        help="Where eval_sentiment.json and eval_sentiment.md go.")
    parser.add_argument("--output_dir", default=None,
                        help="The recipe's output directory. Default: runs/eval_sentiment-<time>.")
    parser.add_argument("recipe_args", nargs="*",
                        help="Arguments for recipes/finetune_classifier.py, after `--`.")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or os.path.join(
        "runs", time.strftime("eval_sentiment-%Y%m%d-%H%M%S"))

    metrics = load_recipe().main(["--output_dir", output_dir, *args.recipe_args])
    if "test_accuracy" not in metrics:
        raise SystemExit("error: the run had no test split; pass no --train or also --test.")
    result = {
        "benchmark": "movie-review sentiment (fetch_movie_reviews), test split",
        "target_test_accuracy": TARGET_TEST_ACCURACY,
        "met_target": metrics["test_accuracy"] >= TARGET_TEST_ACCURACY,
        "cpu_count": os.cpu_count(),
        "output_dir": os.path.abspath(output_dir),
        **metrics,
    }
    os.makedirs(args.results_dir, exist_ok=True)
    json_path = os.path.join(args.results_dir, "eval_sentiment.json")
    markdown_path = os.path.join(args.results_dir, "eval_sentiment.md")
    for path, text in ((json_path, json.dumps(result, indent=2) + "\n"),
                       (markdown_path, markdown_table(metrics))):
        with open(path + ".partial", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".partial", path)
    print(markdown_table(metrics))
    print(f"Test accuracy {metrics['test_accuracy']:.4f} "
          f"({'meets' if result['met_target'] else 'MISSES'} the {TARGET_TEST_ACCURACY:.0%} "
          f"target). Results in {json_path} and {markdown_path}.")
    return 0 if result["met_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
