"""Runs TF Serving REST requests against exported SavedModels, as stock TF Serving would.

Run as a script, this process is a stand-in for the model server: core TensorFlow plus the
kernels of the TF Text ops TF Serving links in, and no Python package of ours or Keras'. The
Python packages `keras`, `tf_keras`, `keras_hub`, `keras_bert_min` and `tensorflow_text` are
made unimportable (`import tensorflow` tries to import Keras and carries on without it;
`import tensorflow_text` would build Keras layers), and the TF Text kernels are loaded from
their shared libraries, as the server has them. Each SavedModel is then loaded twice:

    tf1  `tf.compat.v1.saved_model.loader.load` into a session, then the signature's tensors
         run by name: the SavedModelBundle path of TF Serving's C++ server
    tf2  `tf.saved_model.load`, then `loaded.signatures[name](**inputs)`

Usage: python tests/serving_check.py JOB.json, where JOB.json is

    {"ops_report": "ops.json",
     "exports": [{"export_dir": ".../1",
                  "calls": [{"request": {<a REST :predict body>}, "results": "out.npz"}, ...]}]}

Each call's outputs go to its npz file as "tf1/<output name>" and "tf2/<output name>". The ops
report maps each export_dir to the op types of its graph that core TensorFlow does not know.
`rest_request_to_arrays` can be imported on its own, for tests that build requests.
"""

import base64
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys

import numpy as np

BLOCKED_PACKAGES = ("keras", "tf_keras", "keras_hub", "keras_bert_min", "tensorflow_text")
# The shared libraries of the TF Text ops in text.serving_ops.SERVING_SAFE_TF_TEXT_OPS.
TF_TEXT_KERNEL_LIBRARIES = ("_wordpiece_tokenizer.so", "_fast_wordpiece_tokenizer.so",
                            "_regex_split_ops.so", "_normalize_ops.so")


class _Unimportable(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the blocked packages, then fails to import them with an ImportError."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED_PACKAGES:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} is blocked: a model server has no Python packages.")


def _tf_text_ops_directory():
    # find_spec locates a top-level package without importing it.
    return os.path.join(os.path.dirname(importlib.util.find_spec("tensorflow_text").origin),
                        "python", "ops")


if __name__ == "__main__":
    TF_TEXT_OPS_DIR = _tf_text_ops_directory()
    sys.meta_path.insert(0, _Unimportable())  # before TensorFlow tries to import Keras

import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402


def rest_request_to_arrays(body, input_dtypes):
    """The input arrays TF Serving makes of a REST `:predict` body, for one signature.

    Follows TF Serving's REST API rules: the row form `{"instances": [...]}` lists one item per
    example, each an object of named inputs, or a bare value when the signature has a single
    input; the columnar form `{"inputs": ...}` gives each input's whole batch, as an object of
    named inputs or a bare value for a single input. `{"b64": "..."}` is a base64 byte string.

    Args:
        body: the parsed JSON body.
        input_dtypes: dict of input name -> `tf.DType`, from the signature.

    Returns:
        dict of input name -> numpy array of that dtype (bytes objects for tf.string).

    Example:
    >>> rest_request_to_arrays({"instances": ["hi"]}, {"text": tf.string})
    {'text': array([b'hi'], dtype=object)}
    """
    if ("instances" in body) == ("inputs" in body):
        raise ValueError(f"A :predict body has exactly one of 'instances' and 'inputs', got keys "
                         f"{sorted(body)}.")
    names = sorted(input_dtypes)
    if "instances" in body:
        rows = body["instances"]
        if all(_is_named_inputs(row) for row in rows):
            columns = {name: [row[name] for row in rows] for name in rows[0]}
        else:
            columns = {_single_input(names): rows}
    else:
        inputs = body["inputs"]
        columns = inputs if _is_named_inputs(inputs) else {_single_input(names): inputs}
    if set(columns) != set(names):
        raise ValueError(f"The request names inputs {sorted(columns)}; the signature takes "
                         f"{names}.")
    return {name: _as_array(columns[name], input_dtypes[name]) for name in names}


def _is_named_inputs(value):
    return isinstance(value, dict) and set(value) != {"b64"}


def _single_input(names):
    if len(names) != 1:
        raise ValueError(f"Unnamed values need a single-input signature; this one takes {names}.")
    return names[0]


def _as_array(value, dtype):
    if dtype == tf.string:
        return np.array(_as_bytes(value), dtype=object)
    return np.array(value, dtype=dtype.as_numpy_dtype)


def _as_bytes(value):
    if isinstance(value, list):
        return [_as_bytes(item) for item in value]
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value.encode("utf-8")


def ops_unknown_to_core_tensorflow(export_dir):
    """Op types of a SavedModel's graph and functions that TensorFlow alone does not register."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    unknown = set()
    for meta_graph in saved_model.meta_graphs:
        library = meta_graph.graph_def.library
        own_functions = {function.signature.name for function in library.function}
        nodes = [*meta_graph.graph_def.node,
                 *(node for function in library.function for node in function.node_def)]
        unknown.update(node.op for node in nodes
                       if node.op not in own_functions and op_def_registry.get(node.op) is None)
    return sorted(unknown)


def run_tf1(export_dir, calls):
    """Each call's outputs, from a TF1 session (a list, so the session is closed on return)."""
    results = []
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        for call in calls:
            signature = meta_graph.signature_def[_signature_name(call)]
            dtypes = {name: tf.dtypes.as_dtype(info.dtype)
                      for name, info in signature.inputs.items()}
            arrays = rest_request_to_arrays(call["request"], dtypes)
            feeds = {signature.inputs[name].name: array for name, array in arrays.items()}
            fetches = {name: info.name for name, info in signature.outputs.items()}
            results.append(session.run(fetches, feeds))
    return results


def run_tf2(export_dir, calls):
    """Each call's outputs, from `tf.saved_model.load` in eager mode."""
    loaded = tf.saved_model.load(export_dir)
    results = []
    for call in calls:
        function = loaded.signatures[_signature_name(call)]
        _, input_specs = function.structured_input_signature
        dtypes = {name: spec.dtype for name, spec in input_specs.items()}
        arrays = rest_request_to_arrays(call["request"], dtypes)
        outputs = function(**{name: tf.constant(array) for name, array in arrays.items()})
        results.append({name: tensor.numpy() for name, tensor in outputs.items()})
    return results


def _signature_name(call):
    return call["request"].get("signature_name", "serving_default")


def main(job_path):
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    # Asked before the TF Text kernels are loaded, so "unknown" means "not core TensorFlow".
    ops_report = {export["export_dir"]: ops_unknown_to_core_tensorflow(export["export_dir"])
                  for export in job["exports"]}
    with open(job["ops_report"], "w", encoding="utf-8") as f:
        json.dump(ops_report, f)

    for library in TF_TEXT_KERNEL_LIBRARIES:
        tf.load_op_library(os.path.join(TF_TEXT_OPS_DIR, library))
    for export in job["exports"]:
        calls = export["calls"]
        tf1 = run_tf1(export["export_dir"], calls)
        tf2 = run_tf2(export["export_dir"], calls)
        for call, tf1_outputs, tf2_outputs in zip(calls, tf1, tf2):
            np.savez(call["results"],
                     **{f"tf1/{name}": value for name, value in tf1_outputs.items()},
                     **{f"tf2/{name}": value for name, value in tf2_outputs.items()})

    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED_PACKAGES)
    assert "keras" not in sys.modules and not loaded, f"imported {loaded[:5]}"
    print("serving_check: ok")


if __name__ == "__main__":
    main(sys.argv[1])
