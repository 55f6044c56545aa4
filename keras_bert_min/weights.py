"""Pretrained BERT weights in and out: our variables by Google name, the checks every loader
shares, and Google's TF1 checkpoints (Hugging Face safetensors: `keras_bert_min.hf_weights`).

Each variable of our models has one name in each format, for example

    transformer_layer_3.query.kernel [H,H]
        Google        bert/encoder/layer_3/attention/self/query/kernel [H,H]
        Hugging Face  encoder.layer.3.attention.self.query.weight [H,H], transposed
    next_sentence.dense.kernel [H,2]
        Google        cls/seq_relationship/output_weights [2,H], transposed
        Hugging Face  cls.seq_relationship.weight [2,H], transposed
    logits.kernel of a BertClassifier [H,C]
        Google        output_weights [C,H] (run_classifier.py), transposed
        Hugging Face  classifier.weight [C,H] (BertForSequenceClassification), transposed

`google_targets` finds the variables by layer attribute and names them the Google way; the
Hugging Face names are derived from those (`hf_weights.py`). Every load checks the whole file against the model
(names, shapes, dtypes) before it assigns anything, so a failed load leaves the model as it was.
`keras_bert_min.pretrained.from_pretrained` puts it together for a directory of downloaded files.
"""

import collections
import dataclasses
import glob
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from keras_bert_min._checks import partial_path, remove_partial
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.tasks import (BertClassifier, BertMultipleChoice, BertSpanPredictor,
                                  BertTokenClassifier)

# A model variable and whether the file stores it transposed (Keras kernels are [in, out]).
_Target = collections.namedtuple("_Target", "variable transposed")

# Google keeps the next-sentence weights as [2, H], the transpose of a Dense kernel, and so
# are the heads of run_classifier.py (output_weights [C, H]) and run_squad.py (cls/squad/...).
GOOGLE_NSP_WEIGHTS = "cls/seq_relationship/output_weights"
_GOOGLE_TRANSPOSED = {GOOGLE_NSP_WEIGHTS, "output_weights", "cls/squad/output_weights"}
# The head layer of each task model and the Google names of its kernel and bias.
_TASK_HEADS = {
    BertClassifier: ("logits", "output_weights", "output_bias"),
    BertTokenClassifier: ("classifier", "output_weights", "output_bias"),
    BertSpanPredictor: ("span_logits", "cls/squad/output_weights", "cls/squad/output_bias"),
    # Google has no multiple-choice script; its classifier names give Hugging Face's
    # BertForMultipleChoice names (classifier.weight [1, H]) through the same map.
    BertMultipleChoice: ("choice_score", "output_weights", "output_bias"),
}
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

def google_targets(model):
    """Every variable of a BertEncoder, a BertPretrainer or a task model of `tasks.py`, keyed
    by its Google TF1 name (a task head by the name Google's fine-tuning scripts give it)."""
    task_head = _TASK_HEADS.get(type(model))
    if isinstance(model, BertEncoder):
        encoder, pretrainer = model, None
    elif isinstance(model, BertPretrainer) or task_head:
        encoder, pretrainer = model.encoder, model if isinstance(model, BertPretrainer) else None
    else:
        raise ValueError(f"BERT weights load into a BertEncoder, a BertPretrainer or a task model "
                         f"of keras_bert_min.tasks, got a {type(model).__name__}.")

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
                  (GOOGLE_NSP_WEIGHTS, next_sentence.dense.kernel),
                  ("cls/seq_relationship/output_bias", next_sentence.dense.bias)]
    if task_head:
        layer_name, kernel_name, bias_name = task_head
        head = model.get_layer(layer_name)
        pairs += [(kernel_name, head.kernel), (bias_name, head.bias)]

    # A variable added to the layers but not to this map would silently keep its random values.
    uncovered = {id(v) for v in model.weights} - {id(v) for _, v in pairs}
    if uncovered:
        raise RuntimeError(f"weights.py does not map {len(uncovered)} variable(s) of "
                           f"{model.name}; update google_targets when the layers change.")
    return {name: _Target(variable, name in _GOOGLE_TRANSPOSED) for name, variable in pairs}


def head_skip_reason(model):
    """Why a head variable of the file that `model` has no place for is skipped, or None when
    it is an error: only a pretrainer must match its file's heads. An encoder takes the encoder
    of any checkpoint, and a task model that of a pretraining or another task's checkpoint."""
    if isinstance(model, BertEncoder):
        return "head variable(s) (the model is an encoder)"
    if isinstance(model, BertPretrainer):
        return None
    return "head variable(s) of another task"


# --- checking and assigning, shared by every format ----------------------------------------------

def listing(items, limit=6):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _expected_shape(target):
    shape = tuple(target.variable.shape)
    return shape[::-1] if target.transposed else shape


def check_matches(targets, found_shapes, unexpected, source, model, hints=()):
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
                        f"{listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} variable(s) of the file that the model has no place "
                        f"for: {listing(list(unexpected))}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {listing(mismatched, 3)}")
        hints = (*hints, "build the model from the config that came with these weights")
    if problems:
        raise ValueError(f"Cannot load {source} into {model.name} (nothing was assigned): "
                         + "; ".join(problems) + "." + "".join(f" Fix: {h}." for h in hints))


def assign_all(targets, arrays, source):
    """Assigns file arrays to model variables, converting and checking them all (floats, every
    value finite) before assigning any."""
    values = []
    for name, target in targets.items():
        array = np.asarray(arrays[name])
        if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
            raise ValueError(f"{name} in {source} holds {array.dtype} values, not floats; "
                             "nothing was assigned. Is this a BERT weights file?")
        finite = np.isfinite(array.astype(np.float32, copy=False))
        if not finite.all():
            raise ValueError(f"{name} in {source} holds {int(finite.size - finite.sum())} NaN or "
                             "infinite values (a diverged run or a damaged file); nothing was "
                             "assigned. Load an earlier checkpoint.")
        array = array.T if target.transposed else array
        values.append((target.variable, array.astype(target.variable.dtype, copy=False)))
    for variable, value in values:
        variable.assign(value)


# --- Google TF1 checkpoints -----------------------------------------------------------------------

def _skip_reason_google(name, head_reason):
    """Why a checkpoint variable the model does not hold may be dropped, or None if it may not."""
    leaf = name.rsplit("/", 1)[-1]
    if _OPTIMIZER_SLOT.match(leaf):
        return "optimizer slot(s)"
    if leaf in _TRAINING_STATE:
        return "training-state variable(s)"
    # Heads of Google's scripts: cls/predictions and cls/seq_relationship (pretraining),
    # cls/squad (run_squad.py), output_weights and output_bias (run_classifier.py).
    if head_reason and (name.startswith("cls/") or name in _CLASSIFIER_HEAD):
        return head_reason
    return None


def find_checkpoint_prefix(directory):
    """The TF1 checkpoint prefix in a directory, or None if there is none."""
    if os.path.isfile(os.path.join(directory, "bert_model.ckpt.index")):  # Google's releases
        return os.path.join(directory, "bert_model.ckpt")
    latest = tf.train.latest_checkpoint(directory)  # a training directory's `checkpoint` file
    if latest:
        return latest
    indexes = sorted(glob.glob(os.path.join(glob.escape(directory), "*.index")))
    if len(indexes) > 1:
        raise ValueError(f"{directory!r} holds several checkpoints ({listing(indexes)}) and no "
                         "'checkpoint' file naming the latest; pass one prefix explicitly.")
    return indexes[0][:-len(".index")] if indexes else None


def _resolve_checkpoint_prefix(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = find_checkpoint_prefix(path)
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
    targets = google_targets(model)
    skipped, unexpected = {}, []
    for name in sorted(shapes):
        if name not in targets:
            reason = _skip_reason_google(name, head_skip_reason(model))
            if reason:
                skipped[name] = reason
            else:
                unexpected.append(name)
    check_matches(targets, shapes, unexpected, prefix, model)
    try:
        arrays = {name: reader.get_tensor(name) for name in targets}
    except (tf.errors.OpError, IndexError) as e:  # a cut .data file: "Read less bytes than ..."
        data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
        raise ValueError(f"Cannot read the data of {prefix!r} ({e}); nothing was assigned. "
                         f"{', '.join(data) or 'Its .data file'} is probably truncated: copy or "
                         "download the checkpoint again.") from None
    assign_all(targets, arrays, prefix)
    return LoadReport(prefix, model.name, tuple(targets), skipped)


def save_google_checkpoint(model, checkpoint_prefix):
    """Writes an encoder's or pretrainer's weights as a Google BERT TF1 checkpoint.

    The variables get exactly Google's names and shapes, so `tf.train.load_checkpoint`, Google's
    `modeling.py` (`tf.compat.v1.train.init_from_checkpoint`) and `load_google_checkpoint` read
    it. The files are written in `<prefix>.partial/` and moved into place `.index` last, so an
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
    for name, target in google_targets(model).items():
        value = np.asarray(target.variable)
        arrays[name] = value.T if target.transposed else value
    directory, basename = os.path.split(prefix)
    os.makedirs(directory, exist_ok=True)
    # A fixed staging name next to the checkpoint: a re-run removes what a killed save left.
    staging = partial_path(prefix)
    remove_partial(prefix)
    os.makedirs(staging)
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


def write_google_config(config, directory):
    """The config beside a Google-layout checkpoint: Google's `bert_config.json` when the format
    can express the activation (`BertConfig.fits_google_format`), else our lossless
    `config.json` (Google's "gelu" is the tanh form, so e.g. an exact-GELU model cannot be
    written as a bert_config.json)."""
    if config.fits_google_format:
        config.to_json_file(os.path.join(directory, "bert_config.json"), format="google")
    else:
        config.to_json_file(os.path.join(directory, "config.json"))


def copy_weights(source, target):
    """Copies a BertEncoder's or BertPretrainer's weights into another built from the same
    config, variable by Google name: every name and shape is checked before anything is
    assigned. A pretrainer's encoder part goes into an encoder; an encoder into a pretrainer's
    encoder (its heads keep their values).

    Returns:
        A `LoadReport`.
    """
    if isinstance(source, BertPretrainer) and isinstance(target, BertEncoder):
        source = source.encoder
    if isinstance(source, BertEncoder) and isinstance(target, BertPretrainer):
        target = target.encoder
    targets = google_targets(target)
    arrays = {name: np.asarray(t.variable) for name, t in google_targets(source).items()}
    # Both sides are our variables, so no transposition: compare the variables' own shapes.
    same_layout = {name: t._replace(transposed=False) for name, t in targets.items()}
    unexpected = [name for name in arrays if name not in targets]
    check_matches(same_layout, {n: a.shape for n, a in arrays.items()}, unexpected,
                  source.name, target)
    assign_all(same_layout, arrays, source.name)
    return LoadReport(source.name, target.name, tuple(targets), {})
