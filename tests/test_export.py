"""Tests of keras_bert_min.export and recipes/export.py.

The references are independent of the export code:
- Served answers come from `tests/serving_check.py`, a fresh process standing in for TF Serving
  (core TensorFlow, the allowed TF Text kernels, no Keras, no keras_bert_min), through both the
  TF1 session loader TF Serving uses and `tf.saved_model.load`, fed REST :predict bodies. They
  must equal the Keras model's own outputs, computed here, within 1e-5 (plus 1e-5 relative,
  for MiniLM's outputs near 6); token ids and labels exactly.
- Token ids for hand-picked texts, and softmax/argmax in NumPy, are written out here.
- The op allow-list is checked against the op registry of a TensorFlow without TF Text.
- The printed signatures are compared with `saved_model_cli show --all`.
"""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_min import export
from keras_bert_min.export import (describe_signatures, export_saved_model, saved_model_op_types,
                                   unservable_saved_model_ops)
from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.pretrained import from_pretrained
from keras_bert_min.tasks import bert_classifier
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.fixtures import MINILM_DIR, TASK_TINY, tiny_config, write_vocab_file
from tests.serving_check import rest_request_to_arrays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_CHECK = os.path.join(REPO, "tests", "serving_check.py")

# DESIGN.md's list of the TF Text ops stock TF Serving links in, written out independently.
TF_SERVING_TF_TEXT_OPS = {"WordpieceTokenizeWithOffsets", "FastWordpieceTokenizeWithOffsets",
                          "RegexSplitWithOffsets", "NormalizeUTF8", "CaseFoldUTF8"}

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "cat", "sat",
         "is", "it", "here", "yes", "##s", "un", "##aff", "##able", "!", ",", ".", "?"]
TINY = tiny_config(len(VOCAB), hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
LABELS = ["negative", "neutral", "positive"]

SINGLES = ["Hello, world!", "the cat sat", "", "Unaffable cats sat here, yes.",
           "HELLO the cat is here and it sat on the world and sat again", "?", "cats"]
PAIRS = (["Is it here?", "the cat", "", "hello", "cats sat.", "yes", "the cat sat on it"],
         ["Yes.", "sat here", "hello", "", "the world is the world is the world is the world",
          "no", "yes!"])

# The README's requests, verbatim, run against the real MiniLM export. The ids are
# bert-base-uncased's for "Hello world!": [CLS] hello world ! [SEP].
README_REQUESTS = {
    "text_rows": {"signature_name": "serve_text",
                  "instances": ["Hello world!", "The quick brown fox jumps over the lazy dog."]},
    "text_named_rows": {"signature_name": "serve_text",
                        "instances": [{"text": "Hello world!"}]},
    "pair_columns": {"signature_name": "serve_text_pair",
                     "inputs": {"text_a": ["Where is the cat?"], "text_b": ["On the mat."]}},
    "ids_rows": {"signature_name": "serving_default",
                 "instances": [{"input_word_ids": [101, 7592, 2088, 999, 102],
                                "input_mask": [1, 1, 1, 1, 1],
                                "input_type_ids": [0, 0, 0, 0, 0]}]},
    "ids_columns": {"inputs": {"input_word_ids": [[101, 7592, 2088, 999, 102]],
                               "input_mask": [[1, 1, 1, 1, 1]],
                               "input_type_ids": [[0, 0, 0, 0, 0]]}},
}
# Outputs of the exported models with a sequence axis (the classifier's logits have none).
PER_TOKEN_OUTPUTS = {"sequence_output", "input_word_ids"}
MINILM_SENTENCES = ["A man is playing a guitar.", "Cafés in Zürich open early!",
                    "TensorFlow Serving loads SavedModels.", "", "Bonjour, ça va ?",
                    "The quick brown fox jumps over the lazy dog. " * 4, "日本語のテキスト"]


# --- building models and requests -------------------------------------------------------------

@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    return write_vocab_file(tmp_path_factory.mktemp("vocab") / "vocab.txt", VOCAB)


@pytest.fixture(scope="module")
def encoder():
    keras.utils.set_random_seed(7)
    return BertEncoder(TINY)


def random_ids(rng, batch, length, extra=None):
    lengths = rng.integers(1, length + 1, size=batch)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    inputs = {"input_word_ids": rng.integers(0, TINY.vocab_size, (batch, length)).astype(np.int32)
              * mask,
              "input_mask": mask,
              "input_type_ids": (rng.random((batch, length)) < 0.5).astype(np.int32) * mask}
    if extra == "masked_lm_positions":
        inputs[extra] = rng.integers(0, length, (batch, 3)).astype(np.int32)
    return inputs


def columns(arrays):
    """A columnar REST body's `inputs` for numpy arrays."""
    return {name: array.tolist() for name, array in arrays.items()}


def rows(arrays):
    """A row-format REST body's `instances` for numpy arrays."""
    batch = len(next(iter(arrays.values())))
    return [{name: array[i].tolist() for name, array in arrays.items()} for i in range(batch)]


def keras_outputs(model, inputs):
    return {name: keras.ops.convert_to_numpy(value)
            for name, value in model(inputs, training=False).items()}


def keras_text_outputs(model, preprocessor, segments, text_padding="longest"):
    """The Keras answer with every text padded to seq_length; for text_padding="longest", the
    per-token outputs are then cut to the batch's longest text. Computing it this way also
    checks that padding to seq_length does not change the outputs at the real tokens."""
    inputs = preprocessor(segments)
    outputs = {**keras_outputs(model, inputs), "input_word_ids": inputs["input_word_ids"].numpy()}
    if text_padding == "longest":
        longest = int(inputs["input_mask"].numpy().sum(axis=1).max())
        for name in PER_TOKEN_OUTPUTS & set(outputs):
            outputs[name] = outputs[name][:, :longest]
    return outputs


def keras_answer(model, preprocessor, request, text_padding="longest"):
    """What the Keras model (and the preprocessor) make of a REST :predict body."""
    signature = request.get("signature_name", "serving_default")
    if signature == "serving_default":
        return keras_outputs(model, rest_request_to_arrays(request, dict.fromkeys(model.input,
                                                                               tf.int32)))
    names = ["text"] if signature == "serve_text" else ["text_a", "text_b"]
    arrays = rest_request_to_arrays(request, dict.fromkeys(names, tf.string))
    segments = [tf.constant(arrays[name]) for name in names]
    return keras_text_outputs(model, preprocessor, segments[0] if len(names) == 1 else segments,
                              text_padding)


def with_classifier_outputs(outputs):
    """probabilities, label and label_name of the logits, in NumPy float64."""
    logits = outputs["logits"].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    label = logits.argmax(axis=-1)
    return {**outputs, "probabilities": exp / exp.sum(axis=-1, keepdims=True), "label": label,
            "label_name": np.array([LABELS[i].encode() for i in label], dtype=object)}


def run_serving_check(exports, directory):
    """Runs tests/serving_check.py on {export_dir: {case: (request, expected)}}.

    Returns ({case: (expected, tf1 outputs, tf2 outputs)}, {export_dir: non-core op types}).
    """
    job = {"ops_report": str(directory / "ops.json"), "exports": []}
    for export_dir, cases in exports.items():
        calls = [{"request": request, "results": str(directory / f"{case}.npz")}
                 for case, (request, _) in cases.items()]
        job["exports"].append({"export_dir": export_dir, "calls": calls})
    (directory / "job.json").write_text(json.dumps(job))
    result = subprocess.run([sys.executable, SERVING_CHECK, str(directory / "job.json")],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0 and "serving_check: ok" in result.stdout, result.stderr[-4000:]
    served = {}
    for cases in exports.values():
        for case, (_, expected) in cases.items():
            with np.load(directory / f"{case}.npz", allow_pickle=True) as npz:
                tf1 = {key[4:]: npz[key] for key in npz.files if key.startswith("tf1/")}
                tf2 = {key[4:]: npz[key] for key in npz.files if key.startswith("tf2/")}
            served[case] = (expected, tf1, tf2)
    return served, json.loads((directory / "ops.json").read_text())


@pytest.fixture(scope="module")
def exports(tmp_path_factory, encoder, vocab_file):
    """Every export of the serving tests, and the served answers to their requests."""
    root = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(0)
    requests = {}  # export_dir -> {case: request}
    answers = {}  # case -> the Keras answer

    # Three sequence lengths for text: the encoder packs to 8, the classifier to 16, MiniLM to
    # 32; serving_default gets ids of other lengths (it takes any).
    preprocessor = BertPreprocessor(vocab_file, 8)
    export_dir = export_saved_model(encoder, root / "encoder", preprocessor)
    cases = requests[export_dir] = {}
    for batch, ids_length in ((1, 5), (7, 11)):
        cases[f"text_{batch}"] = {"signature_name": "serve_text", "instances": SINGLES[:batch]}
        cases[f"pair_{batch}"] = {
            "signature_name": "serve_text_pair",
            "inputs": {"text_a": PAIRS[0][:batch], "text_b": PAIRS[1][:batch]}}
        cases[f"ids_{batch}"] = {"signature_name": "serving_default",
                                 "instances": rows(random_ids(rng, batch, ids_length))}
    answers.update({case: keras_answer(encoder, preprocessor, request)
                    for case, request in cases.items()})

    export_dir = export_saved_model(encoder, root / "encoder_max_length", preprocessor,
                                    text_padding="max_length")
    cases = requests[export_dir] = {
        "max_length_text_7": {"signature_name": "serve_text", "instances": SINGLES},
        "max_length_pair_1": {"signature_name": "serve_text_pair",
                              "inputs": {"text_a": ["cats"], "text_b": ["yes"]}}}
    answers.update({case: keras_answer(encoder, preprocessor, request, "max_length")
                    for case, request in cases.items()})

    pretrainer = BertPretrainer(encoder)
    export_dir = export_saved_model(pretrainer, root / "pretrainer")
    requests[export_dir] = {
        f"pretrainer_{batch}": {"inputs": columns(random_ids(rng, batch, length,
                                                             extra="masked_lm_positions"))}
        for batch, length in ((1, 5), (7, 12))}
    answers.update({case: keras_answer(pretrainer, None, request)
                    for case, request in requests[export_dir].items()})

    keras.utils.set_random_seed(3)
    classifier = bert_classifier(encoder, num_classes=len(LABELS))
    preprocessor = BertPreprocessor(vocab_file, 16)
    export_dir = export_saved_model(classifier, root / "classifier", preprocessor,
                                    label_names=LABELS)
    requests[export_dir] = {
        "classifier_text_7": {"signature_name": "serve_text", "inputs": {"text": SINGLES}},
        "classifier_pair_1": {"signature_name": "serve_text_pair",
                              "instances": [{"text_a": PAIRS[0][4], "text_b": PAIRS[1][4]}]},
        "classifier_ids_7": {"inputs": columns(random_ids(rng, 7, 20))}}
    answers.update({case: with_classifier_outputs(keras_answer(classifier, preprocessor, request))
                    for case, request in requests[export_dir].items()})

    minilm, minilm_preprocessor = from_pretrained(MINILM_DIR, seq_length=32)
    export_dir = export_saved_model(minilm, root / "minilm", minilm_preprocessor)
    cases = requests[export_dir] = {f"readme_{name}": request
                                    for name, request in README_REQUESTS.items()}
    cases["minilm_sentences"] = {"signature_name": "serve_text", "instances": MINILM_SENTENCES}
    cases["minilm_pairs"] = {"signature_name": "serve_text_pair",
                             "instances": [{"text_a": a, "text_b": b} for a, b in
                                           zip(MINILM_SENTENCES, MINILM_SENTENCES[::-1])]}
    answers.update({case: keras_answer(minilm, minilm_preprocessor, request)
                    for case, request in cases.items()})

    served, ops_report = run_serving_check(
        {export_dir: {case: (request, answers[case]) for case, request in cases.items()}
         for export_dir, cases in requests.items()}, root)
    return {"served": served, "ops": ops_report, "dirs": sorted(requests), "root": root}


def assert_served(served, case):
    expected, tf1, tf2 = served[case]
    for loader, outputs in (("tf1", tf1), ("tf2", tf2)):
        assert sorted(outputs) == sorted(expected), (case, loader)
        for name, value in expected.items():
            message = f"{case}: {loader} {name}"
            if value.dtype.kind in "iuO":
                np.testing.assert_array_equal(outputs[name], value, err_msg=message)
            elif name == "sequence_output" and "input_word_ids" in expected:
                # Real tokens as every float output; padding positions (meaningless, read by
                # nothing) carry more float32 rounding between the TF1 and eager kernels: seen
                # 5.2e-5 at one padding position of MiniLM's empty sentence, as test_hf_weights.
                real = expected["input_word_ids"] != 0  # [PAD] is id 0 in these vocabs
                np.testing.assert_allclose(outputs[name][real], value[real], rtol=1e-5,
                                           atol=1e-5, err_msg=message)
                np.testing.assert_allclose(outputs[name][~real], value[~real], rtol=1e-5,
                                           atol=1e-4, err_msg=message + " (padding)")
            else:  # float32 noise grows with magnitude: MiniLM has outputs near 6
                np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-5,
                                           err_msg=message)


# --- served answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ids_1", "ids_7", "classifier_ids_7"])
def test_id_signature_serves_the_keras_outputs(exports, case):
    assert_served(exports["served"], case)


@pytest.mark.parametrize("case", ["text_1", "text_7", "pair_1", "pair_7", "classifier_text_7",
                                  "classifier_pair_1", "max_length_text_7", "max_length_pair_1"])
def test_text_signatures_serve_the_keras_outputs(exports, case):
    assert_served(exports["served"], case)


def test_served_ids_are_googles(exports):
    served = exports["served"]
    # [CLS] hello , world ! [SEP]: a request is padded only to its longest text...
    assert served["text_1"][1]["input_word_ids"].tolist() == [[2, 5, 19, 6, 18, 3]]
    assert served["text_1"][1]["sequence_output"].shape == (1, 6, TINY.hidden_size)
    # ... or, exported with text_padding="max_length", to seq_length with [PAD] = 0.
    assert served["max_length_pair_1"][1]["input_word_ids"].tolist() == [[2, 8, 14, 3, 13, 3,
                                                                          0, 0]]
    assert served["max_length_text_7"][2]["sequence_output"].shape == (7, 8, TINY.hidden_size)
    # "Is it here?" + "Yes." in 8 tokens: _truncate_seq_pair pops "?" from the longer A.
    assert served["pair_1"][1]["input_word_ids"].tolist() == [[2, 10, 11, 12, 3, 13, 20, 3]]
    # hello the cat is here [UNK] ("and" is not in the vocab), cut to 8 - 2 pieces.
    assert served["text_7"][2]["input_word_ids"][4].tolist() == [2, 5, 7, 8, 10, 12, 1, 3]
    # un ##aff ##able cat ##s sat here , yes .
    assert served["classifier_text_7"][2]["input_word_ids"][3].tolist() == [
        2, 15, 16, 17, 8, 14, 9, 12, 19, 13, 20, 3, 0, 0, 0, 0]
    # cat ##s sat . | the world is (x3) the world: 13 fit, A keeps its 4, B 9 of its 11.
    assert served["classifier_pair_1"][1]["input_word_ids"].tolist() == [
        [2, 8, 14, 9, 20, 3, 7, 6, 10, 7, 6, 10, 7, 6, 10, 3]]


@pytest.mark.parametrize("batch", [1, 7])
def test_pretrainer_serves_ids_only(exports, batch):
    assert_served(exports["served"], f"pretrainer_{batch}")


def test_classifier_adds_probabilities_label_and_label_name(exports):
    expected, tf1, _ = exports["served"]["classifier_text_7"]
    assert {"probabilities", "label", "label_name"} <= set(tf1)
    np.testing.assert_allclose(tf1["probabilities"].sum(axis=-1), np.ones(7), atol=1e-6)
    assert tf1["label_name"].tolist() == [LABELS[i].encode() for i in tf1["label"]]
    assert tf1["label"].tolist() == expected["label"].tolist()


def test_minilm_text_export_matches_keras_and_preprocessor(exports):
    assert_served(exports["served"], "minilm_sentences")
    assert_served(exports["served"], "minilm_pairs")
    expected = exports["served"]["minilm_sentences"][0]
    assert expected["pooled_output"].shape == (7, 384)
    assert expected["sequence_output"].shape == (7, 32, 384)


@pytest.mark.parametrize("name", sorted(README_REQUESTS))
def test_readme_requests_give_the_keras_answers(exports, name):
    assert_served(exports["served"], f"readme_{name}")


@pytest.mark.parametrize("name", ["encoder", "encoder_max_length", "classifier"])
def test_an_empty_request_gets_empty_answers(exports, name):
    signatures = tf.saved_model.load(os.path.join(exports["root"], name, "1")).signatures
    empty = tf.constant([], tf.string)
    for outputs in (signatures["serve_text"](text=empty),
                    signatures["serve_text_pair"](text_a=empty, text_b=empty)):
        assert outputs and all(value.shape[0] == 0 for value in outputs.values()), outputs


def test_malformed_text_requests_are_refused_by_the_graph_as_tf_serving_runs_it(exports):
    """TF Serving feeds the signature's placeholders in a session: a pair of unequal lengths
    used to fail deep inside the packing ("Incompatible shapes ... Minimum"); the graph now
    names the two inputs."""
    export_dir = os.path.join(exports["root"], "encoder", "1")
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)

        def run(name, **feeds):
            signature = meta.signature_def[name]
            fetch = signature.outputs["pooled_output"].name
            return session.run(fetch, {signature.inputs[key].name: value
                                       for key, value in feeds.items()})

        assert run("serve_text", text=np.array([b"hello world"])).shape == (1, 16)
        # A [B, N] batch: refused by the signature's shape [None] where a client checks it,
        # and by the graph's own rank check where a server feeds it unchecked.
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                           match=r"shape \(1, 2\) .*shape \(None,\)|text must be a list of "
                                 r"strings \(one per example\)"):
            run("serve_text", text=np.array([[b"hello", b"world"]]))
        with pytest.raises(tf.errors.InvalidArgumentError, match="text_a and text_b must be "
                                                                 "lists of the same length"):
            run("serve_text_pair", text_a=np.array([b"a", b"b"]),
                text_b=np.array([b"a", b"b", b"c"]))


def test_readme_id_and_text_requests_agree(exports):
    served = exports["served"]
    by_text = served["readme_text_named_rows"][1]
    by_ids = served["readme_ids_rows"][1]
    # One text is padded to its own length: the text request is the id request.
    assert by_text["input_word_ids"].tolist() == [[101, 7592, 2088, 999, 102]]
    for name in ("pooled_output", "sequence_output"):
        np.testing.assert_allclose(by_ids[name], by_text[name], atol=1e-5)


def test_rest_request_forms_convert_as_tf_serving_does():
    dtypes = {"text_a": tf.string, "text_b": tf.string}
    rows_form = rest_request_to_arrays(
        {"instances": [{"text_a": "a", "text_b": {"b64": "Yg=="}}, {"text_a": "c", "text_b": "d"}]},
        dtypes)
    columns_form = rest_request_to_arrays({"inputs": {"text_a": ["a", "c"], "text_b": ["b", "d"]}},
                                          dtypes)
    for arrays in (rows_form, columns_form):
        assert arrays["text_a"].tolist() == [b"a", b"c"]
        assert arrays["text_b"].tolist() == [b"b", b"d"]
    single = rest_request_to_arrays({"instances": [[1, 2], [3, 4]]}, {"ids": tf.int32})
    assert single["ids"].dtype == np.int32 and single["ids"].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="signature takes"):
        rest_request_to_arrays({"inputs": {"text_a": ["a"]}}, dtypes)


# --- what is in an export ----------------------------------------------------------------------

def test_every_export_uses_only_core_and_allowed_tf_text_ops(exports):
    text_exports = [d for d in exports["dirs"] if "pretrainer" not in d]
    for export_dir in exports["dirs"]:
        # Asked of a TensorFlow without TF Text: what it does not know must be on the list.
        not_core = set(exports["ops"][export_dir])
        assert not_core <= TF_SERVING_TF_TEXT_OPS, (export_dir, not_core)
        assert unservable_saved_model_ops(export_dir) == []
    for export_dir in text_exports:
        # The TF Text ops sit inside function bodies: finding them proves the walk reaches there.
        expected = {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets", "NormalizeUTF8"}
        assert set(exports["ops"][export_dir]) == expected
        assert expected <= saved_model_op_types(export_dir)


def test_each_weight_is_stored_once(exports, encoder):
    checkpoint = os.path.join(exports["root"], "encoder", "1", "variables", "variables")
    stored = [name for name, _ in tf.train.list_variables(checkpoint)
              if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert len(stored) == len(encoder.variables)  # weights and dropout seed states


def test_signatures_and_metadata(exports, vocab_file):
    encoder_dir, pretrainer_dir = (os.path.join(exports["root"], name, "1")
                                   for name in ("encoder", "pretrainer"))
    with open(os.path.join(encoder_dir, "assets.extra", "keras_bert_min.json")) as f:
        metadata = json.load(f)
    assert metadata["model_class"] == "BertEncoder" and metadata["seq_length"] == 8
    assert metadata["lower_case"] is True and metadata["bert_config"] == TINY.to_dict()
    assert metadata["text_padding"] == "longest"
    assert metadata["signatures"]["serve_text_pair"] == {
        "inputs": ["text_a", "text_b"],
        "outputs": ["input_word_ids", "pooled_output", "sequence_output"]}
    with open(os.path.join(encoder_dir, "assets.extra", "vocab.txt")) as f, open(vocab_file) as g:
        assert f.read() == g.read()
    # The preprocessor comes back from the export alone.
    again = BertPreprocessor.load(os.path.join(encoder_dir, "assets.extra"))
    assert (again.seq_length, again.lower_case) == (8, True)
    with open(os.path.join(pretrainer_dir, "assets.extra", "keras_bert_min.json")) as f:
        metadata = json.load(f)
    assert list(metadata["signatures"]) == ["serving_default"]
    assert metadata["text_padding"] is None
    assert metadata["signatures"]["serving_default"]["inputs"] == [
        "input_mask", "input_type_ids", "input_word_ids", "masked_lm_positions"]


def test_a_mixed_precision_model_serves_float32(tmp_path, mixed_bfloat16):
    keras.utils.set_random_seed(1)
    encoder = BertEncoder(TINY)
    ids = random_ids(np.random.default_rng(1), 3, 6)
    expected = keras_outputs(encoder, ids)
    assert expected["sequence_output"].dtype != np.float32  # bfloat16 under this policy
    function = tf.saved_model.load(export_saved_model(encoder, tmp_path / "bert")).signatures[
        "serving_default"]
    served = function(**{name: tf.constant(array) for name, array in ids.items()})
    for name, value in expected.items():
        assert served[name].dtype == tf.float32
        np.testing.assert_allclose(served[name], value.astype(np.float32), rtol=2e-2, atol=2e-2)


def signature_blocks(listing):
    """{signature name: its lines} from a `saved_model_cli show --all`-style listing."""
    blocks, name = {}, None
    for line in listing.splitlines():
        match = re.match(r"signature_def\['(.+)'\]:$", line)
        if match:
            name = match.group(1)
            blocks[name] = []
        elif name and line.startswith("  "):
            blocks[name].append(line.rstrip())
        else:
            name = None
    return blocks


def test_describe_signatures_prints_what_saved_model_cli_prints(exports):
    export_dir = os.path.join(exports["root"], "pretrainer", "1")
    cli = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show",
                          "--dir", export_dir, "--all"], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    theirs = {name: lines for name, lines in signature_blocks(cli.stdout).items()
              if not name.startswith("__")}
    ours = signature_blocks(describe_signatures(export_dir))
    assert ours == theirs and "serving_default" in ours
    assert "    outputs['mlm_logits'] tensor_info:" in ours["serving_default"]


def log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_exported_classifier_answers_raw_text_like_keras(task_preprocessor, tmp_path):
    """A classifier of TASK_TINY with the fine-tuning preprocessor (moved from the fine-tuning
    tests): its text signatures answer with Keras' softmax, computed in NumPy."""
    classifier = bert_classifier(TASK_TINY, 3)
    texts = tf.constant(["the movie was good", "awful acting and a bad plot", "it is 42"])
    pairs = tf.constant(["really", "quite good", "where is the zebra ?"])
    version_dir = export_saved_model(classifier, str(tmp_path / "export"), task_preprocessor)
    served = tf.saved_model.load(version_dir)
    for signature, segments, kwargs in [
            ("serve_text", texts, {"text": texts}),
            ("serve_text_pair", [texts, pairs], {"text_a": texts, "text_b": pairs})]:
        logits = classifier.predict(task_preprocessor(segments), verbose=0)["logits"]
        expected = np.exp(log_softmax(logits.astype("float64")))
        outputs = served.signatures[signature](**kwargs)
        np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-6)
        assert outputs["label"].numpy().tolist() == expected.argmax(-1).tolist()


# --- refusals and atomicity --------------------------------------------------------------------

def test_text_signatures_need_the_three_encoder_inputs(encoder, vocab_file, tmp_path):
    with pytest.raises(ValueError, match="masked_lm_positions.*preprocessor=None"):
        export_saved_model(BertPretrainer(encoder), tmp_path / "base",
                           BertPreprocessor(vocab_file, 8))
    with pytest.raises(ValueError, match="max_position_embeddings 32"):
        export_saved_model(encoder, tmp_path / "base", BertPreprocessor(vocab_file, 40))
    with pytest.raises(ValueError, match=r"text_padding must be one of \('max_length', "
                                         r"'longest'\), got 'max'"):
        export_saved_model(encoder, tmp_path / "base", BertPreprocessor(vocab_file, 8),
                           text_padding="max")
    with pytest.raises(ValueError, match="label_names need a classifier"):
        export_saved_model(encoder, tmp_path / "base", label_names=["a", "b"])
    with pytest.raises(ValueError, match="dict inputs and outputs"):
        export_saved_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                           tmp_path / "base")
    assert not (tmp_path / "base").exists() or not os.listdir(tmp_path / "base")


def test_versions_count_up_and_are_never_overwritten(encoder, tmp_path):
    base = tmp_path / "models" / "bert"
    assert export_saved_model(encoder, base) == str(base / "1")
    assert export_saved_model(encoder, base, version=7) == str(base / "7")
    assert export_saved_model(encoder, base) == str(base / "8")
    before = sorted(os.listdir(base / "7"))
    with pytest.raises(ValueError, match=r"Version 7 already exists.*next free number \(9\)"):
        export_saved_model(encoder, base, version=7)
    assert sorted(os.listdir(base / "7")) == before
    for bad in (-1, "2", True, 1.0):
        with pytest.raises(ValueError, match="version must be an integer of at least 0"):
            export_saved_model(encoder, base, version=bad)
    assert sorted(os.listdir(base)) == ["1", "7", "8"]
    # An empty version directory (TF Serving would fail on it as the highest) is removed, and
    # its number taken again; a non-empty one that is not ours is left alone.
    (base / "9").mkdir()
    (base / "12").mkdir()
    (base / "10").mkdir()
    (base / "10" / "notes.txt").write_text("someone else's")
    assert export_saved_model(encoder, base) == str(base / "11")
    assert sorted(os.listdir(base), key=int) == ["1", "7", "8", "10", "11"]


def test_an_interrupted_export_leaves_nothing_tf_serving_would_load(encoder, vocab_file,
                                                                    tmp_path, monkeypatch):
    base = tmp_path / "bert"
    export_saved_model(encoder, base)
    seen = {}

    def crash_midway(*args):
        directory = args[-1]
        # The SavedModel is written by now; only its assets.extra and the rename are missing.
        seen["entries"] = sorted(os.listdir(base))
        seen["work_dir_has_model"] = os.path.isfile(os.path.join(directory, "saved_model.pb"))
        raise KeyboardInterrupt("killed during the export")

    monkeypatch.setattr(export, "_write_assets_extra", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(encoder, base, BertPreprocessor(vocab_file, 8))
    assert seen["work_dir_has_model"]
    # While it ran, the half-written model sat under a name TF Serving never loads: the
    # version's own name plus ".partial" (not all digits)...
    assert [name for name in seen["entries"] if name != "1"] != []
    assert all(not name.isdigit() for name in seen["entries"] if name != "1")
    assert seen["entries"] == ["1", "2.partial"]
    # ...and it is gone after the failure.
    assert sorted(os.listdir(base)) == ["1"]
    monkeypatch.undo()
    assert export_saved_model(encoder, base) == str(base / "2")


def test_a_graph_with_ops_tf_serving_lacks_is_refused(encoder, vocab_file, tmp_path):
    class TrimmingPreprocessor(BertPreprocessor):
        """Trims with RoundRobinTrimmer, whose op stock TF Serving (<= 2.19) lacks."""

        def __call__(self, inputs, padding="max_length"):
            segments = inputs if isinstance(inputs, list) else [inputs]
            trimmed = tf_text.RoundRobinTrimmer(self.seq_length - 3).trim(
                [self.tokenize(segment) for segment in segments])
            return self.pack(trimmed)

    with pytest.raises(ValueError, match=r"TFText>RoundRobinTrim"):
        export_saved_model(encoder, tmp_path / "bert", TrimmingPreprocessor(vocab_file, 8))
    assert os.listdir(tmp_path / "bert") == []


def test_a_wrong_export_base_is_refused_before_any_work(encoder, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("export started before checking export_base")

    monkeypatch.setattr(export, "signature_functions", no_work)
    a_file = tmp_path / "model.txt"
    a_file.write_text("not a directory")
    with pytest.raises(ValueError, match=r"model\.txt' is a file, not a directory"):
        export_saved_model(encoder, a_file)

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    real_access = os.access
    # Tests run as root, who may write anywhere: pretend this one directory is read-only.
    monkeypatch.setattr(os, "access", lambda path, mode: (
        False if os.path.abspath(path) == str(read_only) and mode & os.W_OK
        else real_access(path, mode)))
    with pytest.raises(ValueError, match=r"read_only' is not writable"):
        export_saved_model(encoder, read_only)
    assert os.listdir(read_only) == []

    with pytest.raises(ValueError, match="Cannot create export_base"):
        export_saved_model(encoder, a_file / "bert")


# --- recipes/export.py -------------------------------------------------------------------------

def load_recipe():
    spec = importlib.util.spec_from_file_location("export_recipe",
                                                  os.path.join(REPO, "recipes", "export.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def test_recipe_help_explains_every_flag():
    parser = load_recipe().build_parser()
    flags = [action for action in parser._actions if action.option_strings != ["-h", "--help"]]
    assert {flag.option_strings[0] for flag in flags} >= {
        "--train_dir", "--model", "--vocab", "--pretrained", "--export_base", "--version",
        "--seq_length", "--text_padding", "--lower_case", "--encoder_only", "--ids_only",
        "--model_name", "--rest_port"}
    assert all(len(flag.help or "") > 20 for flag in flags), [f.dest for f in flags if not f.help]
    with pytest.raises(SystemExit):
        load_recipe().parse_args(["--model", "m.keras", "--export_base", "b"])  # no --vocab


def test_recipe_end_to_end(encoder, vocab_file, tmp_path):
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    classifier = bert_classifier(encoder, num_classes=len(LABELS))
    classifier.save(str(train_dir / "model.keras"))
    (train_dir / "vocab.txt").write_text(open(vocab_file).read())
    (train_dir / "preprocessor.json").write_text(json.dumps({"seq_length": 12,
                                                             "lower_case": True}))
    (train_dir / "labels.json").write_text(json.dumps(LABELS))
    base = tmp_path / "serving" / "sentiment"

    result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "export.py"),
                             "--train_dir", str(train_dir), "--export_base", str(base)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    version_dir = base / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert unservable_saved_model_ops(str(version_dir)) == []
    out = result.stdout
    blocks = signature_blocks(out)
    assert sorted(blocks) == ["serve_text", "serve_text_pair", "serving_default"]
    assert "    outputs['label_name'] tensor_info:" in blocks["serve_text"]
    assert f"-v {base}:/models/sentiment -e MODEL_NAME=sentiment tensorflow/serving" in out
    assert out.strip().splitlines()[-1].endswith(str(version_dir))

    # The printed curl request, run against the export, answers like the Keras model.
    curl = next(line.strip() for line in out.splitlines() if line.strip().startswith("curl "))
    words = shlex.split(curl)
    assert words[words.index("-X") + 2] == "http://localhost:8501/v1/models/sentiment:predict"
    body = json.loads(words[words.index("-d") + 1])
    function = tf.saved_model.load(str(version_dir)).signatures[body["signature_name"]]
    dtypes = {name: spec.dtype for name, spec in function.structured_input_signature[1].items()}
    served = function(**{name: tf.constant(array)
                         for name, array in rest_request_to_arrays(body, dtypes).items()})
    expected = with_classifier_outputs(keras_text_outputs(
        classifier, BertPreprocessor(vocab_file, 12), tf.constant(body["instances"])))
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-5)
    assert served["label_name"].numpy().tolist() == expected["label_name"].tolist()
    # "Hello world!" is padded to its own 5 tokens, not to the 12 of preprocessor.json.
    assert served["input_word_ids"].numpy().tolist() == expected["input_word_ids"].tolist()
    assert expected["input_word_ids"].shape == (1, 5)
    metadata = json.loads((version_dir / "assets.extra" / "keras_bert_min.json").read_text())
    assert (metadata["seq_length"], metadata["text_padding"]) == (12, "longest")


@pytest.mark.parametrize("vocab_words", [VOCAB[:-2], VOCAB + ["extra", "words"]])
def test_a_vocab_of_another_size_than_the_model_is_refused(encoder, tmp_path, vocab_words):
    """A smaller vocab used to export and serve, with the wrong word for many ids."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(vocab_words) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"vocab has {len(vocab_words)} tokens but the model's "
                                         rf"vocab_size is {len(VOCAB)}; use the vocab.txt"):
        export_saved_model(encoder, tmp_path / "bert", BertPreprocessor(str(vocab), 8))
    assert not (tmp_path / "bert").exists() or os.listdir(tmp_path / "bert") == []
