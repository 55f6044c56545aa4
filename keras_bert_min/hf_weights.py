"""Hugging Face BERT weights (`model.safetensors`) in and out, by the name map derived from
Google's names.

    bert/encoder/layer_3/attention/self/query/kernel [H,H]
        -> encoder.layer.3.attention.self.query.weight [H,H], transposed ([out, in])

Each of our models has the layout of one transformers class (`HF_ARCHITECTURES`): a bare
`BertModel` for the encoder, and `bert.`-prefixed encoder keys plus the head's for the others
(`cls.predictions.*` and `cls.seq_relationship.*`, `classifier.*`, `qa_outputs.*`). Written and
read with `safetensors.numpy`, never torch; a load is checked whole before anything is assigned,
with the checks of `keras_bert_min.weights`.
"""

import os
import re

import numpy as np
import safetensors
import safetensors.numpy

from keras_bert_min._checks import atomic_file
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.tasks import (BertClassifier, BertMultipleChoice, BertSpanPredictor,
                                  BertTokenClassifier)
from keras_bert_min.weights import (GOOGLE_NSP_WEIGHTS, LoadReport, assign_all, check_matches,
                                    google_targets, head_skip_reason)

# The transformers class whose `from_pretrained` reads the file each of our models writes.
HF_ARCHITECTURES = {
    BertEncoder: "BertModel",
    BertPretrainer: "BertForPreTraining",
    BertClassifier: "BertForSequenceClassification",
    BertTokenClassifier: "BertForTokenClassification",
    BertSpanPredictor: "BertForQuestionAnswering",
    BertMultipleChoice: "BertForMultipleChoice",
}
# transformers builds these two without a pooler (`add_pooling_layer=False`): a pooler in
# their file would be an unexpected key, and theirs is never read.
_WITHOUT_POOLER = (BertTokenClassifier, BertSpanPredictor)

_HF_HEAD_NAMES = {
    "output_weights": "classifier.weight",
    "output_bias": "classifier.bias",
    "cls/squad/output_weights": "qa_outputs.weight",
    "cls/squad/output_bias": "qa_outputs.bias",
    "cls/predictions/output_bias": "cls.predictions.bias",
    GOOGLE_NSP_WEIGHTS: "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
}
_HF_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_HF_TIED_DECODER = "cls.predictions.decoder.weight"
_HF_POOLER = ("pooler.dense.weight", "pooler.dense.bias")
# Heads of BertForPreTraining, BertFor{Sequence,Token}Classification, BertForQuestionAnswering.
_HF_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")


def hf_name(google_name):
    """bert/encoder/layer_3/output/LayerNorm/gamma -> encoder.layer.3.output.LayerNorm.weight"""
    if google_name in _HF_HEAD_NAMES:
        return _HF_HEAD_NAMES[google_name]
    path, leaf = google_name.removeprefix("bert/").rsplit("/", 1)
    path = re.sub(r"layer_(\d+)", r"layer.\1", path).replace("/", ".")
    if leaf.endswith("_embeddings"):
        return f"{path}.{leaf}.weight"
    return f"{path}.{_HF_LEAVES[leaf]}"


def _normalized_hf_name(name):
    """One spelling for the variants: the `bert.` prefix (BertForPreTraining), LayerNorm
    `gamma`/`beta` (older files), the decoder's copy of the MLM bias."""
    name = name.removeprefix("bert.")
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    return "cls.predictions.bias" if name == "cls.predictions.decoder.bias" else name


def _read_safetensors(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No safetensors file at {path!r}; pass the path of a "
                                "model.safetensors file.")
    try:
        return safetensors.numpy.load_file(path)
    except (safetensors.SafetensorError, TypeError, ValueError) as e:
        raise ValueError(f"Cannot read {path!r} as safetensors ({e}); the file is truncated, "
                         "corrupt or not safetensors: download it again.") from None


def load_hf_weights(model, safetensors_path, allow_missing_pooler=False):
    """Loads a Hugging Face BERT `model.safetensors` into an encoder or a pretrainer.

    Reads `BertModel` files (`embeddings.word_embeddings.weight`, ...) and those of the
    `BertFor...` classes (`bert.` prefix and their heads, `HF_ARCHITECTURES`), with LayerNorm
    `weight`/`bias` or older `gamma`/`beta`.
    Linear weights are [out, in] and are transposed. `position_ids` buffers are skipped, and so
    are heads (`cls.*`, `classifier.*`, `qa_outputs.*`) the model does not have, unless it is a
    pretrainer (whose file must hold exactly its heads). A token classifier and a span predictor
    keep their own pooler when the file has none, as transformers writes them. The MLM
    decoder weight, when stored, must equal the word embeddings, which our head ties to it.
    Everything is checked before anything is assigned.

    Args:
        model: a `BertEncoder`, `BertPretrainer` or task model built from the file's
            `config.json`.
        safetensors_path: the `.safetensors` file.
        allow_missing_pooler: a file saved without its pooler (`add_pooling_layer=False`) is an
            error unless this is True; then the model keeps its own (random) pooler, and the
            report says so. `pooled_output` is then meaningless until fine-tuned.

    Returns:
        A `LoadReport`.

    Example:
    >>> encoder = BertEncoder(BertConfig.from_json_file("all-MiniLM-L6-v2/config.json"))
    >>> print(load_hf_weights(encoder, "all-MiniLM-L6-v2/model.safetensors"))
    Loaded 103 variables from all-MiniLM-L6-v2/model.safetensors into bert_encoder; skipped 1 ...
    """
    source = os.fspath(safetensors_path)
    tensors = _read_safetensors(source)
    has_heads = isinstance(model, BertPretrainer)
    head_reason = head_skip_reason(model)
    targets = {}
    for google_name, target in google_targets(model).items():
        # Hugging Face stores Dense kernels as [out, in], and the NSP weights as Google does.
        transposed = target.transposed or google_name.endswith("/kernel")
        targets[hf_name(google_name)] = target._replace(transposed=transposed)

    arrays, file_names, skipped, unexpected = {}, {}, {}, []
    for name in sorted(tensors):
        key = _normalized_hf_name(name)
        if key.endswith(("position_ids", "token_type_ids")):
            skipped[name] = "buffer(s)"
        elif key.startswith(_HF_HEAD_PREFIXES) and key not in targets and head_reason:
            skipped[name] = head_reason
        elif key == _HF_TIED_DECODER:
            skipped[name] = "tied copy of the word embeddings"
        elif key not in targets:
            unexpected.append(name)
        elif key in arrays and not np.array_equal(arrays[key], tensors[name]):
            raise ValueError(f"{source} holds both {file_names[key]} and {name}, which are the "
                             "same variable but differ; nothing was assigned. Re-export the model.")
        elif key in arrays:
            skipped[name] = "duplicate(s)"
        else:
            arrays[key], file_names[key] = tensors[name], name

    kept, hints = (), []
    if all(name not in arrays for name in _HF_POOLER):
        if allow_missing_pooler or isinstance(model, _WITHOUT_POOLER):
            kept = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
            targets = {n: t for n, t in targets.items() if n not in _HF_POOLER}
        else:
            hints.append("the file has no pooler; pass allow_missing_pooler=True to keep the "
                         "model's own (untrained) pooler")
    if has_heads and not any(key.startswith("cls.") for key in arrays):
        hints.append("the file has no pretraining heads (cls.*); load it into a BertEncoder")
    check_matches(targets, {k: v.shape for k, v in arrays.items()}, unexpected, source, model,
                   hints)

    decoders = [tensors[n] for n in tensors if _normalized_hf_name(n) == _HF_TIED_DECODER]
    word_embeddings = arrays.get("embeddings.word_embeddings.weight")
    if has_heads and any(not np.array_equal(d, word_embeddings) for d in decoders):
        raise ValueError(f"{_HF_TIED_DECODER} in {source} differs from "
                         "embeddings.word_embeddings.weight, but our MLM head ties the two; "
                         "nothing was assigned. Only tied-embedding checkpoints can be loaded.")
    assign_all(targets, arrays, source)
    return LoadReport(source, model.name, tuple(file_names[k] for k in targets), skipped, kept)


# --- writing ----------------------------------------------------------------------------------

def hf_tensors(model):
    """The model's variables as transformers' `save_pretrained` names and lays them out for
    `HF_ARCHITECTURES[type(model)]`: [out, in] linear weights, LayerNorm `weight`/`bias`, the
    `position_ids` buffer, no copy of the tied MLM decoder.

    Returns:
        dict of name -> NumPy array.
    """
    prefix = "" if isinstance(model, BertEncoder) else "bert."
    tensors = {}
    for google_name, target in google_targets(model).items():
        name = hf_name(google_name)
        if name in _HF_POOLER and isinstance(model, _WITHOUT_POOLER):
            continue
        value = np.asarray(target.variable)
        if target.transposed or google_name.endswith("/kernel"):
            value = value.T
        key = name if name.startswith(_HF_HEAD_PREFIXES) else prefix + name
        tensors[key] = np.ascontiguousarray(value)
    # The buffer transformers' BertEmbeddings saves: the positions 0..max_position_embeddings-1.
    positions = model.bert_config.max_position_embeddings
    tensors[prefix + "embeddings.position_ids"] = np.arange(positions, dtype=np.int64)[None]
    return tensors


def save_hf_weights(model, path):
    """Writes `model.safetensors` for `HF_ARCHITECTURES[type(model)]` (see `hf_tensors`), with
    the `{"format": "pt"}` metadata transformers checks, atomically.

    Example:
    >>> save_hf_weights(encoder, "out/model.safetensors")  # transformers' BertModel reads it
    """
    data = safetensors.numpy.save(hf_tensors(model), metadata={"format": "pt"})
    with atomic_file(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


# --- the files beside the weights ---------------------------------------------------------------

def hf_config(model, label_names=None):
    """The `config.json` transformers reads for `model`'s class (`HF_ARCHITECTURES`): the
    BERT fields in Hugging Face's spelling, and for a classifier or tagger its `id2label` /
    `label2id` (default names "LABEL_i", as transformers' own) and its head's dropout."""
    config = model.bert_config.to_hf_dict(HF_ARCHITECTURES[type(model)])
    if isinstance(model, (BertClassifier, BertTokenClassifier)):
        names = label_names or [f"LABEL_{i}" for i in range(model.num_classes)]
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
        config["classifier_dropout"] = model.dropout
    if isinstance(model, BertClassifier):
        config["problem_type"] = ("regression" if model.num_classes == 1
                                  else "single_label_classification")
    if isinstance(model, BertTokenClassifier):  # ours; transformers keeps unknown keys as is
        config["ignore_label"] = model.ignore_label
    if isinstance(model, BertMultipleChoice):
        config["classifier_dropout"] = model.dropout
    return config


def hf_tokenizer_config(preprocessor, max_length):
    """The `tokenizer_config.json` of transformers' BertTokenizer for `preprocessor`'s rules."""
    return {"tokenizer_class": "BertTokenizer", "do_lower_case": preprocessor.lower_case,
            "strip_accents": None, "tokenize_chinese_chars": True,
            "model_max_length": max_length, "unk_token": "[UNK]", "sep_token": "[SEP]",
            "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def hf_model_kind(config_values):
    """(our model class, head settings) for a Hugging Face `config.json`'s values: the class of
    its `architectures` when `HF_ARCHITECTURES` has it (with `num_classes`, `label_names` and
    `dropout` of a classifier's head), else `BertEncoder` (e.g. bert-base-uncased's
    BertForMaskedLM, whose encoder is all we read)."""
    architecture = (config_values.get("architectures") or [None])[0]
    model_class = {name: cls for cls, name in HF_ARCHITECTURES.items()}.get(architecture,
                                                                            BertEncoder)
    settings = {}
    if model_class in (BertClassifier, BertTokenClassifier):
        id2label = config_values.get("id2label") or {}
        settings["num_classes"] = len(id2label) or int(config_values.get("num_labels", 2))
        names = [str(id2label.get(str(i), i)) for i in range(len(id2label))]
        if names and names != [f"LABEL_{i}" for i in range(len(names))]:
            settings["label_names"] = names
        if config_values.get("classifier_dropout") is not None:
            settings["dropout"] = float(config_values["classifier_dropout"])
    if model_class is BertMultipleChoice and config_values.get("classifier_dropout") is not None:
        settings["dropout"] = float(config_values["classifier_dropout"])
    if model_class is BertTokenClassifier and "ignore_label" in config_values:
        settings["ignore_label"] = int(config_values["ignore_label"])
    return model_class, settings
