"""The settings tried for the default pretraining run: each is `recipes/pretrain.py` on the
Gutenberg books with some flags, timed, and its held-out metrics read back.

    python benchmarks/tune_pretraining.py               # every setting (about an hour on 2 cores)
    python benchmarks/tune_pretraining.py --only B C    # some settings; merged into the results

Settings other than G and H share one vocab, learned once by a one-step run (the recipe
learns the same vocab from the same books every time), so their wall times leave out the
~75 s of learning it; G learns its own size and H, the default, is timed end to end as a user
runs it. Run it on an otherwise idle machine: wall times are absolute, so load skews them.

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

# name -> (what it changes, the recipe's flags). Rows run in this order. B-G change one thing
# against B (or A); H is the default that F led to, measured end to end.
SMALL_64 = ["--seq_length", "64", "--max_predictions_per_seq", "10", "--batch_size", "64"]
SHORT_32 = ["--seq_length", "32", "--max_predictions_per_seq", "5", "--batch_size", "128"]
SETTINGS = {
    "A": ("the old default: dropout 0.1, lr 2e-3, 1,500 steps of 64 x 64",
          ["--dropout", "0.1", "--learning_rate", "2e-3", "--steps", "1500", *SMALL_64]),
    "B": ("A without dropout, 2,000 steps",
          ["--dropout", "0", "--learning_rate", "2e-3", "--steps", "2000", *SMALL_64]),
    "C": ("B at batch 32, 4,000 steps (same tokens)",
          ["--dropout", "0", "--learning_rate", "2e-3", "--steps", "4000",
           *SMALL_64[:4], "--batch_size", "32"]),
    "D": ("B at lr 1e-3",
          ["--dropout", "0", "--learning_rate", "1e-3", "--steps", "2000", *SMALL_64]),
    "E": ("B at lr 5e-3",
          ["--dropout", "0", "--learning_rate", "5e-3", "--steps", "2000", *SMALL_64]),
    "F": ("B at 128 x 32 tokens (same tokens a step), 5 predictions",
          ["--dropout", "0", "--learning_rate", "2e-3", "--steps", "2000", *SHORT_32]),
    "G": ("B with a 4,000-token vocab",
          ["--dropout", "0", "--learning_rate", "2e-3", "--steps", "2000", *SMALL_64,
           "--vocab_size", "4000"]),
    "H": ("the default (= F): `python recipes/pretrain.py`", []),
    "I": ("H in mixed_bfloat16 (emulated on this CPU), 500 steps",
          ["--precision", "mixed_bfloat16", "--steps", "500"]),
    "J": ("H on another corpus: 233 State of the Union addresses (10.8 MB), its own vocab",
          ["--corpus", "<state_of_the_union>"]),
}
OWN_VOCAB = {"G", "H", "J"}  # learn their own vocab (G: another size; H: timed end to end)


def resolved(flags):
    """The flags with `<state_of_the_union>` replaced by the fetched addresses' paths."""
    if "<state_of_the_union>" not in flags:
        return flags
    from keras_bert_min.corpora import fetch_state_of_the_union

    index = flags.index("<state_of_the_union>")
    return [*flags[:index], *fetch_state_of_the_union(), *flags[index + 1:]]


def run_setting(name, flags, work_dir, vocab):
    out = os.path.join(work_dir, name)
    command = [sys.executable, RECIPE, "--output_dir", out, *resolved(flags)]
    if vocab and name not in OWN_VOCAB:
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
        "status": "finished", "wall_seconds": round(seconds, 1),
        "steps": summary["steps"],
        "heldout_mlm_accuracy": final["mlm_logits_accuracy"],
        "heldout_mlm_loss": final["mlm_logits_loss"],
        "heldout_nsp_accuracy": final.get("nsp_logits_accuracy"),
        "probe_hits": summary.get("probes", {}).get("hits"),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def table(result):
    """The Markdown table: one row per setting run, finished or stopped early."""
    rows = []
    for name, (what, _) in SETTINGS.items():
        row = result["runs"].get(name)
        if row is None:
            continue
        if "heldout_mlm_accuracy" in row:
            nsp = row["heldout_nsp_accuracy"]
            mlm = f"{100 * row['heldout_mlm_accuracy']:.1f}%"
            nsp = "-" if nsp is None else f"{100 * nsp:.1f}%"
            probes = "-" if row["probe_hits"] is None else f"{row['probe_hits']}/8"
        else:  # stopped early: the training accuracy of its last loop, in brackets
            mlm = f"({100 * row['train_mlm_accuracy']:.1f}%)"
            nsp, probes = f"({100 * row['train_nsp_accuracy']:.1f}%)", "-"
        wall = "-" if row.get("wall_seconds") is None else f"{row['wall_seconds']:.0f} s"
        rows.append([name, what, f"{row['steps']:,}", wall, mlm, nsp, probes,
                     row.get("note", "")])
    return ("Pretraining settings tried on the 18 Gutenberg books, BERT-tiny, 2 CPU cores. "
            "Accuracies are held-out (2% of the documents) at the end of the run; in brackets, "
            "the training accuracy of the last loop of a run stopped early.\n\n"
            + markdown_table(["", "setting", "steps", "wall time", "MLM acc", "NSP acc",
                              "probe top-1", "note"], rows))


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
    if not os.path.exists(vocab):  # learned once, by a one-step run
        subprocess.run([sys.executable, RECIPE, "--output_dir", os.path.dirname(vocab),
                        "--steps", "1", "--no_export"], check=True)
    for name in args.only or SETTINGS:
        out = os.path.join(args.work_dir, name)
        if os.path.exists(out):
            subprocess.run(["rm", "-rf", out], check=True)
        _, result["runs"][name] = run_setting(name, SETTINGS[name][1], args.work_dir, vocab)
        publish(args.output_dir, NAME, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
