"""Pretrained directories in and out, one call each way, in three formats:

    save_pretrained(model, directory, preprocessor, format=...)  a model -> a directory
    from_pretrained(directory, model=...)                        a directory -> (model, preprocessor)

    "keras"   ours: model.keras (any of our models, with its head and label names), config.json,
              vocab.txt, preprocessor.json, labels.json. Every recipe's output directory.
    "google"  Google's: bert_config.json, bert_model.ckpt.*, vocab.txt, as Google's BERT code
              reads them (task heads under the names of its run_classifier.py / run_squad.py)
    "hf"      Hugging Face's: config.json, model.safetensors, vocab.txt, tokenizer_config.json,
              for transformers' BertModel, BertForPreTraining, BertForSequenceClassification,
              BertForTokenClassification or BertForQuestionAnswering (`hf_weights`)

`from_pretrained` reads Google's and Hugging Face's own releases too. The weights are read and
written by `keras_bert_min.weights` (Google) and `keras_bert_min.hf_weights` (Hugging Face).
"""

import glob
import json
import logging
import os
import re
import shutil

import keras
import tensorflow as tf

from keras_bert_min._checks import (atomic_directory, check_int, partial_path, refuse_non_empty,
                                    remove_partial, write_json)
from keras_bert_min.config import BertConfig
from keras_bert_min.hf_weights import (hf_config, hf_model_kind, hf_tokenizer_config,
                                       load_hf_weights, save_hf_weights)
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.tasks import (BertClassifier, BertMultipleChoice, BertSpanPredictor,
                                  BertTokenClassifier)
from keras_bert_min.text.labelled import LabelMap
from keras_bert_min.text.preprocessor import SETTINGS_FILE, VOCAB_FILE, BertPreprocessor
# find_checkpoint_prefix: a directory names the same checkpoint here as in load_google_checkpoint.
from keras_bert_min.weights import (find_checkpoint_prefix, load_google_checkpoint,
                                    save_google_checkpoint)

_log = logging.getLogger(__name__)

FORMATS = ("keras", "google", "hf")
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"            # ours in the keras format, Hugging Face's in the hf one
GOOGLE_CONFIG_FILE = "bert_config.json"
GOOGLE_CHECKPOINT = "bert_model.ckpt"
HF_WEIGHTS_FILE = "model.safetensors"
HF_TOKENIZER_FILE = "tokenizer_config.json"
LABELS_FILE = LabelMap.FILE_NAME       # labels.json
# Which of our models a google-format directory holds (a TF1 checkpoint cannot say).
MODEL_KIND_FILE = "keras_bert_min.json"
# The file that makes each format's directory loadable: moved in last, removed first.
_WEIGHTS_FILES = (MODEL_FILE, GOOGLE_CHECKPOINT + ".index", HF_WEIGHTS_FILE)
_LAYOUT_FILES = (*_WEIGHTS_FILES, CONFIG_FILE, GOOGLE_CONFIG_FILE, HF_TOKENIZER_FILE,
                 LABELS_FILE, MODEL_KIND_FILE, VOCAB_FILE, SETTINGS_FILE)

# The `model=` names of from_pretrained, and the class of each.
MODEL_CLASSES = {
    "encoder": BertEncoder,
    "pretrainer": BertPretrainer,
    "classifier": BertClassifier,
    "token_classifier": BertTokenClassifier,
    "span_predictor": BertSpanPredictor,
    "multiple_choice": BertMultipleChoice,
}
_KIND_OF_CLASS = {cls: kind for kind, cls in MODEL_CLASSES.items()}
_LABELLED = (BertClassifier, BertTokenClassifier)
DEFAULT_SEQ_LENGTH = 128


# --- saving ---------------------------------------------------------------------------------------

def save_pretrained(model, directory, preprocessor=None, format="keras", label_names=None,
                    overwrite=False):
    """Writes `model` and its preprocessor as a directory that `from_pretrained` reads back.

    Args:
        model: a `BertEncoder`, `BertPretrainer` or task model of `keras_bert_min.tasks`.
        directory: where to write. A new (or empty) directory is built as
            `<directory>.partial` and renamed when complete, so a killed save never leaves a
            directory that looks complete.
        preprocessor: the model's `BertPreprocessor` (vocab.txt and its settings); required
            by the google and hf formats, whose tools read vocab.txt; a keras-format directory
            saved without one has no vocabulary.
        format: "keras" (ours), "google" or "hf"; see the module docstring.
        label_names: a classifier's or tagger's class names, in id order; default: its own.
        overwrite: write into a non-empty directory (refused otherwise, before any work): the
            files of every format's layout there are replaced, the weights file last (and
            removed first, so a killed save leaves no loadable mix of old and new); other files,
            such as a training run's logs, stay.

    Returns:
        The directory.

    Example:
    >>> save_pretrained(classifier, "sentiment-hf", preprocessor, format="hf")
    >>> classifier, preprocessor = from_pretrained("sentiment-hf")
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    kind = _KIND_OF_CLASS.get(type(model))
    if kind is None:
        raise ValueError(f"save_pretrained takes a BertEncoder, a BertPretrainer or a task model "
                         f"of keras_bert_min.tasks, got a {type(model).__name__}.")
    if format == "google" and not model.bert_config.fits_google_format:
        raise ValueError(f"hidden_act {model.bert_config.hidden_act!r} cannot be written as "
                         "Google's bert_config.json (its 'gelu' is the tanh form); save with "
                         "format='keras' or 'hf'.")
    if preprocessor is None and format != "keras":
        raise ValueError(f"format={format!r} needs the preprocessor: Google's and Hugging Face's "
                         "tools read vocab.txt beside the weights. Pass the model's "
                         "BertPreprocessor.")
    if preprocessor is not None and preprocessor.vocab_size != model.bert_config.vocab_size:
        raise ValueError(f"The preprocessor has {preprocessor.vocab_size} tokens but the model's "
                         f"vocab_size is {model.bert_config.vocab_size}; pass the model's own.")
    directory = os.fspath(directory)
    refuse_non_empty(directory, overwrite)
    if label_names is not None:
        if not isinstance(model, _LABELLED):
            raise ValueError(f"label_names need a classifier or a token classifier, got a "
                             f"{type(model).__name__}.")
        model.set_label_names(label_names)  # checked against the class count
    label_names = getattr(model, "label_names", None)

    def write(staging):
        if format == "keras":
            model.save(os.path.join(staging, MODEL_FILE))
            model.bert_config.to_json_file(os.path.join(staging, CONFIG_FILE))
        elif format == "google":
            save_google_checkpoint(model, os.path.join(staging, GOOGLE_CHECKPOINT))
            model.bert_config.to_json_file(os.path.join(staging, GOOGLE_CONFIG_FILE),
                                           format="google")
            head = {"num_classes": model.num_classes, "dropout": model.dropout} \
                if isinstance(model, _LABELLED) else {}
            if isinstance(model, BertMultipleChoice):
                head["dropout"] = model.dropout
            if isinstance(model, BertTokenClassifier):
                head["ignore_label"] = model.ignore_label
            write_json(os.path.join(staging, MODEL_KIND_FILE), {"model": kind, **head})
        else:
            save_hf_weights(model, os.path.join(staging, HF_WEIGHTS_FILE))
            write_json(os.path.join(staging, CONFIG_FILE), hf_config(model, label_names))
        if preprocessor is not None:
            preprocessor.save(staging)
            if format == "hf":
                write_json(os.path.join(staging, HF_TOKENIZER_FILE), hf_tokenizer_config(
                    preprocessor, model.bert_config.max_position_embeddings))
        if label_names is not None:
            LabelMap(label_names).save(os.path.join(staging, LABELS_FILE))

    if os.path.isdir(directory) and os.listdir(directory):
        _write_into(directory, write)
    else:
        with atomic_directory(directory) as staging:
            write(staging)
    return directory


def _write_into(directory, write):
    """`write(staging)` beside the directory's other files: the layout's files are staged in
    `<directory>/.save.partial/`, every old layout file is removed (weights first), and the new
    ones are moved in (weights last)."""
    staging_target = os.path.join(directory, ".save")
    remove_partial(staging_target)
    staging = partial_path(staging_target)
    os.makedirs(staging)
    try:
        write(staging)
        old = [os.path.join(directory, name) for name in _LAYOUT_FILES]
        old += glob.glob(os.path.join(glob.escape(directory), GOOGLE_CHECKPOINT + ".*"))
        for path in old:  # _LAYOUT_FILES lists the weights files first
            if os.path.isfile(path):
                os.remove(path)
        for name in sorted(os.listdir(staging), key=lambda n: n in _WEIGHTS_FILES):
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- loading --------------------------------------------------------------------------------------

def from_pretrained(directory, model="auto", seq_length=None, lower_case=None, num_classes=None,
                    dropout=None, allow_missing_pooler=False):
    """A BERT model and its text preprocessor from a directory: one `save_pretrained` wrote,
    Google's release (bert_config.json + TF1 checkpoint + vocab.txt) or Hugging Face's
    (config.json + model.safetensors + vocab.txt).

    Args:
        directory: the directory, e.g. Google's unzipped `uncased_L-12_H-768_A-12`.
        model: what to build. "auto": the model the directory holds, with its head and label
            names (what `save_pretrained` wrote, the `BertFor...` class of a Hugging Face
            config, an encoder for Google's releases). Or one of `MODEL_CLASSES`: "encoder",
            "pretrainer" (needs the heads' weights), "classifier", "token_classifier",
            "span_predictor", "multiple_choice". A task model takes its head from the
            directory when that holds the same task, and gets a new (random) head on the
            directory's encoder otherwise.
        seq_length: the preprocessor's output length; default: the saved one, else 128.
        lower_case: whether the preprocessor lower-cases; default: the saved setting, else
            `tokenizer_config.json`'s `do_lower_case`, else Google's naming (`cased_L-...` and
            `multi_cased_L-...` are cased, anything else uncased).
        num_classes: the class count of a new classifier or tagger head (required then); for a
            saved head of the same task it must match.
        dropout: the dropout rate of a new classifier, tagger or multiple-choice head
            (default 0.1).
        allow_missing_pooler: see `hf_weights.load_hf_weights`.

    Returns:
        `(model, preprocessor)`; the preprocessor is None for a keras-format directory saved
        without one.

    Example:
    >>> encoder, preprocessor = from_pretrained("uncased_L-12_H-768_A-12")
    >>> classifier, _ = from_pretrained("runs/pretrain", "classifier", num_classes=3)
    >>> classifier, preprocessor = from_pretrained("runs/classifier")  # with its label names
    """
    directory = os.fspath(directory)
    if model != "auto" and model not in MODEL_CLASSES:
        raise ValueError(f"model must be 'auto' or one of {tuple(MODEL_CLASSES)}, got {model!r}.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory!r} is not a directory; pass the directory holding "
                                "the config, the weights and vocab.txt.")
    if num_classes is not None:
        check_int("num_classes", num_classes)
    if os.path.isfile(os.path.join(directory, MODEL_FILE)):
        bert, saved_head = _from_keras_file(directory, model, num_classes, dropout)
    else:
        bert, saved_head = _from_weights_files(directory, model, num_classes, dropout,
                                               allow_missing_pooler)
    if (num_classes is not None and not isinstance(bert, _LABELLED)) or (
            dropout is not None and not isinstance(bert, (*_LABELLED, BertMultipleChoice))):
        raise ValueError(f"num_classes and dropout are for a classifier or token_classifier "
                         f"head (dropout also for multiple_choice), and {directory!r} gives a "
                         f"{type(bert).__name__}; pass model='classifier' or 'token_classifier'.")
    # labels.json names the saved head's classes, never those of a new head.
    labels_file = os.path.join(directory, LABELS_FILE)
    if saved_head and isinstance(bert, _LABELLED) and bert.label_names is None \
            and os.path.isfile(labels_file):
        saved = LabelMap.load(labels_file)
        if len(saved) == bert.num_classes:
            bert.set_label_names(saved.names)
    return bert, _preprocessor(directory, bert.bert_config, seq_length, lower_case)


def _new_model(kind, encoder, num_classes, dropout=None, head=None):
    """A model of `kind` around `encoder`; a head's settings from `head`, else new."""
    if kind == "encoder":
        return encoder
    if kind in ("pretrainer", "span_predictor"):
        return MODEL_CLASSES[kind](encoder)
    if kind == "multiple_choice":
        head = dict(head or {})
        if dropout is not None:
            head["dropout"] = dropout
        return BertMultipleChoice(encoder, **head)
    head = dict(head or {})
    head["num_classes"] = num_classes or head.get("num_classes")
    if dropout is not None:
        head["dropout"] = dropout
    if head["num_classes"] is None:
        raise ValueError(f"A new {kind} head needs num_classes, e.g. "
                         f"from_pretrained(directory, {kind!r}, num_classes=3).")
    return MODEL_CLASSES[kind](encoder, **head)


def _check_same_head(directory, kind, saved_classes, num_classes):
    if num_classes is not None and saved_classes is not None and num_classes != saved_classes:
        raise ValueError(f"{directory!r} holds a {kind} of {saved_classes} classes, not "
                         f"{num_classes}, whose trained head would be lost: load it with "
                         f"num_classes={saved_classes}, or as model='encoder' and put a new head "
                         "on that.")


def _from_keras_file(directory, kind, num_classes, dropout):
    path = os.path.join(directory, MODEL_FILE)
    saved = keras.saving.load_model(path)
    saved_kind = _KIND_OF_CLASS.get(type(saved))
    if saved_kind is None:
        raise ValueError(f"{path!r} holds a {type(saved).__name__}, not one of our models "
                         f"({', '.join(cls.__name__ for cls in MODEL_CLASSES.values())}).")
    if kind in ("auto", saved_kind):
        _check_same_head(directory, saved_kind, getattr(saved, "num_classes", None), num_classes)
        return saved, True
    if kind == "pretrainer":
        raise ValueError(f"{path!r} holds a {type(saved).__name__}, which has no pretraining "
                         "heads; load it as 'encoder' or as a task model.")
    encoder = saved if isinstance(saved, BertEncoder) else saved.encoder
    return _new_model(kind, encoder, num_classes, dropout), False


def _from_weights_files(directory, kind, num_classes, dropout, allow_missing_pooler):
    weights, weights_format = _find_weights(directory)
    config_file = _find_config(directory, weights_format)
    config = BertConfig.from_json_file(config_file)
    saved_kind, head = _saved_kind(directory, weights_format, config_file, weights)
    kind = saved_kind if kind == "auto" else kind
    # Google's run_classifier.py names its head the same for any per-class head.
    same_head = kind != "encoder" and (kind == saved_kind or (
        {kind, saved_kind} == {"classifier", "token_classifier"} and head.get("google_names")))
    head.pop("google_names", None)
    if same_head:
        _check_same_head(directory, kind, head.get("num_classes"), num_classes)
    encoder = BertEncoder(config)
    bert = _new_model(kind, encoder, num_classes, dropout, head if same_head else None)
    # The file's weights go into the whole model when it holds that model's head (a pretrainer
    # must), else into the encoder under a new head. A tagger or span head never reads the
    # pooler, which transformers does not write for them.
    target = bert if same_head or kind == "pretrainer" else encoder
    if weights_format == "google":
        report = load_google_checkpoint(target, weights)
    else:
        report = load_hf_weights(target, weights, allow_missing_pooler=allow_missing_pooler
                                 or isinstance(bert, (BertTokenClassifier, BertSpanPredictor)))
    _log.info("%s", report)
    return bert, same_head


def _saved_kind(directory, weights_format, config_file, weights):
    """(model kind, head settings) of a google- or hf-format directory."""
    if weights_format == "hf":
        with open(config_file, encoding="utf-8") as f:
            model_class, head = hf_model_kind(json.load(f))
        return _KIND_OF_CLASS[model_class], head
    path = os.path.join(directory, MODEL_KIND_FILE)
    if not os.path.isfile(path):
        # Google's own directories: a fine-tuning script's head, by its names, or a release
        # (whose pretraining heads are used on request).
        shapes = tf.train.load_checkpoint(weights).get_variable_to_shape_map()
        if "output_weights" in shapes:
            return "classifier", {"num_classes": shapes["output_weights"][0], "google_names": True}
        if "cls/squad/output_weights" in shapes:
            return "span_predictor", {}
        return "encoder", {}
    with open(path, encoding="utf-8") as f:
        head = json.load(f)
    kind = head.pop("model", None)
    if kind not in MODEL_CLASSES:
        raise ValueError(f"{path!r} names the model {kind!r}, not one of {tuple(MODEL_CLASSES)}.")
    return kind, head


def _preprocessor(directory, config, seq_length, lower_case):
    vocab_file = os.path.join(directory, VOCAB_FILE)
    if not os.path.isfile(vocab_file) and os.path.isfile(os.path.join(directory, MODEL_FILE)):
        return None  # our layout, saved without a preprocessor
    _check_vocab_size(vocab_file, config, directory)
    saved = {}
    if os.path.isfile(os.path.join(directory, SETTINGS_FILE)):
        saved = BertPreprocessor.read_settings(directory)
    seq_length = saved.get("seq_length", DEFAULT_SEQ_LENGTH) if seq_length is None else seq_length
    check_int("seq_length", seq_length, 3, config.max_position_embeddings,
              hint=" (room for [CLS] and two [SEP], at most max_position_embeddings)")
    if lower_case is None:
        lower_case = saved["lower_case"] if "lower_case" in saved else _lower_case(directory)
    return BertPreprocessor(vocab_file, seq_length, lower_case=lower_case)


def _find_weights(directory):
    prefix = find_checkpoint_prefix(directory)
    if prefix is not None:
        return prefix, "google"
    safetensors_file = os.path.join(directory, HF_WEIGHTS_FILE)
    if os.path.isfile(safetensors_file):
        return safetensors_file, "hf"
    unreadable = [f for f in ("pytorch_model.bin", "tf_model.h5", "model.safetensors.index.json")
                  if os.path.exists(os.path.join(directory, f))]
    raise FileNotFoundError(
        f"No BERT weights in {directory!r}: expected model.keras, a TF1 checkpoint "
        "(bert_model.ckpt.index and its .data-* files) or model.safetensors"
        + (f"; {unreadable} cannot be read here: convert them to a single model.safetensors."
           if unreadable else "."))


def _find_config(directory, weights_format):
    names = (GOOGLE_CONFIG_FILE, CONFIG_FILE)
    for name in names if weights_format == "google" else names[::-1]:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No BERT config in {directory!r}: expected bert_config.json "
                            "(Google) or config.json (Hugging Face).")


def _check_vocab_size(path, config, directory):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No vocab.txt in {directory!r}; the WordPiece vocabulary that "
                                "came with the weights must sit next to them.")
    with open(path, encoding="utf-8") as f:
        size = sum(1 for _ in f)  # a token a line, as Google's tokenization.load_vocab reads it
    if size != config.vocab_size:
        raise ValueError(f"{path!r} has {size} tokens but the config's vocab_size is "
                         f"{config.vocab_size}; use the vocab.txt that came with these weights.")


def _lower_case(directory):
    path = os.path.join(directory, HF_TOKENIZER_FILE)
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
