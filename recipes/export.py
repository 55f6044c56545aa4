"""Export a BERT model as a new SavedModel version for TF Serving, and show how to call it.

    python recipes/export.py --train_dir runs/classifier --export_base /models/bert
    python recipes/export.py --model model.keras --vocab vocab.txt --seq_length 128 \\
        --export_base /models/bert
    python recipes/export.py --pretrained uncased_L-12_H-768_A-12 --export_base /models/bert

Writes <export_base>/<version>/ atomically (see keras_bert_min/export.py for the signatures),
then prints the signatures as `saved_model_cli show --all` does, the `docker run` line that
serves the base directory with the stock `tensorflow/serving` image, and a `curl` request for
its REST API.
"""

import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded by path
import _flags  # noqa: E402  (the standard library only)

DEFAULT_SEQ_LENGTH = 128
EXAMPLE_TEXT = "Hello world!"


def build_parser():
    parser = _flags.parser(__doc__)
    source = parser.add_argument_group("the model to export (give exactly one)")
    sources = source.add_mutually_exclusive_group(required=True)
    sources.add_argument("--train_dir",
                         help="A directory save_pretrained wrote, in any format, such as the "
                              "output directory of recipes/pretrain.py or "
                              "recipes/finetune_classifier.py: the model it holds (a "
                              "classifier with its label names, served as label_name), with "
                              "its vocab.txt and preprocessor.json settings.")
    sources.add_argument("--model",
                         help="A .keras file saved with model.save; needs --vocab.")
    sources.add_argument("--pretrained",
                         help="A directory of pretrained weights, exported as a BertEncoder: "
                              "Google's (bert_config.json, bert_model.ckpt.*, vocab.txt) or "
                              "Hugging Face's (config.json, model.safetensors, vocab.txt).")
    source.add_argument("--vocab",
                        help="With --model: the vocab.txt the model was trained with.")

    output = parser.add_argument_group("the export")
    output.add_argument("--export_base", required=True,
                        help="The model's base directory, which TF Serving watches (its "
                             "--model_base_path); created if missing. Versions are its "
                             "numbered subdirectories.")
    output.add_argument("--version", type=int, default=None,
                        help="Version number to write. Default: one more than the highest "
                             "version in --export_base (1 if none). Never overwrites.")
    output.add_argument("--seq_length", type=int, default=None,
                        help="Tokens per example in the text signatures, [CLS] and [SEP] "
                             f"included. Default: preprocessor.json's, else {DEFAULT_SEQ_LENGTH}. "
                             "(serving_default takes any length.)")
    output.add_argument("--text_padding", choices=_flags.PADDING_MODES, default="longest",
                        help="How the text signatures pad a request: to its longest example "
                             "(faster on short texts; per-token outputs are then [B, L, ...] "
                             "with L <= --seq_length) or always to --seq_length.")
    output.add_argument("--lower_case", choices=_flags.LOWER_CASE_CHOICES, default="auto",
                        help="Lower-case and strip accents in the text signatures. auto: "
                             "preprocessor.json's; for --pretrained, tokenizer_config.json or "
                             "Google's directory name; else yes.")
    output.add_argument("--encoder_only", action="store_true",
                        help="Export the BertEncoder inside a pretrainer or fine-tuning model "
                             "instead of the whole model (sequence_output and pooled_output).")
    output.add_argument("--ids_only", action="store_true",
                        help="Export serving_default only, without serve_text and "
                             "serve_text_pair.")

    example = parser.add_argument_group("the printed serving example")
    example.add_argument("--model_name", default=None,
                         help="The model's name in TF Serving (MODEL_NAME, the URL's "
                              "/v1/models/<name>). Default: the base name of --export_base.")
    example.add_argument("--rest_port", type=int, default=8501, help="TF Serving's REST port.")
    return parser


if __name__ == "__main__":  # --help answers before TensorFlow is imported
    _flags.answer_help(build_parser)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402

from keras_bert_min import cli  # noqa: E402
from keras_bert_min import export as export_lib  # noqa: E402
from keras_bert_min._checks import check_int  # noqa: E402
from keras_bert_min.config import ENCODER_INPUTS  # noqa: E402
from keras_bert_min.pretrained import from_pretrained  # noqa: E402
from keras_bert_min.text.preprocessor import BertPreprocessor  # noqa: E402


def parse_args(argv=None):
    return cli.parse_args(build_parser(), argv, check_args)


def check_args(args):
    """Argument errors, before any model is read."""
    if args.model and not args.vocab:
        raise ValueError("--model needs --vocab, the vocab.txt the model was trained with.")
    if args.vocab and not args.model:
        raise ValueError("--vocab goes with --model (--train_dir and --pretrained have their "
                         "own).")
    if args.version is not None:
        check_int("--version", args.version, minimum=0, hint=" (TF Serving's version numbers)")
    if args.seq_length is not None:
        check_int("--seq_length", args.seq_length, 3, hint=" ([CLS] and two [SEP])")
    check_int("--rest_port", args.rest_port, 1, 65535)


# --- loading -----------------------------------------------------------------------------------

def load(args):
    """(model, preprocessor, label names or None) from --train_dir, --model or --pretrained."""
    lower_case = cli.lower_case_flag(args.lower_case)
    if args.train_dir or args.pretrained:  # any directory from_pretrained reads
        directory = args.train_dir or args.pretrained
        model, preprocessor = from_pretrained(directory, "auto" if args.train_dir else "encoder",
                                              args.seq_length, lower_case)
        if preprocessor is None:
            raise FileNotFoundError(f"{directory!r} has no vocab.txt; export the model with "
                                    "--model and --vocab.")
        return model, preprocessor, getattr(model, "label_names", None)
    for path in (args.model, args.vocab):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} does not exist; a model to export needs "
                                    "model.keras and the vocab.txt it was trained with.")
    model = keras.saving.load_model(args.model, compile=False)
    preprocessor = BertPreprocessor(args.vocab, args.seq_length or DEFAULT_SEQ_LENGTH,
                                    lower_case=True if lower_case is None else lower_case)
    return model, preprocessor, getattr(model, "label_names", None)


def choose_model(model, args):
    """The model to export, and whether it gets the text signatures (with a note if not)."""
    if args.encoder_only:
        model = getattr(model, "encoder", model)
    takes_text = set(model.input) == set(ENCODER_INPUTS)
    if args.ids_only or takes_text:
        return model, takes_text and not args.ids_only, None
    note = (f"{type(model).__name__} takes {sorted(model.input)}, not text alone: exporting "
            "serving_default only. Add --encoder_only to serve its encoder on text.")
    return model, False, note


# --- what to tell the user ---------------------------------------------------------------------

def example_request(model, preprocessor, with_text):
    """A small :predict body for the model: one text, or the ids of [CLS] [SEP]."""
    if with_text:
        return {"signature_name": export_lib.SERVE_TEXT, "instances": [EXAMPLE_TEXT]}
    ids = {"input_word_ids": [preprocessor.cls_id, preprocessor.sep_id],
           "input_mask": [1, 1], "input_type_ids": [0, 0], "masked_lm_positions": [1]}
    instance = {name: ids.get(name, [0, 0]) for name in sorted(model.input)}
    return {"signature_name": export_lib.SERVING_DEFAULT, "instances": [instance]}


def curl_command(body, model_name, port):
    url = f"http://localhost:{port}/v1/models/{model_name}:predict"
    return f"curl -s -X POST {url} -d {shlex.quote(json.dumps(body))}"


def docker_command(export_base, model_name, port):
    return (f"docker run --rm -p 8500:8500 -p {port}:8501 "
            f"-v {shlex.quote(export_base)}:/models/{model_name} -e MODEL_NAME={model_name} "
            "tensorflow/serving")


def main(argv=None):
    args = parse_args(argv)
    source = args.train_dir or args.model or args.pretrained
    print(f"Loading {source} ...", flush=True)
    model, preprocessor, label_names = load(args)
    model, with_text, note = choose_model(model, args)
    if note:
        print(f"Note: {note}")
    if label_names is not None and not export_lib.is_classifier(model):
        label_names = None  # e.g. --encoder_only on a classifier
    print(f"Exporting {type(model).__name__} to {os.path.abspath(args.export_base)} ...",
          flush=True)
    version_dir = export_lib.export_saved_model(
        model, args.export_base, preprocessor if with_text else None, version=args.version,
        label_names=label_names, text_padding=args.text_padding)

    export_base = os.path.dirname(version_dir)
    model_name = args.model_name or os.path.basename(export_base)
    print()
    print(export_lib.describe_signatures(version_dir))
    print()
    print("Serve it with TF Serving (gRPC on 8500, REST on 8501):")
    print("  " + docker_command(export_base, model_name, args.rest_port))
    print("Then ask it:")
    print("  " + curl_command(example_request(model, preprocessor, with_text), model_name,
                              args.rest_port))
    print()
    print(f"Exported {type(model).__name__} as version {os.path.basename(version_dir)} of "
          f"model {model_name!r}: {version_dir}")
    return version_dir


if __name__ == "__main__":
    sys.exit(cli.run(main))
