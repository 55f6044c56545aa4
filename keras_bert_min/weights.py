"""Pretrained BERT weights in and out: Google's TF1 checkpoints and Hugging Face safetensors.

Each variable of our models has one name in each format, for example

    transformer_layer_3.query.kernel [H,H]
        Google        bert/encoder/layer_3/attention/self/query/kernel [H,H]
        Hugging Face  encoder.layer.3.attention.self.query.weight [H,H], transposed
    next_sentence.dense.kernel [H,2]
        Google        cls/seq_relationship/output_weights [2,H], transposed
        Hugging Face  cls.seq_relationship.weight [2,H], transposed

`_google_targets` finds the variables by layer attribute and names them the Google way; the
Hugging Face names are derived from those. Every load checks the whole file against the model
(names, shapes, dtypes) before it assigns anything, so a failed load leaves the model as it was.
`keras_bert_min.pretrained.from_pretrained` puts it together for a directory of downloaded files.
"""

import collections
import dataclasses
import glob
import os
import re
import shutil
import tempfile

import numpy as np
import safetensors
import safetensors.numpy
import tensorflow as tf

from keras_bert_min.models import BertEncoder, BertPretrainer

# A model variable and whether the file stores it transposed (Keras kernels are [in, out]).
_Target = collections.namedtuple("_Target", "variable transposed")

# Google keeps the next-sentence weights as [2, H], the transpose of a Dense kernel.
_GOOGLE_NSP_WEIGHTS = "cls/seq_relationship/output_weights"
# Variables of training, not of the model: TF1 optimizer slots, Adam's step powers, the step.
_OPTIMIZER_SLOT = re.compile(
    r"^(adam_m|adam_v|Adam(_\d+)?|Momentum|RMSProp(_\d+)?|Adagrad|Ftrl(_\d+)?|LAMB(_\d+)?)$")
_TRAINING_STATE = {"global_step", "beta1_power", "beta2_power", "good_steps", "current_loss_scale"}
_CLASSIFIER_HEAD = {"output_weights", "output_bias"}
_CHECKPOINT_FILE_SUFFIX = r"\.(index|meta|data-\d+-of-\d+)$"


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What a load did.

    Args:
        source: the checkpoint prefix or file that was read.
        model: the model's name.
        loaded: the file's names of the variables that were assigned.
        skipped: the file's names that were deliberately not assigned, each with its reason.
        kept: Google names of model variables the file lacked and that were left as they were
            (only the pooler, and only with `allow_missing_pooler=True`).

    Example:
    >>> print(LoadReport("model.ckpt", "bert", ("bert/pooler/dense/bias",),
    ...                  {"global_step": "training-state variable(s)"}))
    Loaded 1 variables from model.ckpt into bert; skipped 1 training-state variable(s).
    """

    source: str
    model: str
    loaded: tuple
    skipped: dict
    kept: tuple = ()

    def __str__(self):
        text = f"Loaded {len(self.loaded)} variables from {self.source} into {self.model}"
        if self.skipped:
            counts = collections.Counter(self.skipped.values())
            text += "; skipped " + ", ".join(f"{n} {reason}" for reason, n in counts.items())
        if self.kept:
            text += f"; kept the model's own {', '.join(self.kept)} (not in the file)"
        return text + "."


# --- our variables, by Google name ---------------------------------------------------------------

def _google_targets(model):
    """Every variable of a BertEncoder or BertPretrainer, keyed by its Google TF1 name."""
    if isinstance(model, BertPretrainer):
        encoder, pretrainer = model.encoder, model
    elif isinstance(model, BertEncoder):
        encoder, pretrainer = model, None
    else:
        raise ValueError(f"Pretrained weights load into a BertEncoder or a BertPretrainer, got a "
                         f"{type(model).__name__}; for a fine-tuning model, load its encoder.")

    def dense(prefix, layer):
        return [(f"{prefix}/kernel", layer.kernel), (f"{prefix}/bias", layer.bias)]

    def layer_norm(prefix, layer):
        return [(f"{prefix}/gamma", layer.gamma), (f"{prefix}/beta", layer.beta)]

    embedding = encoder.embedding
    pairs = [
        ("bert/embeddings/word_embeddings", embedding.word_embeddings),
        ("bert/embeddings/token_type_embeddings", embedding.token_type_embeddings),
        ("bert/embeddings/position_embeddings", embedding.position_embeddings),
        *layer_norm("bert/embeddings/LayerNorm", embedding.layer_norm),
    ]
    for index, block in enumerate(encoder.transformer_layers):
        prefix = f"bert/encoder/layer_{index}"
        pairs += [*dense(f"{prefix}/attention/self/query", block.query),
                  *dense(f"{prefix}/attention/self/key", block.key),
                  *dense(f"{prefix}/attention/self/value", block.value),
                  *dense(f"{prefix}/attention/output/dense", block.attention_output),
                  *layer_norm(f"{prefix}/attention/output/LayerNorm", block.attention_layer_norm),
                  *dense(f"{prefix}/intermediate/dense", block.intermediate),
                  *dense(f"{prefix}/output/dense", block.output_dense),
                  *layer_norm(f"{prefix}/output/LayerNorm", block.output_layer_norm)]
    pairs += dense("bert/pooler/dense", encoder.pooler)
    if pretrainer is not None:
        masked_lm = pretrainer.get_layer("masked_lm")
        next_sentence = pretrainer.get_layer("next_sentence")
        pairs += [*dense("cls/predictions/transform/dense", masked_lm.transform),
                  *layer_norm("cls/predictions/transform/LayerNorm",
                              masked_lm.transform_layer_norm),
                  ("cls/predictions/output_bias", masked_lm.output_bias),
                  (_GOOGLE_NSP_WEIGHTS, next_sentence.dense.kernel),
                  ("cls/seq_relationship/output_bias", next_sentence.dense.bias)]

    # A variable added to the layers but not to this map would silently keep its random values.
    uncovered = {id(v) for v in model.weights} - {id(v) for _, v in pairs}
    if uncovered:
        raise RuntimeError(f"weights.py does not map {len(uncovered)} variable(s) of "
                           f"{model.name}; update _google_targets when the layers change.")
    return {name: _Target(variable, name == _GOOGLE_NSP_WEIGHTS) for name, variable in pairs}


# --- checking and assigning, shared by every format ----------------------------------------------

def _listing(items, limit=6):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _expected_shape(target):
    shape = tuple(target.variable.shape)
    return shape[::-1] if target.transposed else shape


def _check_matches(targets, found_shapes, unexpected, source, model, hints=()):
    """Raises one ValueError naming every missing, unexpected and mis-shaped variable."""
    missing = [name for name in targets if name not in found_shapes]
    mismatched = []
    for name, target in targets.items():
        found = found_shapes.get(name)
        if found is not None and tuple(found) != _expected_shape(target):
            mismatched.append(f"{name}: expected shape {_expected_shape(target)}, found "
                              f"{tuple(found)}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} model variable(s) missing from the file: "
                        f"{_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} variable(s) of the file that the model has no place "
                        f"for: {_listing(list(unexpected))}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, 3)}")
        hints = (*hints, "build the model from the config that came with these weights")
    if problems:
        raise ValueError(f"Cannot load {source} into {model.name} (nothing was assigned): "
                         + "; ".join(problems) + "." + "".join(f" Fix: {h}." for h in hints))


def _assign_all(targets, arrays, source):
    """Assigns file arrays to model variables, converting them all before assigning any."""
    values = []
    for name, target in targets.items():
        array = np.asarray(arrays[name])
        if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
            raise ValueError(f"{name} in {source} holds {array.dtype} values, not floats; "
                             "nothing was assigned. Is this a BERT weights file?")
        array = array.T if target.transposed else array
        values.append((target.variable, array.astype(target.variable.dtype, copy=False)))
    for variable, value in values:
        variable.assign(value)


# --- Google TF1 checkpoints -----------------------------------------------------------------------

def _skip_reason_google(name, model_has_heads):
    """Why a checkpoint variable the model does not hold may be dropped, or None if it may not."""
    leaf = name.rsplit("/", 1)[-1]
    if _OPTIMIZER_SLOT.match(leaf):
        return "optimizer slot(s)"
    if leaf in _TRAINING_STATE:
        return "training-state variable(s)"
    # Heads of Google's scripts: cls/predictions and cls/seq_relationship (pretraining),
    # cls/squad (run_squad.py), output_weights and output_bias (run_classifier.py).
    if not model_has_heads and (name.startswith("cls/") or name in _CLASSIFIER_HEAD):
        return "head variable(s) (the model is an encoder)"
    return None


def _find_checkpoint_prefix(directory):
    """The TF1 checkpoint prefix in a directory, or None if there is none."""
    if os.path.isfile(os.path.join(directory, "bert_model.ckpt.index")):  # Google's releases
        return os.path.join(directory, "bert_model.ckpt")
    latest = tf.train.latest_checkpoint(directory)  # a training directory's `checkpoint` file
    if latest:
        return latest
    indexes = sorted(glob.glob(os.path.join(glob.escape(directory), "*.index")))
    if len(indexes) > 1:
        raise ValueError(f"{directory!r} holds several checkpoints ({_listing(indexes)}) and no "
                         "'checkpoint' file naming the latest; pass one prefix explicitly.")
    return indexes[0][:-len(".index")] if indexes else None


def _resolve_checkpoint_prefix(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = _find_checkpoint_prefix(path)
        if prefix is None:
            raise FileNotFoundError(f"No TF1 checkpoint (*.index file) in the directory {path!r}; "
                                    "pass the checkpoint's prefix.")
        return prefix
    prefix = re.sub(_CHECKPOINT_FILE_SUFFIX, "", path)  # one of the checkpoint's files will do
    if not os.path.isfile(prefix + ".index"):
        raise FileNotFoundError(f"No TF1 checkpoint at {path!r}: expected {prefix + '.index'!r} "
                                "and its .data-* files; pass the prefix, e.g. .../bert_model.ckpt.")
    return prefix


def load_google_checkpoint(model, checkpoint_prefix):
    """Loads a Google BERT TF1 checkpoint (`bert_model.ckpt`) into an encoder or a pretrainer.

    Optimizer slots (`adam_m`, `adam_v`, `Adam`, ...) and `global_step` are skipped. So are the
    heads of Google's scripts (`cls/...`, run_classifier's `output_weights` and `output_bias`)
    when the model is an encoder, so a fine-tuned checkpoint gives its encoder too. Anything else
    that does not match (a missing or unexpected variable, a wrong shape) is a ValueError, raised
    before any variable is assigned.

    Args:
        model: a `BertEncoder` or `BertPretrainer` built from the checkpoint's config.
        checkpoint_prefix: the checkpoint prefix (`.../bert_model.ckpt`), one of its files, or a
            directory holding one checkpoint.

    Returns:
        A `LoadReport`.

    Example:
    >>> encoder = BertEncoder(BertConfig.from_json_file("uncased_L-2_H-128_A-2/bert_config.json"))
    >>> print(load_google_checkpoint(encoder, "uncased_L-2_H-128_A-2/bert_model.ckpt"))
    Loaded 39 variables from uncased_L-2_H-128_A-2/bert_model.ckpt into bert_encoder; skipped 7 ...
    """
    prefix = _resolve_checkpoint_prefix(checkpoint_prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"Cannot read the TF1 checkpoint {prefix!r} ({e}); it may be truncated "
                         "or corrupt: copy or download it again.") from None
    shapes = reader.get_variable_to_shape_map()
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in shapes and not any(n.startswith("bert/") for n in shapes):
        raise ValueError(f"{prefix!r} is an object-based (TF2 / Keras) checkpoint, not a Google "
                         "TF1 one; restore it with tf.train.Checkpoint or model.load_weights.")
    targets = _google_targets(model)
    skipped, unexpected = {}, []
    for name in sorted(shapes):
        if name not in targets:
            reason = _skip_reason_google(name, model_has_heads=isinstance(model, BertPretrainer))
            if reason:
                skipped[name] = reason
            else:
                unexpected.append(name)
    _check_matches(targets, shapes, unexpected, prefix, model)
    try:
        arrays = {name: reader.get_tensor(name) for name in targets}
    except tf.errors.OpError as e:
        raise ValueError(f"Cannot read the data of {prefix!r} ({e}); nothing was assigned. The "
                         "checkpoint may be truncated: copy or download it again.") from None
    _assign_all(targets, arrays, prefix)
    return LoadReport(prefix, model.name, tuple(targets), skipped)


def save_google_checkpoint(model, checkpoint_prefix):
    """Writes an encoder's or pretrainer's weights as a Google BERT TF1 checkpoint.

    The variables get exactly Google's names and shapes, so `tf.train.load_checkpoint`, Google's
    `modeling.py` (`tf.compat.v1.train.init_from_checkpoint`) and `load_google_checkpoint` read
    it. The files are written in a temporary directory and moved into place `.index` last, so an
    interrupted save never leaves a checkpoint that looks complete.

    Args:
        model: a `BertEncoder` or `BertPretrainer`.
        checkpoint_prefix: where to write, e.g. `out/bert_model.ckpt` (which gives
            `out/bert_model.ckpt.index` and `out/bert_model.ckpt.data-00000-of-00001`).

    Returns:
        The checkpoint prefix, as an absolute path.

    Example:
    >>> save_google_checkpoint(encoder, "out/bert_model.ckpt")
    '/.../out/bert_model.ckpt'
    """
    prefix = os.path.abspath(os.fspath(checkpoint_prefix))
    if os.path.isdir(prefix):
        raise ValueError(f"{prefix!r} is a directory; pass a checkpoint prefix inside it, e.g. "
                         f"{os.path.join(prefix, 'bert_model.ckpt')!r}.")
    arrays = {}
    for name, target in _google_targets(model).items():
        value = np.asarray(target.variable)
        arrays[name] = value.T if target.transposed else value
    directory, basename = os.path.split(prefix)
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{basename}.tmp-", dir=directory)
    try:
        _write_tf1_checkpoint(arrays, os.path.join(staging, basename))
        # The .index file is what makes a checkpoint readable: drop the old one first and move
        # the new one in last.
        old = glob.glob(glob.escape(prefix) + ".*")
        for path in sorted(old, key=lambda p: not p.endswith(".index")):
            if re.search(_CHECKPOINT_FILE_SUFFIX, path):
                os.remove(path)
        for filename in sorted(os.listdir(staging), key=lambda f: f.endswith(".index")):
            os.replace(os.path.join(staging, filename), os.path.join(directory, filename))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return prefix


def _write_tf1_checkpoint(arrays, prefix):
    """Saves name -> array as TF1 variables, the way Google's code did, in a graph of its own."""
    with tf.Graph().as_default():
        feeds = {}
        for name, value in arrays.items():
            # Fed through placeholders, so the values never become constants in the graph
            # (whose protobuf is limited to 2 GB).
            placeholder = tf.compat.v1.placeholder(value.dtype, value.shape)
            tf.compat.v1.Variable(placeholder, name=name)
            feeds[placeholder] = value
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer(), feed_dict=feeds)
            saver.save(session, prefix, write_meta_graph=False, write_state=False)


# --- Hugging Face safetensors --------------------------------------------------------------------

_HF_HEAD_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    _GOOGLE_NSP_WEIGHTS: "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
}
_HF_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_HF_TIED_DECODER = "cls.predictions.decoder.weight"
_HF_POOLER = ("pooler.dense.weight", "pooler.dense.bias")
# Heads of BertForPreTraining, BertFor{Sequence,Token}Classification, BertForQuestionAnswering.
_HF_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")


def _hf_name(google_name):
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

    Reads `BertModel` files (`embeddings.word_embeddings.weight`, ...) and `BertForPreTraining`
    ones (`bert.` prefix, `cls.*` heads), with LayerNorm `weight`/`bias` or older `gamma`/`beta`.
    Linear weights are [out, in] and are transposed. `position_ids` buffers are skipped, and so
    are heads (`cls.*`, `classifier.*`, `qa_outputs.*`) when the model is an encoder. The MLM
    decoder weight, when stored, must equal the word embeddings, which our head ties to it.
    Everything is checked before anything is assigned.

    Args:
        model: a `BertEncoder` or `BertPretrainer` built from the file's `config.json`.
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
    targets = {}
    for google_name, target in _google_targets(model).items():
        # Hugging Face stores Dense kernels as [out, in], and the NSP weights as Google does.
        transposed = target.transposed or google_name.endswith("/kernel")
        targets[_hf_name(google_name)] = target._replace(transposed=transposed)

    arrays, file_names, skipped, unexpected = {}, {}, {}, []
    for name in sorted(tensors):
        key = _normalized_hf_name(name)
        if key.endswith(("position_ids", "token_type_ids")):
            skipped[name] = "buffer(s)"
        elif key.startswith(_HF_HEAD_PREFIXES) and not has_heads:
            skipped[name] = "head variable(s) (the model is an encoder)"
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
        if allow_missing_pooler:
            kept = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
            targets = {n: t for n, t in targets.items() if n not in _HF_POOLER}
        else:
            hints.append("the file has no pooler; pass allow_missing_pooler=True to keep the "
                         "model's own (untrained) pooler")
    if has_heads and not any(key.startswith("cls.") for key in arrays):
        hints.append("the file has no pretraining heads (cls.*); load it into a BertEncoder")
    _check_matches(targets, {k: v.shape for k, v in arrays.items()}, unexpected, source, model,
                   hints)

    decoders = [tensors[n] for n in tensors if _normalized_hf_name(n) == _HF_TIED_DECODER]
    word_embeddings = arrays.get("embeddings.word_embeddings.weight")
    if has_heads and any(not np.array_equal(d, word_embeddings) for d in decoders):
        raise ValueError(f"{_HF_TIED_DECODER} in {source} differs from "
                         "embeddings.word_embeddings.weight, but our MLM head ties the two; "
                         "nothing was assigned. Only tied-embedding checkpoints can be loaded.")
    _assign_all(targets, arrays, source)
    return LoadReport(source, model.name, tuple(file_names[k] for k in targets), skipped, kept)
