"""SavedModel export for TF Serving: id and raw-text signatures, written atomically.

`export_saved_model` writes one version of a model in the layout TF Serving watches:

    <export_base>/<version>/saved_model.pb
                           /variables/...
                           /assets.extra/keras_bert_min.json   what was exported, for people
                           /assets.extra/vocab.txt             the preprocessor's vocabulary and
                           /assets.extra/preprocessor.json     settings (BertPreprocessor.load)

Signatures (inputs -> outputs, all batch and sequence dimensions dynamic; `signatures.py`
builds them, with each task's text-in, answers-out outputs):

    serving_default   the model's own inputs, e.g. input_word_ids, input_mask, input_type_ids
                      int32 [B, S] -> the model's outputs
    serve_text        text tf.string [B] -> the model's outputs and input_word_ids (a tagger:
                      also tags and each piece's byte offsets in the text)
    serve_text_pair   text_a, text_b tf.string [B] -> the same, for sentence pairs
    serve_question    question, context [B] -> answer text, byte offsets, score (span predictor)
    serve_choices     context [B], choices [B, K] -> choice, probabilities (multiple choice)

The text signatures pad each request only to its longest example (`text_padding="longest"`, the
default; at most the preprocessor's seq_length), so per-token outputs are [B, L, ...] with L
varying by request (with TF Serving's `--enable_batching`, L is the longest text of the merged
batch): the returned `input_word_ids` and its zero padding say which positions are real.
Short texts then cost what their tokens cost, not seq_length's (benchmarks/bench_serve.py
measures both; README "Speed"). `text_padding="max_length"` keeps every request at seq_length.

Floating outputs are float32 whatever the model's dtype policy. A classifier (an output `logits`
of shape [B, C], C > 1) also returns `probabilities` (softmax) and `label` (argmax, int32), and
given `label_names` also `label_name` (tf.string).

The text signatures tokenize in the graph with the given `BertPreprocessor`. They exist only for
models whose inputs are exactly the three encoder inputs: text alone cannot say which positions
a pretrainer should predict (`masked_lm_positions`), so a pretrainer gets `serving_default` only
(export `pretrainer.encoder` to serve it on text). They also return the packed `input_word_ids`,
so per-token outputs can be lined up with the word pieces (vocab.txt is in assets.extra).

Why the variables are tracked by hand: a Keras 3 variable wraps a `tf.Variable`, and when a Keras
model is saved as part of a `tf.Module`, each wrapper is exported as a second variable that the
checkpoint restores while the signatures read the first. `tf.saved_model.load` restores by object
and never notices; the TF1 session loader of TF Serving restores by graph and leaves the first
copy uninitialised ("Could not find variable ..."). Tracking the wrapped `tf.Variable`s, and not
the Keras objects, exports each variable once, under the name the signatures use. (Keras' own
`model.export` tracks the wrapped variables too, but keeps the wrappers as well, so it stores each
weight two or three times: 75 variables for the 26 of a one-layer encoder.)

The version appears in one atomic rename of a finished directory. TF Serving loads only
all-digit directory names, so the work directory ("<version>.partial") is never loaded, even if
a crash leaves it behind; a failed export removes it, and the next export of that version
removes what a killed one left.
"""

import os
import re

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from keras_bert_min._checks import atomic_directory, check_int, stop_point, write_json
from keras_bert_min.config import ENCODER_INPUTS
from keras_bert_min import signatures
from keras_bert_min.signatures import is_classifier, signature_functions
from keras_bert_min.tasks import BertTokenClassifier
from keras_bert_min.text.preprocessor import PADDING_MODES
from keras_bert_min.text.serving_ops import graph_op_types, unservable_ops

# The signature names, part of this module's API too (recipes and benchmarks use them here).
SERVING_DEFAULT, SERVE_TEXT, SERVE_TEXT_PAIR, SERVE_QUESTION, SERVE_CHOICES = (
    signatures.SERVING_DEFAULT, signatures.SERVE_TEXT, signatures.SERVE_TEXT_PAIR,
    signatures.SERVE_QUESTION, signatures.SERVE_CHOICES)
METADATA_FILE = os.path.join("assets.extra", "keras_bert_min.json")
VOCAB_FILE = os.path.join("assets.extra", "vocab.txt")

# TF Serving's file-system source takes a child of the base path as a version iff it parses as
# an integer; everything else (our work directories included) is ignored.
_VERSION_DIR = re.compile(r"[0-9]+")


def export_saved_model(model, export_base, preprocessor=None, version=None, label_names=None,
                       text_padding="longest", max_answer_length=30, null_score_threshold=None,
                       max_query_length=64):
    """Exports a Keras BERT model as a new version for TF Serving; see the module docstring.

    Args:
        model: a functional Keras model with dict inputs and dict outputs, such as
            `BertEncoder`, `BertPretrainer` or a fine-tuning model from `tasks.py`.
        export_base: the model's base directory (TF Serving's `--model_base_path`); created
            if missing.
        preprocessor: a `keras_bert_min.text.BertPreprocessor` to add the raw-text signatures
            `serve_text` and `serve_text_pair`; None exports `serving_default` only.
        version: the integer version to write; None takes one more than the highest existing
            version (1 for an empty base). An existing version is never overwritten.
        label_names: for a classifier, the name of each class in id order (e.g. the names of
            `text.labelled.LabelMap`), served as the `label_name` output. Default: the
            classifier's own `label_names`, if it has them.
        text_padding: how the text signatures pad: "longest" (each request to its longest
            example) or "max_length" (to the preprocessor's seq_length); see the module
            docstring.
        max_answer_length: a span predictor's `serve_question`: the longest answer in word
            pieces (Google's run_squad.py default, 30).
        null_score_threshold: a span predictor's `serve_question` answers "" (SQuAD 2.0's no
            answer) where [CLS]'s score beats the best span's by more than this; None (the
            default, for SQuAD 1.1) always answers.
        max_query_length: `serve_question` cuts each question to this many pieces, as the
            span predictor was trained (Google's default, 64).

    Returns:
        str, the version directory, e.g. "<export_base>/3".

    Raises:
        ValueError: bad arguments (named in the message), an existing version, an export_base
            that is a file or not writable, or a graph with ops stock TF Serving lacks.

    Example:
    >>> encoder, preprocessor = from_pretrained("uncased_L-2_H-128_A-2")
    >>> export_saved_model(encoder, "/models/bert", preprocessor)
    '/models/bert/1'
    """
    input_specs = _input_specs(model)
    _check_preprocessor(model, preprocessor)
    if text_padding not in PADDING_MODES:
        raise ValueError(f"text_padding must be one of {PADDING_MODES}, got {text_padding!r}.")
    label_names = _checked_label_names(model, label_names)
    check_int("max_answer_length", max_answer_length)
    check_int("max_query_length", max_query_length)
    if null_score_threshold is not None and not isinstance(null_score_threshold, (int, float)):
        raise ValueError(f"null_score_threshold must be a number or None, got "
                         f"{null_score_threshold!r}.")
    export_base = _writable_export_base(export_base)
    _remove_empty_versions(export_base)
    version = _checked_version(export_base, version)
    final_dir = os.path.join(export_base, str(version))

    # Built as "<version>.partial", which TF Serving does not take for a version (not all
    # digits), and renamed when complete; a re-run removes what a killed export left.
    with atomic_directory(final_dir) as work_dir:
        signatures = signature_functions(model, preprocessor, input_specs, label_names,
                                         text_padding, max_answer_length, null_score_threshold,
                                         max_query_length)
        _write_saved_model(model, preprocessor, signatures, work_dir)
        unservable = unservable_saved_model_ops(work_dir)
        if unservable:
            raise ValueError(f"The exported graph uses ops stock TF Serving lacks: {unservable}. "
                             "Use core TensorFlow ops or the TF Text ops in "
                             "text.serving_ops.SERVING_SAFE_TF_TEXT_OPS.")
        _write_assets_extra(model, preprocessor, signatures, label_names, text_padding, work_dir)
        stop_point("export:written_not_renamed")
    return final_dir


# --- checking the arguments, before any work ------------------------------------------------------

def _input_specs(model):
    """The model's inputs as TensorSpecs of its dtypes, every dimension dynamic."""
    inputs = getattr(model, "input", None)
    outputs = getattr(model, "output", None)
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise ValueError(f"export_saved_model needs a functional Keras model with dict inputs and "
                         f"outputs (signature names come from their keys), got "
                         f"{type(model).__name__} with inputs {type(inputs).__name__} and "
                         f"outputs {type(outputs).__name__}.")
    return {name: tf.TensorSpec([None] * len(tensor.shape), tensor.dtype, name=name)
            for name, tensor in inputs.items()}


def _check_preprocessor(model, preprocessor):
    if preprocessor is None:
        return
    if not isinstance(preprocessor, tf.Module) or not callable(preprocessor):
        raise ValueError(f"preprocessor must be a keras_bert_min.text.BertPreprocessor (a "
                         f"callable tf.Module, so its vocab table is saved), got "
                         f"{type(preprocessor).__name__}.")
    if set(model.input) != set(ENCODER_INPUTS):
        raise ValueError(
            f"Text signatures need a model whose inputs are exactly {list(ENCODER_INPUTS)}, but "
            f"{model.name} takes {sorted(model.input)}. Pass preprocessor=None to export its "
            "id signature only, or export the encoder inside it (e.g. pretrainer.encoder).")
    # Ids past the embedding table would only fail at serving time, request by request.
    config = getattr(model, "bert_config", None)
    vocab_size = getattr(preprocessor, "vocab_size", None)
    seq_length = getattr(preprocessor, "seq_length", None)
    # A smaller vocab serves without an error, with the wrong word for many ids.
    if config is not None and vocab_size is not None and vocab_size != config.vocab_size:
        raise ValueError(f"The preprocessor's vocab has {vocab_size} tokens but the model's "
                         f"vocab_size is {config.vocab_size}; use the vocab.txt the model was "
                         "trained with.")
    if (config is not None and seq_length is not None
            and seq_length > config.max_position_embeddings):
        raise ValueError(f"The preprocessor's seq_length {seq_length} exceeds the model's "
                         f"max_position_embeddings {config.max_position_embeddings}; use a "
                         "shorter seq_length.")


def _checked_label_names(model, label_names):
    named = is_classifier(model) or isinstance(model, BertTokenClassifier)
    if label_names is None:  # a classifier's or tagger's own names, when it has them
        label_names = getattr(model, "label_names", None) if named else None
    if label_names is None:
        return None
    names = [str(name) for name in label_names]
    if not named:
        raise ValueError(f"label_names need a classifier (an output 'logits' of shape [B, C], "
                         f"C > 1) or a tagger; {model.name} outputs {_output_shapes(model)}.")
    num_classes = model.output["logits"].shape[-1]
    if len(names) != num_classes or len(set(names)) != len(names):
        raise ValueError(f"label_names must be {num_classes} distinct names, one per class of "
                         f"{model.name}, got {names}.")
    return names


def _output_shapes(model):
    return {name: tuple(tensor.shape) for name, tensor in model.output.items()}


def _writable_export_base(export_base):
    path = os.path.abspath(os.fspath(export_base))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"export_base {path!r} is a file, not a directory. Pass the directory "
                         "TF Serving watches (its --model_base_path), e.g. /models/bert.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Cannot create export_base {path!r}: {e.strerror}. Pass a directory "
                         "you can write to.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"export_base {path!r} is not writable; pass a directory you can write "
                         "to, or fix its permissions.")
    return path


def _remove_empty_versions(export_base):
    """Removes empty version directories (made by hand, or by an old tool killed mid-export):
    they hold no model, TF Serving fails on one that is the highest, and versions after them
    would skip their numbers. Exports here are renamed into place whole, never empty."""
    for name in os.listdir(export_base):
        path = os.path.join(export_base, name)
        if _VERSION_DIR.fullmatch(name) and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)


def existing_versions(export_base):
    """The versions TF Serving would see in `export_base`, ascending.

    Args:
        export_base: a model base directory.

    Returns:
        list of int: the all-digit subdirectory names.

    Example:
    >>> existing_versions("/models/bert")
    [1, 2]
    """
    return sorted(int(name) for name in os.listdir(export_base)
                  if _VERSION_DIR.fullmatch(name)
                  and os.path.isdir(os.path.join(export_base, name)))


def _checked_version(export_base, version):
    versions = existing_versions(export_base)
    if version is None:
        return versions[-1] + 1 if versions else 1
    check_int("version", version, minimum=0, hint=" (TF Serving's version numbers)")
    if os.path.exists(os.path.join(export_base, str(version))):
        raise ValueError(f"Version {version} already exists in {export_base!r}; exports never "
                         f"overwrite. Pass version=None for the next free number "
                         f"({versions[-1] + 1 if versions else 1}), or another one.")
    return version


# --- the SavedModel ------------------------------------------------------------------------------

def _write_saved_model(model, preprocessor, signatures, directory):
    module = tf.Module()
    # The wrapped tf.Variables, not the Keras ones: see the module docstring.
    module.model_variables = [variable.value for variable in model.variables]
    module.preprocessor = preprocessor  # tracks the vocab table
    tf.saved_model.save(module, directory, signatures=signatures)


def _write_assets_extra(model, preprocessor, signatures, label_names, text_padding, directory):
    """Notes for people and tools next to the SavedModel; TF Serving ignores assets.extra."""
    os.makedirs(os.path.join(directory, "assets.extra"), exist_ok=True)
    config = getattr(model, "bert_config", None)
    metadata = {
        "model_class": type(model).__name__,
        "model_name": model.name,
        "bert_config": config.to_dict() if config is not None else None,
        "signatures": {name: {"inputs": sorted(spec.name for spec in tf.nest.flatten(
                                  function.structured_input_signature)),
                              "outputs": sorted(function.structured_outputs)}
                       for name, function in signatures.items()},
        "seq_length": getattr(preprocessor, "seq_length", None),
        "lower_case": getattr(preprocessor, "lower_case", None),
        "text_padding": text_padding if preprocessor is not None else None,
        "label_names": label_names,
    }
    write_json(os.path.join(directory, METADATA_FILE), metadata)
    if preprocessor is not None:  # vocab.txt and preprocessor.json: BertPreprocessor.load reads them
        preprocessor.save(os.path.join(directory, "assets.extra"))


# --- reading an export back ----------------------------------------------------------------------

def _read_saved_model_proto(export_dir):
    path = os.path.join(os.fspath(export_dir), "saved_model.pb")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved_model.pb in {os.fspath(export_dir)!r}; pass a version "
                                "directory such as <export_base>/1.")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model


def saved_model_op_types(export_dir):
    """Every op type of a SavedModel: graph nodes and the bodies of all library functions.

    Args:
        export_dir: a SavedModel directory (a version directory).

    Returns:
        set of str.

    Example:
    >>> "WordpieceTokenizeWithOffsets" in saved_model_op_types("/models/bert/1")
    True
    """
    saved_model = _read_saved_model_proto(export_dir)
    return set().union(*(graph_op_types(meta_graph.graph_def)
                         for meta_graph in saved_model.meta_graphs))


def unservable_saved_model_ops(export_dir):
    """The op types of a SavedModel that stock TF Serving may lack; [] means servable.

    Allowed are core TensorFlow ops and `text.serving_ops.SERVING_SAFE_TF_TEXT_OPS`.

    Args:
        export_dir: a SavedModel directory.

    Returns:
        sorted list of str.

    Example:
    >>> unservable_saved_model_ops("/models/bert/1")
    []
    """
    saved_model = _read_saved_model_proto(export_dir)
    return sorted(set().union(*(unservable_ops(meta_graph.graph_def)
                                for meta_graph in saved_model.meta_graphs)))


def describe_signatures(export_dir):
    """The signatures of a SavedModel as `saved_model_cli show --all` prints them.

    Args:
        export_dir: a SavedModel directory.

    Returns:
        str, one block per signature: inputs and outputs with dtype, shape and tensor name.

    Example:
    >>> print(describe_signatures("/models/bert/1"))
    """
    lines = []
    for meta_graph in _read_saved_model_proto(export_dir).meta_graphs:
        tags = ", ".join(repr(tag) for tag in meta_graph.meta_info_def.tags)
        lines.append(f"MetaGraphDef with tag-set: {tags} contains the following SignatureDefs:")
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name.startswith("__"):  # TF's own, e.g. __saved_model_init_op
                continue
            lines += ["", f"signature_def[{name!r}]:"]
            for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
                lines.append("  The given SavedModel SignatureDef contains the following "
                             f"{kind}(s):")
                for key, info in sorted(tensors.items()):
                    dims = tuple(dim.size for dim in info.tensor_shape.dim)
                    shape = "unknown_rank" if info.tensor_shape.unknown_rank else str(dims)
                    lines += [f"    {kind}s[{key!r}] tensor_info:",
                              f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
                              f"        shape: {shape.replace(',)', ')')}",
                              f"        name: {info.name}"]
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines)
