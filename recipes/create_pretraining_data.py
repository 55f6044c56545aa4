"""Text files -> statically masked pretraining TFRecords, with Google's flags and feature names.

A thin CLI over `keras_bert_min.text.tfrecords.write_pretraining_data`, a drop-in for Google's
`create_pretraining_data.py`: the records it writes, and records Google's script wrote, train
with `recipes/pretrain.py --tfrecords ... --vocab ...`. Learn a vocab first if you have none:

    python recipes/create_pretraining_data.py --input_file 'books/*.txt' --vocab_file vocab.txt \\
        --output_file data/train.tfrecord --num_shards 8 --dupe_factor 10

Google's own command lines work unchanged: absl's boolean forms (`--do_lower_case=False`,
`--nodo_lower_case`), comma-separated `--input_file` patterns and `--output_file` files.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)


BOOLEAN_FLAGS = ("do_lower_case", "do_whole_word_mask")


def absl_bool(value):
    """absl's spellings of a boolean flag's value."""
    if value.lower() in ("true", "t", "1", "yes"):
        return True
    if value.lower() in ("false", "f", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def absl_argv(argv):
    """Google's absl forms in argparse's: `--noflag` and `--no-flag` are `--flag=false`."""
    translated = []
    for arg in argv:
        for name in BOOLEAN_FLAGS:
            if arg in (f"--no{name}", f"--no-{name}"):
                arg = f"--{name}=false"
        translated.append(arg)
    return translated


def build_parser():
    parser = _flags.parser(__doc__)
    parser.add_argument("--input_file", nargs="+", required=True,
                        help="Text files or globs, BERT format or prose; each may be a "
                             "comma-separated list, as in Google's script.")
    parser.add_argument("--output_file", required=True,
                        help="The output file, or a comma-separated list of files (examples "
                             "are dealt to them in turn, as Google's script does); with "
                             "--num_shards N > 1, a prefix for <prefix>-00000-of-0000N.tfrecord.")
    parser.add_argument("--input_format", choices=["auto", "bert", "prose"], default="auto",
                        help="bert: Google's format (a sentence per line, blank lines between "
                             "documents), also for files of one-line documents such as tweets; "
                             "prose: running text; auto: decided per file.")
    parser.add_argument("--vocab_file", required=True,
                        help="WordPiece vocab.txt; with --learn_vocab_size it is learned from "
                             "--input_file and written there first.")
    parser.add_argument("--learn_vocab_size", type=int, default=None,
                        help="Learn a vocab of about this size from the input first.")
    parser.add_argument("--do_lower_case", nargs="?", const=True, default=True, type=absl_bool,
                        help="Lower-case and strip accents (uncased models); "
                             "--do_lower_case=false or --nodo_lower_case for cased ones.")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="Tokens per example, [CLS] and two [SEP] included.")
    parser.add_argument("--max_predictions_per_seq", type=int, default=20,
                        help="Masked positions per example, at most.")
    parser.add_argument("--masked_lm_prob", type=float, default=0.15,
                        help="Share of the tokens to mask.")
    parser.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="Probability of a shorter target length, as Google's script.")
    parser.add_argument("--dupe_factor", type=int, default=10,
                        help="Copies of the data, each with different masks.")
    parser.add_argument("--do_whole_word_mask", nargs="?", const=True, default=False,
                        type=absl_bool,
                        help="Mask whole words (all ## pieces of a word together).")
    parser.add_argument("--num_shards", type=int, default=1,
                        help="Output files, named from the --output_file prefix.")
    parser.add_argument("--random_seed", type=int, default=12345,
                        help="Seed of the pairing and the masks.")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_bert_min import cli  # noqa: E402
from keras_bert_min._checks import check_fraction, check_int  # noqa: E402
from keras_bert_min.text import expand_paths, learn_vocab, write_vocab  # noqa: E402
from keras_bert_min.text.pretraining import MIN_SEQ_LENGTH  # noqa: E402
from keras_bert_min.text.tfrecords import write_pretraining_data  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), absl_argv(sys.argv[1:] if argv is None else argv),
                          check_args)


def check_args(args):
    """Argument errors, before any text is read."""
    check_int("--max_seq_length", args.max_seq_length, MIN_SEQ_LENGTH,
              hint=" ([CLS] A [SEP] B [SEP] with a token in each segment)")
    for name in ("max_predictions_per_seq", "dupe_factor", "num_shards"):
        check_int(f"--{name}", getattr(args, name))
    if args.learn_vocab_size is not None:
        check_int("--learn_vocab_size", args.learn_vocab_size)
    check_fraction("--masked_lm_prob", args.masked_lm_prob, low_open=True)
    check_fraction("--short_seq_prob", args.short_seq_prob)
    args.input_file = [p for item in args.input_file for p in item.split(",") if p]
    outputs = [p for p in args.output_file.split(",") if p]
    if len(outputs) > 1 and args.num_shards not in (1, len(outputs)):
        raise ValueError(f"--output_file names {len(outputs)} files and --num_shards is "
                         f"{args.num_shards}; pass one or the other.")
    args.outputs = outputs if len(outputs) > 1 or args.num_shards == 1 else outputs[0]
    if args.learn_vocab_size is None and not os.path.isfile(args.vocab_file):
        raise FileNotFoundError(f"--vocab_file {args.vocab_file} does not exist; give a "
                                "vocab.txt, or --learn_vocab_size to learn one there.")


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    if args.learn_vocab_size:
        write_vocab(learn_vocab(expand_paths(args.input_file), args.learn_vocab_size,
                                lower_case=args.do_lower_case), args.vocab_file)
    files = write_pretraining_data(
        args.input_file, args.vocab_file, args.outputs, args.max_seq_length,
        args.max_predictions_per_seq, args.masked_lm_prob, args.short_seq_prob, args.dupe_factor,
        args.do_whole_word_mask, args.do_lower_case, args.num_shards, args.random_seed,
        corpus_format=args.input_format)
    print(f"Wrote {len(files)} TFRecord file(s) in {time.time() - started:.0f} s: "
          f"{', '.join(files)}")
    return files


if __name__ == "__main__":
    sys.exit(cli.run(main))
