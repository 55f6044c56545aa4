"""A directory of pretrained files -> a BERT model and its BertPreprocessor.

    from_pretrained      config + weights + vocab.txt, Google's or Hugging Face's -> (model,
                         preprocessor)
    _find_weights        the directory's TF1 checkpoint, else its model.safetensors
    _find_config         bert_config.json or config.json, each kind of weights preferring its own
    _checked_vocab_file  vocab.txt, checked against the config's vocab_size
    _lower_case          tokenizer_config.json's do_lower_case, else Google's cased release names
    save_run_files       a run directory (the recipes' outputs): vocab.txt, preprocessor.json,
                         labels.json, and a model's model.keras, config.json and google/
    read_run_files       the same directory read back (RunFiles), as recipes/export.py does
    save_model_file      `model.save` to a .keras file, atomically
    config_for_vocab     a preset name or a config file -> the BertConfig for a vocab's size

The weights themselves are read by `keras_bert_min.weights`.
"""

import dataclasses
import json
import logging
import os
import re
import shutil

from keras_bert_min._checks import atomic_file, check_int, partial_path, remove_partial
from keras_bert_min.config import BertConfig
from keras_bert_min.hf_weights import load_hf_weights
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.text.labelled import LabelMap
from keras_bert_min.text.preprocessor import BertPreprocessor
# find_checkpoint_prefix: a directory names the same checkpoint here as in load_google_checkpoint.
from keras_bert_min.weights import (find_checkpoint_prefix, load_google_checkpoint,
                                    save_google_checkpoint, write_google_config)

_log = logging.getLogger(__name__)


def from_pretrained(directory, model="encoder", seq_length=128, lower_case=None,
                    allow_missing_pooler=False):
    """Builds a BERT model and its text preprocessor from a directory of pretrained files.

    The directory holds a config (`bert_config.json` from Google or `config.json` from Hugging
    Face), weights (a TF1 checkpoint such as `bert_model.ckpt.*`, or `model.safetensors`) and
    `vocab.txt`. When both kinds of weights are present, the TF1 checkpoint wins; each kind
    prefers its own config file.

    Args:
        directory: the directory, e.g. Google's unzipped `uncased_L-12_H-768_A-12`.
        model: "encoder" (`BertEncoder`) or "pretrainer" (`BertPretrainer`, needs head weights).
        seq_length: the preprocessor's output length.
        lower_case: whether the preprocessor lower-cases; None reads `do_lower_case` from
            `tokenizer_config.json`, else takes Google's cased model names (`cased_L-...`,
            `multi_cased_L-...`) as cased and anything else as uncased.
        allow_missing_pooler: see `load_hf_weights`.

    Returns:
        `(model, preprocessor)`, the preprocessor a `keras_bert_min.text.BertPreprocessor`.

    Example:
    >>> encoder, preprocessor = from_pretrained("uncased_L-12_H-768_A-12")
    >>> outputs = encoder(preprocessor(tf.constant(["Hello world!"])))
    """
    directory = os.fspath(directory)
    if model not in ("encoder", "pretrainer"):
        raise ValueError(f"model must be 'encoder' or 'pretrainer', got {model!r}.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory!r} is not a directory; pass the directory holding "
                                "the config, the weights and vocab.txt.")
    weights, kind = _find_weights(directory)
    config = BertConfig.from_json_file(_find_config(directory, kind))
    check_int("seq_length", seq_length, 3, config.max_position_embeddings,
              hint=" (room for [CLS] and two [SEP], at most max_position_embeddings)")
    vocab_file = _checked_vocab_file(directory, config)

    encoder = BertEncoder(config)
    bert = encoder if model == "encoder" else BertPretrainer(encoder)
    if kind == "google":
        report = load_google_checkpoint(bert, weights)
    else:
        report = load_hf_weights(bert, weights, allow_missing_pooler=allow_missing_pooler)
    _log.info("%s", report)
    if lower_case is None:
        lower_case = _lower_case(directory)
    return bert, BertPreprocessor(vocab_file, seq_length, lower_case=lower_case)


def config_for_vocab(preset_or_file, vocab_size):
    """The `BertConfig` of a model for a vocab of `vocab_size` tokens: a preset's shape
    (`BertConfig.from_preset`, e.g. "base") with that vocab size, or a config JSON file (ours,
    Google's or Hugging Face's), whose vocab_size must be that size.

    Example:
    >>> config_for_vocab("tiny", 8000).hidden_size
    128
    """
    preset_or_file = os.fspath(preset_or_file)
    if os.path.isfile(preset_or_file):
        config = BertConfig.from_json_file(preset_or_file)
        if config.vocab_size != vocab_size:
            raise ValueError(f"{preset_or_file} has vocab_size {config.vocab_size} but the vocab "
                             f"has {vocab_size} tokens; use the matching vocab.")
        return config
    try:
        return BertConfig.from_preset(preset_or_file, vocab_size=vocab_size)
    except ValueError as e:
        raise ValueError(f"{e} Or pass a config JSON file.") from None


def _find_weights(directory):
    prefix = find_checkpoint_prefix(directory)
    if prefix is not None:
        return prefix, "google"
    safetensors_file = os.path.join(directory, "model.safetensors")
    if os.path.isfile(safetensors_file):
        return safetensors_file, "hf"
    unreadable = [f for f in ("pytorch_model.bin", "tf_model.h5", "model.safetensors.index.json")
                  if os.path.exists(os.path.join(directory, f))]
    raise FileNotFoundError(
        f"No BERT weights in {directory!r}: expected a TF1 checkpoint (bert_model.ckpt.index and "
        "its .data-* files) or model.safetensors"
        + (f"; {unreadable} cannot be read here: convert them to a single model.safetensors."
           if unreadable else "."))


def _find_config(directory, weights_kind):
    names = ("bert_config.json", "config.json")
    for name in names if weights_kind == "google" else names[::-1]:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No BERT config in {directory!r}: expected bert_config.json "
                            "(Google) or config.json (Hugging Face).")


def _checked_vocab_file(directory, config):
    path = os.path.join(directory, "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No vocab.txt in {directory!r}; the WordPiece vocabulary that "
                                "came with the weights must sit next to them.")
    with open(path, encoding="utf-8") as f:
        size = sum(1 for _ in f)  # a token a line, as Google's tokenization.load_vocab reads it
    if size != config.vocab_size:
        raise ValueError(f"{path!r} has {size} tokens but the config's vocab_size is "
                         f"{config.vocab_size}; use the vocab.txt that came with these weights.")
    return path


def _lower_case(directory):
    path = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path!r} is not valid JSON ({e}); fix or delete it.") from None
        if isinstance(values, dict) and "do_lower_case" in values:
            return bool(values["do_lower_case"])
    # Google's release names, as its tokenization.validate_case_matches_checkpoint knows them.
    name = os.path.basename(os.path.normpath(directory))
    return not re.search(r"(^|_)cased_L-", name)


# --- run directories ---------------------------------------------------------------------------

MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.txt"
PREPROCESSOR_FILE = "preprocessor.json"
CONFIG_FILE = "config.json"
GOOGLE_DIR = "google"
GOOGLE_CHECKPOINT = os.path.join(GOOGLE_DIR, "bert_model.ckpt")


def save_run_files(directory, preprocessor, labels=None, model=None):
    """Writes what it takes to reload a trained model into a run directory, each file atomically:

        vocab.txt           the preprocessor's vocab (copied, unless it is that file already)
        preprocessor.json   {"seq_length", "lower_case"}
        labels.json         a classifier's label names, with `labels`
        model.keras         with `model`: the model (`model.save`)
        config.json         with `model`: its BertConfig, our lossless JSON
        google/             with a `BertEncoder` or `BertPretrainer`: Google's TF1 checkpoint
                            (bert_model.ckpt.*), its bert_config.json and vocab.txt

    Args:
        directory: the run directory; it must exist.
        preprocessor: the `BertPreprocessor` the model was trained with.
        labels: an optional `LabelMap`.
        model: an optional model to save; leave it out when a callback wrote model.keras.

    Example:
    >>> save_run_files("runs/pretrain", preprocessor, model=pretrainer)
    """
    directory = os.fspath(directory)
    vocab_file = preprocessor.get_config()["vocab_file"]
    _copy_file(vocab_file, os.path.join(directory, VOCAB_FILE))
    with atomic_file(os.path.join(directory, PREPROCESSOR_FILE)) as f:
        json.dump({"seq_length": preprocessor.seq_length, "lower_case": preprocessor.lower_case},
                  f)
    if labels is not None:
        labels.save(os.path.join(directory, LabelMap.FILE_NAME))
    if model is None:
        return
    save_model_file(model, os.path.join(directory, MODEL_FILE))
    model.bert_config.to_json_file(os.path.join(directory, CONFIG_FILE))
    if isinstance(model, (BertEncoder, BertPretrainer)):
        save_google_checkpoint(model, os.path.join(directory, GOOGLE_CHECKPOINT))
        write_google_config(model.bert_config, os.path.join(directory, GOOGLE_DIR))
        _copy_file(vocab_file, os.path.join(directory, GOOGLE_DIR, VOCAB_FILE))


def _copy_file(source, target):
    if os.path.abspath(source) == os.path.abspath(target):
        return
    with open(source, "rb") as src, atomic_file(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def save_model_file(model, path):
    """`model.save(path)` (a .keras file, its directory made if missing), written in
    `<path>.partial/` and renamed into place, so a killed save never leaves a file that looks
    complete."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = partial_path(path)
    remove_partial(path)
    os.makedirs(staging)
    try:
        model.save(os.path.join(staging, os.path.basename(path)))
        os.replace(os.path.join(staging, os.path.basename(path)), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """A run directory's files, as `read_run_files` finds them.

    Args:
        directory: the directory.
        model_file: its model.keras.
        vocab_file: its vocab.txt.
        seq_length: preprocessor.json's, or None without it.
        lower_case: preprocessor.json's; True without it (or without the file).
        labels: labels.json as a `LabelMap`, or None without that file.
    """

    directory: str
    model_file: str
    vocab_file: str
    seq_length: int = None
    lower_case: bool = True
    labels: LabelMap = None


def read_run_files(directory):
    """The files `save_run_files` writes, checked: model.keras and vocab.txt must be there,
    preprocessor.json and labels.json are read when present.

    Returns:
        A `RunFiles`.

    Example:
    >>> run = read_run_files("runs/classifier")
    >>> model = keras.saving.load_model(run.model_file)
    """
    directory = os.fspath(directory)
    model_file, vocab_file = (os.path.join(directory, name) for name in (MODEL_FILE, VOCAB_FILE))
    for path in (model_file, vocab_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} does not exist; a run directory holds "
                                    f"{MODEL_FILE} and the {VOCAB_FILE} it was trained with.")
    settings = {}
    settings_file = os.path.join(directory, PREPROCESSOR_FILE)
    if os.path.isfile(settings_file):
        with open(settings_file, encoding="utf-8") as f:
            try:
                settings = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{settings_file!r} is not valid JSON ({e}); fix or delete "
                                 "it.") from None
    labels_file = os.path.join(directory, LabelMap.FILE_NAME)
    return RunFiles(directory, model_file, vocab_file, seq_length=settings.get("seq_length"),
                    lower_case=bool(settings.get("lower_case", True)),
                    labels=LabelMap.load(labels_file) if os.path.isfile(labels_file) else None)
