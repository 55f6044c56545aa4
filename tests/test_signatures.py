"""The task signatures of exported SavedModels (keras_bert_min.signatures), served as TF Serving
serves them: tests/serving_check.py loads each export in a fresh process with only TensorFlow
and the TF Text kernels (no Keras, no keras_bert_min), through the TF1 session loader and
`tf.saved_model.load`.

References: the Keras model's own outputs on the preprocessor's ids, `tasks.decode_span` (a
brute-force span search over the same rules), NumPy softmax and argmax, hand-written byte
offsets, and the bytes an answer's offsets cut out of its context.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.export import export_saved_model, unservable_saved_model_ops
from keras_bert_min.pretrained import from_pretrained
from keras_bert_min.models import bert_encoder
from keras_bert_min.tasks import (BertSpanPredictor, BertTokenClassifier, bert_multiple_choice,
                                  decode_span)
from keras_bert_min.text.choices import choice_inputs
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests.fixtures import MINILM_DIR, TASK_TINY, tiny_config
from tests.test_export import run_serving_check

TAGS = ["B-LOC", "I-LOC", "O"]
TAGGER_TEXTS = ["Café in Zürich", "", "Anna flew to New York on Monday, then home."]
QUESTIONS = ["Where did Anna fly?", "Who opened the bakery?", "What?"]
CONTEXTS = ["Anna flew to New York on Monday and met Tom in Paris.",
            "In Cairo, Fatima Khan opened a small bakery near the river in 2019.",
            ""]
MC_CONTEXTS = ["the movie was", "it was a story"]
MC_CHOICES = [["good", "bad", "awful"], ["great", "terrible", "the plot"]]


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory, task_preprocessor):
    root = tmp_path_factory.mktemp("task_exports")
    keras.utils.set_random_seed(11)
    # Tiny models on bert-base-uncased's real vocab (offsets need real word pieces).
    minilm_preprocessor = BertPreprocessor(os.path.join(MINILM_DIR, "vocab.txt"), 32)
    config = tiny_config(minilm_preprocessor.vocab_size, max_position_embeddings=64)
    tagger = BertTokenClassifier(bert_encoder(config), len(TAGS), label_names=TAGS)
    reader = BertSpanPredictor(bert_encoder(config))
    chooser = bert_multiple_choice(TASK_TINY)
    exports = {
        "tagger": export_saved_model(tagger, root / "tagger", minilm_preprocessor),
        "reader": export_saved_model(reader, root / "reader", minilm_preprocessor),
        "reader_null": export_saved_model(reader, root / "reader_null", minilm_preprocessor,
                                          null_score_threshold=-1e9),
        "chooser": export_saved_model(chooser, root / "chooser", task_preprocessor),
    }
    requests = {
        exports["tagger"]: {"tagger": ({"signature_name": "serve_text",
                                        "instances": TAGGER_TEXTS}, None)},
        exports["reader"]: {"reader": ({"signature_name": "serve_question",
                                        "inputs": {"question": QUESTIONS,
                                                   "context": CONTEXTS}}, None)},
        exports["reader_null"]: {"reader_null": ({"signature_name": "serve_question",
                                                  "inputs": {"question": QUESTIONS[:2],
                                                             "context": CONTEXTS[:2]}}, None)},
        exports["chooser"]: {"chooser": ({"signature_name": "serve_choices",
                                          "instances": [{"context": c, "choices": k} for c, k
                                                        in zip(MC_CONTEXTS, MC_CHOICES)]},
                                         None)},
    }
    answers, _ = run_serving_check(requests, root)
    return {"answers": {case: (tf1, tf2) for case, (_, tf1, tf2) in answers.items()},
            "models": {"tagger": tagger, "reader": reader, "chooser": chooser},
            "preprocessor": minilm_preprocessor, "exports": exports}


def both_loaders(served, case):
    tf1, tf2 = served["answers"][case]
    assert sorted(tf1) == sorted(tf2), case
    return tf1, tf2


def test_tagger_serves_tags_and_byte_offsets(served):
    tagger, preprocessor = served["models"]["tagger"], served["preprocessor"]
    inputs = preprocessor(TAGGER_TEXTS, padding="longest")
    logits = keras.ops.convert_to_numpy(tagger(inputs)["logits"])
    for outputs in both_loaders(served, "tagger"):
        np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(outputs["tag_ids"], logits.argmax(-1))
        assert outputs["tags"].tolist() == [[TAGS[i].encode() for i in row]
                                            for row in logits.argmax(-1)]
        np.testing.assert_array_equal(outputs["input_word_ids"], inputs["input_word_ids"])
        # [CLS] cafe in zurich [SEP]: "Café" is 5 bytes, "Zürich" 7.
        assert outputs["start_offsets"][0].tolist()[:5] == [-1, 0, 6, 9, -1]
        assert outputs["end_offsets"][0].tolist()[:5] == [-1, 5, 8, 16, -1]
        assert (outputs["start_offsets"][1] == -1).all()  # the empty text: specials only
        # Every real piece's bytes are that piece (bert-base-uncased's vocab lower-cases).
        words = [preprocessor.vocab[i].removeprefix("##") for i in inputs["input_word_ids"][2]]
        data = TAGGER_TEXTS[2].encode()
        for word, start, end in zip(words, outputs["start_offsets"][2], outputs["end_offsets"][2]):
            if start >= 0:
                assert data[start:end].decode().lower() == word


def test_question_answering_serves_the_best_valid_span_as_context_bytes(served):
    reader, preprocessor = served["models"]["reader"], served["preprocessor"]
    inputs = {name: value.numpy() for name, value in
              preprocessor([QUESTIONS, CONTEXTS], padding="longest").items()}
    outputs = reader(inputs)
    starts, ends = decode_span(outputs["start_logits"], outputs["end_logits"],
                               inputs["input_type_ids"], inputs["input_mask"])
    _, piece_starts, piece_ends = preprocessor.tokenize_with_offsets(CONTEXTS)
    question_lengths = [len(q) for q in preprocessor.tokenize(QUESTIONS).to_list()]
    start_logits = keras.ops.convert_to_numpy(outputs["start_logits"])
    end_logits = keras.ops.convert_to_numpy(outputs["end_logits"])
    for served_outputs in both_loaders(served, "reader"):
        for i, context in enumerate(CONTEXTS):
            if starts[i] < 0:  # the empty context: nothing to answer from
                assert served_outputs["answer"][i] == b""
                assert served_outputs["answer_start"][i] == served_outputs["answer_end"][i] == -1
                continue
            first = question_lengths[i] + 2  # [CLS] question [SEP]
            byte_start = piece_starts.to_list()[i][starts[i] - first]
            byte_end = piece_ends.to_list()[i][ends[i] - first]
            assert (served_outputs["answer_start"][i], served_outputs["answer_end"][i]) == (
                byte_start, byte_end)
            assert served_outputs["answer"][i] == context.encode()[byte_start:byte_end]
            np.testing.assert_allclose(served_outputs["score"][i],
                                       start_logits[i, starts[i]] + end_logits[i, ends[i]],
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(served_outputs["null_score"][i],
                                       start_logits[i, 0] + end_logits[i, 0], rtol=1e-5,
                                       atol=1e-5)


def test_a_null_score_threshold_gives_no_answer(served):
    for outputs in both_loaders(served, "reader_null"):
        assert outputs["answer"].tolist() == [b"", b""]
        assert outputs["answer_start"].tolist() == [-1, -1]
        np.testing.assert_array_equal(outputs["score"], outputs["null_score"])


def test_multiple_choice_serves_the_choice_and_probabilities(served, task_preprocessor):
    chooser = served["models"]["chooser"]
    logits = keras.ops.convert_to_numpy(
        chooser(choice_inputs(MC_CONTEXTS, MC_CHOICES, task_preprocessor))["logits"])
    for outputs in both_loaders(served, "chooser"):
        np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs["probabilities"], softmax(logits.astype("float64")),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(outputs["choice"], logits.argmax(-1))


def test_task_exports_use_only_servable_ops(served):
    for export_dir in served["exports"].values():
        assert unservable_saved_model_ops(export_dir) == []


def test_malformed_choices_are_refused_by_the_graph(served):
    serve = tf.saved_model.load(served["exports"]["chooser"]).signatures["serve_choices"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="two or more choices"):
        serve(context=tf.constant(["the movie was"]), choices=tf.constant([["good"]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one list of choices per context"):
        serve(context=tf.constant(["a", "b"]), choices=tf.constant([["good", "bad"]]))


def test_signature_lists_per_model(served):
    signatures = {name: sorted(tf.saved_model.load(path).signatures)
                  for name, path in served["exports"].items()}
    assert signatures["tagger"] == ["serve_text", "serve_text_pair", "serving_default"]
    assert signatures["reader"] == ["serve_question", "serve_text", "serve_text_pair",
                                    "serving_default"]
    assert signatures["chooser"] == ["serve_choices", "serving_default"]


def test_export_arguments_are_checked(tmp_path):
    reader, preprocessor = from_pretrained(MINILM_DIR, "span_predictor", seq_length=16)
    with pytest.raises(ValueError, match="max_answer_length must be an integer"):
        export_saved_model(reader, tmp_path / "a", preprocessor, max_answer_length=0)
    with pytest.raises(ValueError, match="null_score_threshold must be a number"):
        export_saved_model(reader, tmp_path / "b", preprocessor, null_score_threshold="high")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    with pytest.raises(ValueError, match="max_query_length must be an integer"):
        export_saved_model(reader, tmp_path / "c", preprocessor, max_query_length=0)
    # Questions are cut to max_query_length pieces, as run_squad.py cuts them in training.
    version = export_saved_model(reader, tmp_path / "d", preprocessor, max_query_length=2)
    serve = tf.saved_model.load(version).signatures["serve_question"]
    ids = serve(question=tf.constant(["Where did Anna fly today?"]),
                context=tf.constant(["To Oslo."]))["input_word_ids"].numpy()[0]
    where, did = preprocessor.tokenize(["Where did"]).to_list()[0]
    assert ids[:4].tolist() == [preprocessor.cls_id, where, did, preprocessor.sep_id]


def test_unused_preprocessor_settings_do_not_matter(task_vocab_file, tmp_path):
    # A multiple-choice export with a longest-padding preprocessor of another length serves.
    chooser = bert_multiple_choice(TASK_TINY)
    preprocessor = BertPreprocessor(task_vocab_file, seq_length=8)
    version = export_saved_model(chooser, tmp_path / "c", preprocessor)
    serve = tf.saved_model.load(version).signatures["serve_choices"]
    outputs = serve(context=tf.constant(["the movie was good and the plot great"]),
                    choices=tf.constant([["good", "bad"]]))
    assert outputs["logits"].shape == (1, 2)
