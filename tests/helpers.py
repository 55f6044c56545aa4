"""The checks every layer and model of keras_bert_min passes, after keras-hub's `TestCase`
(`run_layer_test`, `run_serialization_test`, `run_precision_test`, `run_model_saving_test`).

Each check takes a factory (`make_layer()` / `make_model()`, called anew under each dtype
policy) and the call arguments as a tuple: `(input_word_ids, input_type_ids)` for
`BertEmbedding`, `(inputs_dict,)` for a model. Expected numbers are the caller's, computed
independently (weight counts from the shape formulas, output shapes by hand); nothing here
asks the code under test what it should produce.

    run_build_test          build(shapes) without a call creates every weight: exact counts
    run_model_build_test    the same for a functional model, built when constructed
    run_output_shape_test   compute_output_shape == the real output's shape == the expected one
    run_serialization_test  get_config and a JSON round trip: same config, same outputs
    run_precision_test      mixed_float16 and mixed_bfloat16: every sublayer's dtypes
    run_training_test       one `fit` step changes exactly the weights that get a gradient
    run_model_saving_test   a `.keras` file reloads to the same class with equal outputs
    run_layer_test          all of these but saving, for a layer
    run_model_test          all of these, for a model (built at construction)

and small utilities the weights tests share: `run_encoder` (outputs as NumPy), `snapshot` /
`assert_unchanged` (a refused load assigns nothing), `max_abs`; and `file_size_limit`, which
makes writes past a size fail as a full disk fails them.
"""

import contextlib
import json
import os
import resource
import signal

import keras
import numpy as np
from keras import ops, tree

from keras_bert_min.layers import PaddingMask

POLICIES = ("mixed_float16", "mixed_bfloat16")


# --- small utilities -------------------------------------------------------------------------

def free_ports(count):
    """`count` TCP ports on 127.0.0.1 free a moment ago (for local multi-worker clusters)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def call(layer, args, **kwargs):
    """`layer(*args)`: the arguments are a tuple of positional call arguments."""
    return layer(*args, **kwargs)


def shapes_of(args):
    return tree.map_structure(lambda x: tuple(np.shape(x)), args)


def to_numpy(outputs):
    return tree.map_structure(lambda x: np.asarray(ops.convert_to_numpy(ops.cast(x, "float32"))
                                                   if _is_float(x) else ops.convert_to_numpy(x)),
                              outputs)


def _is_float(x):
    return keras.backend.standardize_dtype(x.dtype).startswith(("float", "bfloat"))


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def parameter_count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def config_json(instance):
    # JSON with sorted keys: tuples and lists (e.g. in build configs) compare equal, as they
    # are equal once written to a file.
    return json.dumps(instance.get_config(), sort_keys=True)


def assert_outputs_equal(actual, expected, atol=0.0, message=""):
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert tree.flatten(shapes_of(actual)) == tree.flatten(shapes_of(expected)), message
    for a, e in zip(tree.flatten(actual), tree.flatten(expected)):
        np.testing.assert_allclose(a, e, rtol=0.0, atol=atol, err_msg=message)


def run_encoder(model, ids, mask, types):
    """An encoder's outputs as NumPy arrays, for int array-likes of ids, mask and type ids."""
    outputs = model({"input_word_ids": np.asarray(ids, np.int32),
                     "input_mask": np.asarray(mask, np.int32),
                     "input_type_ids": np.asarray(types, np.int32)})
    return {name: np.asarray(value) for name, value in outputs.items()}


def snapshot(model):
    return [np.array(w) for w in model.weights]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "a failed load changed weights"


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


class _LayerModel(keras.Model):
    """A layer inside a model, so that `fit` can train it: positional arguments in a tuple."""

    def __init__(self, layer):
        super().__init__(name="layer_model")
        self.layer = layer

    def call(self, inputs, training=None):
        return self.layer(*inputs)


# --- the checks ---------------------------------------------------------------------------------

def run_build_test(make_layer, args, expected_num_weights, expected_num_params):
    """`layer.build(shapes)`, with no call, creates all weights (all trainable), as many and
    as large as the formula says; a symbolic call and a real call then create no more."""
    layer = make_layer()
    layer.build(*shapes_of(args))
    assert layer.built
    assert len(layer.trainable_weights) == expected_num_weights, \
        f"{layer.name}: {len(layer.trainable_weights)} weights after build(), " \
        f"expected {expected_num_weights}: {[w.path for w in layer.trainable_weights]}"
    assert parameter_count(layer.trainable_weights) == expected_num_params, \
        f"{layer.name}: {parameter_count(layer.trainable_weights)} parameters after build(), " \
        f"expected {expected_num_params}"
    assert layer.non_trainable_weights == []
    built = [id(w) for w in layer.weights]
    call(layer, args)
    assert [id(w) for w in layer.weights] == built, "calling a built layer created weights"

    # keras-hub's symbolic build: calling on KerasTensors builds the same weights.
    symbolic = make_layer()
    call(symbolic, tree.map_structure(lambda x: keras.KerasTensor(np.shape(x), _dtype(x)), args))
    assert len(symbolic.trainable_weights) == expected_num_weights
    assert parameter_count(symbolic.trainable_weights) == expected_num_params


def run_model_build_test(make_model, expected_num_weights, expected_num_params):
    """A functional model is built when constructed: every weight exists before any call."""
    model = make_model()
    assert model.built
    assert len(model.trainable_weights) == expected_num_weights, \
        f"{model.name}: {len(model.trainable_weights)} weights, expected {expected_num_weights}"
    assert model.count_params() == parameter_count(model.trainable_weights) == expected_num_params
    assert model.non_trainable_weights == []


def run_output_shape_test(make_layer, args, expected_output_shape):
    """The real output has the hand-written shape, and `compute_output_shape` says so too."""
    layer = make_layer()
    outputs = call(layer, args)
    actual = tree.map_structure(lambda x: tuple(x.shape), outputs)
    assert actual == expected_output_shape, \
        f"output shape {actual}, expected {expected_output_shape}"
    computed = layer.compute_output_shape(*shapes_of(args))
    computed = ({name: tuple(shape) for name, shape in computed.items()}
                if isinstance(computed, dict) else tuple(computed))
    assert computed == expected_output_shape, \
        f"compute_output_shape {computed}, real output {expected_output_shape}"


def run_serialization_test(make_layer, args):
    """get_config -> from_config, and serialize_keras_object -> JSON text -> deserialize:
    the same config (as JSON), the registered name, and with the same weights the same outputs."""
    layer = make_layer()
    outputs = call(layer, args)
    cls = type(layer)
    assert keras.saving.get_registered_name(cls) == f"keras_bert_min>{cls.__name__}"
    expected_config = config_json(layer)

    assert config_json(cls.from_config(layer.get_config())) == expected_config

    text = json.dumps(keras.saving.serialize_keras_object(layer))
    revived = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(revived) is cls
    assert config_json(revived) == expected_config
    if not revived.built:
        call(revived, args)
    # The same variables in the same order, so weights copy over one to one.
    assert [w.path for w in revived.weights] == [w.path for w in layer.weights]
    revived.set_weights(layer.get_weights())
    assert_outputs_equal(call(revived, args), outputs, atol=1e-6,
                         message="same config and weights, different outputs")


def _layer_norm_probe(width, compute_dtype):
    """Values exact in `compute_dtype` that it cannot normalise by itself: in float16 their
    squares overflow; in bfloat16 (8-bit significand) their sum rounds, so the mean is off by
    more than their spread tolerates."""
    k = np.arange(width)
    if compute_dtype == "float16":
        return 128.0 * (k - width // 2)
    return 1024.0 + 8.0 * ((5 * k) % 7)


def _check_layer_norm_computes_in_float32(layer_norm, compute_dtype):
    x = _layer_norm_probe(layer_norm.gamma.shape[-1], compute_dtype)
    outputs = layer_norm(ops.cast(x[None].astype("float32"), compute_dtype))
    assert _dtype(outputs) == compute_dtype
    gamma, beta = (np.asarray(w, np.float64) for w in (layer_norm.gamma, layer_norm.beta))
    centred = x - x.mean()
    expected = centred / np.sqrt(np.mean(centred**2) + layer_norm.epsilon) * gamma + beta
    # Float32 math, then one rounding to the compute dtype: within one unit of its last place.
    resolution = float(np.finfo(np.float16).eps) if compute_dtype == "float16" else 2.0**-7
    np.testing.assert_allclose(np.asarray(ops.cast(outputs, "float32"))[0], expected, rtol=0,
                               atol=resolution * np.abs(expected).max(),
                               err_msg=f"{layer_norm.path} does not compute in float32")


def _check_padding_mask_passes_values_uncast(padding_mask):
    values = np.linspace(-2.0, 2.0, 6, dtype="float32").reshape(1, 3, 2)
    outputs = padding_mask([values, np.array([[1, 1, 0]], "int32")])
    assert _dtype(outputs) == "float32", f"{padding_mask.name} cast its float32 values"
    np.testing.assert_array_equal(np.asarray(outputs), values)


def run_precision_test(make_layer, args, float32_outputs=False, float32_sublayers=()):
    """Under `mixed_float16` and `mixed_bfloat16`: every variable float32; every sublayer
    computes in the policy's dtype, except the documented float32 parts:

        float32_sublayers  names of sublayers built with dtype="float32" (the task logits)
        LayerNormalization computes in float32 whatever its compute dtype says (checked by
                           values that only float32 normalises right)
        PaddingMask        passes its values through uncast
        float32_outputs    the outputs are float32 (the heads' and tasks' logits), else they
                           are in the policy's compute dtype

    and the outputs are finite. The float32 policy is restored afterwards, also on failure."""
    for name in POLICIES:
        policy = keras.mixed_precision.Policy(name)
        keras.mixed_precision.set_dtype_policy(policy)
        try:
            layer = make_layer()
            outputs = call(layer, args)
            not_float32 = [w.path for w in layer.weights if _dtype(w) != "float32"]
            assert not not_float32, f"{name}: weights not float32: {not_float32}"
            for sublayer in layer._flatten_layers(include_self=True, recursive=True):
                if isinstance(sublayer, keras.layers.InputLayer):
                    continue
                expected = "float32" if sublayer.name in float32_sublayers else policy.compute_dtype
                assert sublayer.variable_dtype == "float32", f"{name}: {sublayer.name}"
                assert sublayer.compute_dtype == expected, (
                    f"{name}: {sublayer.name} computes in {sublayer.compute_dtype}, "
                    f"expected {expected}")
                if isinstance(sublayer, keras.layers.LayerNormalization):
                    _check_layer_norm_computes_in_float32(sublayer, policy.compute_dtype)
                if isinstance(sublayer, PaddingMask):
                    _check_padding_mask_passes_values_uncast(sublayer)
            expected_output = "float32" if float32_outputs else policy.compute_dtype
            for output in tree.flatten(outputs):
                assert _dtype(output) == expected_output, \
                    f"{name}: an output is {_dtype(output)}, expected {expected_output}"
                assert np.isfinite(np.asarray(ops.cast(output, "float32"))).all(), \
                    f"{name}: non-finite outputs"
        finally:
            keras.mixed_precision.set_dtype_policy("float32")


def run_training_test(layer, args, targets=None, loss="mse", unchanged=()):
    """One SGD step of `fit` changes every trainable weight except the paths in `unchanged`
    (weights the loss does not reach, e.g. a pooler a span head never reads), which stay
    exactly as they were.

    Args:
        layer: a layer (wrapped in a model here) or a model.
        targets: what `fit` gets as y; by default random values of the outputs' shapes.
        loss: a compile loss; "auto" means a task model's own default loss.
    """
    model = layer if isinstance(layer, keras.Model) else _LayerModel(layer)
    x = args[0] if isinstance(layer, keras.Model) else tuple(args)
    if targets is None:
        rng = np.random.default_rng(0)
        targets = tree.map_structure(lambda o: rng.normal(size=o.shape).astype("float32"),
                                     to_numpy(call(layer, args)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    batch = len(tree.flatten(x)[0])
    before = [(w.path, np.array(w)) for w in layer.trainable_weights]
    assert before, "nothing to train"
    unknown = set(unchanged) - {path for path, _ in before}
    assert not unknown, f"no such weights: {sorted(unknown)}"
    model.fit(x, targets, batch_size=batch, epochs=1, verbose=0)
    after = [np.array(w) for w in layer.trainable_weights]
    changed = {path for (path, old), new in zip(before, after) if not np.array_equal(old, new)}
    expected = {path for path, _ in before} - set(unchanged)
    assert changed == expected, \
        f"one fit step changed {sorted(changed)}; expected {sorted(expected)}"
    assert all(np.isfinite(new).all() for new in after)


def run_model_saving_test(make_model, args, directory):
    """model.save -> keras.saving.load_model: the same class, the same weights by name, and
    exactly the same outputs."""
    model = make_model()
    outputs = call(model, args)
    path = os.path.join(os.fspath(directory), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert [w.path for w in restored.weights] == [w.path for w in model.weights]
    assert_outputs_equal(call(restored, args), outputs, message="reloaded outputs differ")


def run_layer_test(make_layer, args, expected_output_shape, expected_num_weights,
                   expected_num_params, float32_outputs=False, float32_sublayers=(),
                   run_training_check=True, targets=None, unchanged=()):
    """Every shared check of a layer; see the module docstring."""
    run_build_test(make_layer, args, expected_num_weights, expected_num_params)
    run_output_shape_test(make_layer, args, expected_output_shape)
    run_serialization_test(make_layer, args)
    run_precision_test(make_layer, args, float32_outputs, float32_sublayers)
    if run_training_check:
        run_training_test(make_layer(), args, targets=targets, unchanged=unchanged)


def run_model_test(make_model, args, expected_output_shape, expected_num_weights,
                   expected_num_params, directory, float32_outputs=False, float32_sublayers=(),
                   targets=None, loss="mse", unchanged=()):
    """Every shared check of a model, `.keras` saving included; see the module docstring."""
    run_model_build_test(make_model, expected_num_weights, expected_num_params)
    run_output_shape_test(make_model, args, expected_output_shape)
    run_serialization_test(make_model, args)
    run_precision_test(make_model, args, float32_outputs, float32_sublayers)
    run_training_test(make_model(), args, targets=targets, loss=loss, unchanged=unchanged)
    run_model_saving_test(make_model, args, directory)


@contextlib.contextmanager
def file_size_limit(max_bytes):
    """Within the block, writing a file past `max_bytes` fails with EFBIG ("File too large"), a
    real failed write as a full disk gives (SIGXFSZ ignored, so it is an error, not a kill)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
