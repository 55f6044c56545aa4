"""A directory of pretrained files -> a BERT model and its BertPreprocessor.

    from_pretrained      config + weights + vocab.txt, Google's or Hugging Face's -> (model,
                         preprocessor)
    _find_weights        the directory's TF1 checkpoint, else its model.safetensors
    _find_config         bert_config.json or config.json, each kind of weights preferring its own
    _checked_vocab_file  vocab.txt, checked against the config's vocab_size
    _lower_case          tokenizer_config.json's do_lower_case, else Google's cased release names

The weights themselves are read by `keras_bert_min.weights`.
"""

import json
import logging
import os
import re

from keras_bert_min.config import BertConfig
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.text.preprocessor import BertPreprocessor
# _find_checkpoint_prefix: a directory names the same checkpoint here as in load_google_checkpoint.
from keras_bert_min.weights import (_find_checkpoint_prefix, load_google_checkpoint,
                                    load_hf_weights)

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
    if (isinstance(seq_length, bool) or not isinstance(seq_length, int)
            or not 3 <= seq_length <= config.max_position_embeddings):
        raise ValueError(f"seq_length must be an int in [3, {config.max_position_embeddings}] "
                         "(room for [CLS] and two [SEP], at most max_position_embeddings), got "
                         f"{seq_length!r}.")
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


def _find_weights(directory):
    prefix = _find_checkpoint_prefix(directory)
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
