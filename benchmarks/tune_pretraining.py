"""The settings tried for the default pretraining run: each is `recipes/pretrain.py` on the
Gutenberg books with some flags, timed, and its held-out metrics read back.

    python benchmarks/tune_pretraining.py               # every setting (about an hour on 2 cores)
    python benchmarks/tune_pretraining.py --only B C    # some settings; merged into the results

All settings share one vocab, learned once by the first run that needs it (the recipe learns
the same vocab from the same books every time), so a row's wall time is the recipe's run
without vocab learning; `vocab_seconds` in the results is what learning it took. The default
run's own end-to-end time is measured separately (README, benchmarks/results/pretrain_default.*).
Run it on an otherwise idle machine: wall times are absolute, so load skews them.

Outputs: `<output_dir>/pretrain_tuning.json` (every run: command, metrics, timings, load) and
`pretrain_tuning.md` (the table).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from common import DEFAULT_OUTPUT_DIR, HERE, markdown_table, publish  # puts the repo on path

RECIPE = os.path.join(os.path.dirname(HERE), "recipes", "pretrain.py")
NAME = "pretrain_tuning"

# name -> (what it changes, the recipe's flags). Rows run in this order.
SETTINGS = {
    "A": ("issue-14 start: tiny, dropout 0.1, lr 2e-3, 1500 steps, batch 64 x 64",
          ["--dropout", "0.1", "--learning_rate", "2e-3", "--steps", "1500", "--batch_size", "64",
           "--seq_length", "64", "--max_predictions_per_seq", "10"]),
    "B": ("A, dropout 0, 2000 steps",
          ["--dropout", "0", "--learning_rate", "2e-3", "--steps", "2000", "--batch_size", "64",
           "--seq_length", "64", "--max_predictions_per_seq", "10"]),
}


def run_setting(name, flags, work_dir, vocab):
    out = os.path.join(work_dir, name)
    command = [sys.executable, RECIPE, "--output_dir", out, "--no_export", *flags]
    if vocab:
        command += ["--vocab", vocab]
    load_before = os.getloadavg()[0]
    started = time.time()
    subprocess.run(command, check=True)
    seconds = time.time() - started
    with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    final = summary["heldout"][-1]
    return out, {
        "command": " ".join(["python", "recipes/pretrain.py", *flags]),
        "wall_seconds": round(seconds, 1),
        "steps": summary["steps"],
        "heldout_mlm_accuracy": final["mlm_logits_accuracy"],
        "heldout_mlm_loss": final["mlm_logits_loss"],
        "heldout_nsp_accuracy": final.get("nsp_logits_accuracy"),
        "probe_hits": summary.get("probes", {}).get("hits"),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def table(result):
    rows = []
    for name, (what, _) in SETTINGS.items():
        row = result["runs"].get(name)
        if row is None:
            continue
        nsp = row["heldout_nsp_accuracy"]
        rows.append([name, what, f"{row['wall_seconds']:.0f} s",
                     f"{100 * row['heldout_mlm_accuracy']:.1f}%",
                     "-" if nsp is None else f"{100 * nsp:.1f}%",
                     f"{row['probe_hits']}/8", f"{row['load_average_1min'][0]:.1f}"])
    return (f"Pretraining settings tried on the 18 Gutenberg books, 2 CPU cores (wall time without "
            f"learning the vocab, {result.get('vocab_seconds', '?')} s once).\n\n"
            + markdown_table(["", "setting", "wall time", "held-out MLM acc", "held-out NSP acc",
                              "probe top-1", "load"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="Settings to run.")
    parser.add_argument("--work_dir", default=os.path.join("runs", "tune_pretraining"),
                        help="Where the runs go (each setting in <work_dir>/<name>, replaced).")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="Where the result files go.")
    args = parser.parse_args(argv)
    path = os.path.join(args.output_dir, NAME + ".json")
    result = {"runs": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    vocab = os.path.join(args.work_dir, "vocab", "vocab.txt")
    if not os.path.exists(vocab):  # learned once by a one-step run, and timed
        started = time.time()
        subprocess.run([sys.executable, RECIPE, "--output_dir", os.path.dirname(vocab),
                        "--steps", "1", "--no_export"], check=True)
        result["vocab_seconds"] = round(time.time() - started, 1)
    for name in args.only or SETTINGS:
        out = os.path.join(args.work_dir, name)
        if os.path.exists(out):
            subprocess.run(["rm", "-rf", out], check=True)
        _, result["runs"][name] = run_setting(name, SETTINGS[name][1], args.work_dir, vocab)
        publish(args.output_dir, NAME, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
