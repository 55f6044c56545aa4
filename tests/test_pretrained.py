"""Tests of keras_bert_min.pretrained: directories of pretrained files, as Google and Hugging Face
ship them and as save_pretrained writes them in each format, to a model and its preprocessor.

- A real Hugging Face directory: all-MiniLM-L6-v2's, checked against the same weights loaded by
  `load_hf_weights`, and its tokens against bert-base-uncased's ids.
- A Google release directory written here (`bert_config.json`, a TF1 checkpoint, `vocab.txt`).
- Every refusal: a missing or mismatched file is named in the message.
"""

import json
import os

import numpy as np
import safetensors.numpy
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from keras_bert_min.models import BertEncoder, BertPretrainer
from keras_bert_min.pretrained import from_pretrained, save_pretrained
from keras_bert_min.tasks import (BertClassifier, BertMultipleChoice, BertSpanPredictor,
                                  BertTokenClassifier)
from keras_bert_min.text.preprocessor import BertPreprocessor
from tests import reference_bert
from tests.fixtures import (CHECKPOINT_TINY, CHECKPOINT_VOCAB, MINILM_DIR, token_ids,
                            write_vocab_file)
from tests.helpers import run_encoder
from tests.reference_checkpoints import google_from_hf, hf_from_google, write_tf1_checkpoint


def write_tiny_vocab(directory, tokens=CHECKPOINT_VOCAB):
    """A vocab.txt of CHECKPOINT_TINY.vocab_size tokens."""
    write_vocab_file(os.path.join(directory, "vocab.txt"), tokens)


def link_minilm_files(directory, names=("config.json", "model.safetensors", "vocab.txt")):
    os.makedirs(directory, exist_ok=True)
    for name in names:
        os.symlink(os.path.join(MINILM_DIR, name), os.path.join(directory, name))
    return directory


def test_from_pretrained_minilm(minilm_encoder, minilm_vocab):
    encoder, preprocessor = from_pretrained(MINILM_DIR, seq_length=16)
    assert isinstance(encoder, BertEncoder)
    # tokenizer_config.json says do_lower_case: true.
    assert preprocessor.lower_case is True and preprocessor.seq_length == 16
    inputs = preprocessor(tf.constant(["The cat sat on the mat."]))
    ids, _ = token_ids(minilm_vocab, "the cat sat on the mat .")
    np.testing.assert_array_equal(inputs["input_word_ids"][0], ids + [0] * (16 - len(ids)))
    ours = run_encoder(encoder, inputs["input_word_ids"], inputs["input_mask"],
                       inputs["input_type_ids"])
    expected = run_encoder(minilm_encoder[0], inputs["input_word_ids"], inputs["input_mask"],
                           inputs["input_type_ids"])
    np.testing.assert_array_equal(ours["pooled_output"], expected["pooled_output"])


def test_from_pretrained_google_directory_pretrainer(tmp_path, checkpoint_params):
    directory = tmp_path / "cased_L-2_H-16_A-4"  # a cased Google name, and no tokenizer_config
    directory.mkdir()
    CHECKPOINT_TINY.to_json_file(directory / "bert_config.json", format="google")
    write_tf1_checkpoint(directory / "bert_model.ckpt", checkpoint_params)
    write_tiny_vocab(directory)

    pretrainer, preprocessor = from_pretrained(directory, model="pretrainer", seq_length=8)
    assert isinstance(pretrainer, BertPretrainer) and preprocessor.lower_case is False
    assert pretrainer.bert_config.hidden_act == "gelu_tanh"  # Google's "gelu"
    loaded = reference_bert.google_params_from_model(pretrainer)
    assert all(np.array_equal(loaded[name], checkpoint_params[name]) for name in checkpoint_params)

    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    _, preprocessor = from_pretrained(directory, seq_length=8)
    assert preprocessor.lower_case is True


def test_from_pretrained_hidden_size_mismatch(tmp_path):
    directory = link_minilm_files(tmp_path / "mismatch", names=("model.safetensors", "vocab.txt"))
    with open(os.path.join(MINILM_DIR, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config.update(hidden_size=256, num_attention_heads=4)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        from_pretrained(directory)
    message = str(error.value)
    assert ("embeddings.word_embeddings.weight: expected shape (30522, 256), found (30522, 384)"
            in message)
    assert "config that came with these weights" in message


def test_from_pretrained_bad_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileNotFoundError, match="a_file"):
        from_pretrained(tmp_path / "a_file")

    no_config = link_minilm_files(tmp_path / "no_config", names=("model.safetensors", "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="bert_config.json.*config.json"):
        from_pretrained(no_config)

    no_weights = link_minilm_files(tmp_path / "no_weights", names=("config.json", "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="No BERT weights.*model.safetensors"):
        from_pretrained(no_weights)
    (no_weights / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin.*convert"):
        from_pretrained(no_weights)

    no_vocab = link_minilm_files(tmp_path / "no_vocab", names=("config.json", "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="No vocab.txt"):
        from_pretrained(no_vocab)

    short_vocab = link_minilm_files(tmp_path / "short_vocab",
                                    names=("config.json", "model.safetensors"))
    write_tiny_vocab(short_vocab)
    with pytest.raises(ValueError, match="30 tokens but the config's vocab_size is 30522"):
        from_pretrained(short_vocab)

    with pytest.raises(ValueError, match="model must be 'auto' or one of .*'span_predictor'"):
        from_pretrained(MINILM_DIR, model="tagger")
    with pytest.raises(ValueError, match=r"seq_length must be an integer in \[3, 512\]"):
        from_pretrained(MINILM_DIR, seq_length=1000)


def test_from_pretrained_truncated_weights(tmp_path, checkpoint_params):
    directory = tmp_path / "truncated"
    directory.mkdir()
    hf_config = {"model_type": "bert", **CHECKPOINT_TINY.to_dict(), "hidden_act": "gelu_new"}
    (directory / "config.json").write_text(json.dumps(hf_config))
    write_tiny_vocab(directory)
    save_file(hf_from_google(checkpoint_params, 2), directory / "whole.safetensors")
    whole = (directory / "whole.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(whole[:-8])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated"):
        from_pretrained(directory, model="pretrainer", seq_length=8)


# --- save_pretrained -> from_pretrained ------------------------------------------------------------

FORMATS = ("keras", "google", "hf")
KINDS = ("encoder", "pretrainer", "classifier", "token_classifier", "span_predictor",
         "multiple_choice")


def randomised(model, seed=0):
    """`model` with every weight drawn at random (biases and LayerNorms too), so a variable
    that a format drops or mixes up changes the outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    return model


def tiny_model(kind, config=CHECKPOINT_TINY):
    encoder = BertEncoder(config)
    model = {"encoder": encoder, "pretrainer": BertPretrainer(encoder),
             "classifier": BertClassifier(encoder, 3, label_names=["neg", "neu", "pos"]),
             "token_classifier": BertTokenClassifier(encoder, 4),
             "span_predictor": BertSpanPredictor(encoder),
             "multiple_choice": BertMultipleChoice(encoder, dropout=0.2)}[kind]
    return randomised(model)


def tiny_inputs(kind):
    ids = np.array([[2, 7, 9, 11, 3, 12, 3, 0], [2, 5, 6, 3, 8, 10, 13, 3]], np.int32)
    inputs = {"input_word_ids": ids, "input_mask": (ids > 0).astype(np.int32),
              "input_type_ids": np.array([[0] * 5 + [1] * 3] * 2, np.int32)}
    if kind == "pretrainer":
        inputs["masked_lm_positions"] = np.array([[1, 2, 0], [4, 5, 6]], np.int32)
    if kind == "multiple_choice":  # one example with two choices
        inputs = {name: value[None] for name, value in inputs.items()}
    return inputs


def outputs_of(model, inputs):
    return {name: np.asarray(value) for name, value in model(inputs, training=False).items()}


@pytest.fixture(scope="module")
def tiny_preprocessor(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vocab")
    write_tiny_vocab(directory)
    return BertPreprocessor(str(directory / "vocab.txt"), 10, lower_case=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("format", FORMATS)
def test_save_then_load_gives_the_same_model(tmp_path, tiny_preprocessor, format, kind):
    model = tiny_model(kind)
    directory = tmp_path / f"{format}-{kind}"
    assert save_pretrained(model, directory, tiny_preprocessor, format=format) == str(directory)
    loaded, preprocessor = from_pretrained(directory)
    assert type(loaded) is type(model)
    inputs = tiny_inputs(kind)
    for name, value in outputs_of(model, inputs).items():
        np.testing.assert_allclose(outputs_of(loaded, inputs)[name], value, rtol=0, atol=1e-6,
                                   err_msg=name)
    assert getattr(loaded, "num_classes", None) == getattr(model, "num_classes", None)
    assert getattr(loaded, "label_names", None) == getattr(model, "label_names", None)
    assert getattr(loaded, "dropout", None) == getattr(model, "dropout", None)
    assert (preprocessor.vocab, preprocessor.seq_length, preprocessor.lower_case) == \
        (tiny_preprocessor.vocab, 10, False)
    assert not list(tmp_path.glob("*.partial"))


def test_each_format_writes_its_files(tmp_path, tiny_preprocessor):
    classifier = tiny_model("classifier")
    expected = {
        "keras": {"model.keras", "config.json", "vocab.txt", "preprocessor.json", "labels.json"},
        "google": {"bert_config.json", "bert_model.ckpt.index",
                   "bert_model.ckpt.data-00000-of-00001", "keras_bert_min.json", "vocab.txt",
                   "preprocessor.json", "labels.json"},
        "hf": {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
               "preprocessor.json", "labels.json"},
    }
    for format, names in expected.items():
        save_pretrained(classifier, tmp_path / format, tiny_preprocessor, format=format)
        assert set(os.listdir(tmp_path / format)) == names, format
    # Google's run_classifier.py names for the head, [C, H] as its output_weights.
    reader = tf.train.load_checkpoint(str(tmp_path / "google" / "bert_model.ckpt"))
    np.testing.assert_array_equal(reader.get_tensor("output_weights"),
                                  np.asarray(classifier.get_layer("logits").kernel).T)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForSequenceClassification"]
    assert hf_config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert hf_config["hidden_act"] == "gelu_new"  # CHECKPOINT_TINY's tanh GELU, in HF's words
    tokenizer = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer["do_lower_case"] is False and tokenizer["tokenizer_class"] == "BertTokenizer"


def test_minilm_written_as_hf_is_the_original_file_tensor_for_tensor(tmp_path):
    encoder, preprocessor = from_pretrained(MINILM_DIR)
    save_pretrained(encoder, tmp_path / "minilm", preprocessor, format="hf")
    original = load_file(os.path.join(MINILM_DIR, "model.safetensors"))
    written = load_file(str(tmp_path / "minilm" / "model.safetensors"))
    assert sorted(written) == sorted(original)
    for name, value in original.items():
        assert written[name].dtype == value.dtype and written[name].shape == value.shape, name
        assert written[name].tobytes() == value.tobytes(), name  # bit-identical
    with open(os.path.join(MINILM_DIR, "config.json"), encoding="utf-8") as f:
        original_config = json.load(f)
    written_config = json.loads((tmp_path / "minilm" / "config.json").read_text())
    for field in ("hidden_act", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "vocab_size", "max_position_embeddings", "layer_norm_eps",
                  "type_vocab_size", "architectures", "model_type"):
        assert written_config[field] == original_config[field], field
    assert (tmp_path / "minilm" / "vocab.txt").read_bytes() == \
        open(os.path.join(MINILM_DIR, "vocab.txt"), "rb").read()


def test_hf_pretrainer_file_read_with_hf_names_gives_the_same_logits(tmp_path, tiny_preprocessor):
    """The written file, read with Hugging Face's key names by this test (not by our loader)
    into the NumPy reference forward pass, gives the model's own MLM and NSP logits."""
    pretrainer = tiny_model("pretrainer", config=CHECKPOINT_TINY.replace(hidden_act="gelu"))
    save_pretrained(pretrainer, tmp_path / "hf", tiny_preprocessor, format="hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    # BertForPreTraining: the encoder under "bert.", the heads under "cls.", no decoder copy
    # (transformers ties it to the word embeddings).
    assert not any(name.startswith("cls.predictions.decoder") for name in tensors)
    params = google_from_hf({name.removeprefix("bert."): value for name, value in tensors.items()
                             if name.startswith("bert.")}, CHECKPOINT_TINY.num_hidden_layers)
    params.update({
        "cls/predictions/transform/dense/kernel": tensors["cls.predictions.transform.dense.weight"].T,
        "cls/predictions/transform/dense/bias": tensors["cls.predictions.transform.dense.bias"],
        "cls/predictions/transform/LayerNorm/gamma":
            tensors["cls.predictions.transform.LayerNorm.weight"],
        "cls/predictions/transform/LayerNorm/beta":
            tensors["cls.predictions.transform.LayerNorm.bias"],
        "cls/predictions/output_bias": tensors["cls.predictions.bias"],
        "cls/seq_relationship/output_weights": tensors["cls.seq_relationship.weight"],
        "cls/seq_relationship/output_bias": tensors["cls.seq_relationship.bias"],
    })
    inputs = tiny_inputs("pretrainer")
    sequence, pooled = reference_bert.encoder(
        params, inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"],
        CHECKPOINT_TINY.num_attention_heads, "gelu")
    mlm, nsp = reference_bert.pretraining_heads(params, sequence, pooled,
                                                inputs["masked_lm_positions"], "gelu")
    ours = outputs_of(pretrainer, inputs)
    np.testing.assert_allclose(ours["mlm_logits"], mlm, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(ours["nsp_logits"], nsp, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("format", FORMATS)
def test_a_new_task_head_on_a_saved_encoder(tmp_path, tiny_preprocessor, format):
    pretrainer = tiny_model("pretrainer")
    save_pretrained(pretrainer, tmp_path / format, tiny_preprocessor, format=format)
    classifier, _ = from_pretrained(tmp_path / format, "classifier", num_classes=5)
    assert isinstance(classifier, BertClassifier) and classifier.num_classes == 5
    inputs = tiny_inputs("encoder")
    np.testing.assert_allclose(outputs_of(classifier.encoder, inputs)["pooled_output"],
                               outputs_of(pretrainer.encoder, inputs)["pooled_output"], atol=1e-6)
    tagger, _ = from_pretrained(tmp_path / format, "token_classifier", num_classes=2)
    assert tagger.num_classes == 2
    encoder, _ = from_pretrained(tmp_path / format, "encoder")
    assert isinstance(encoder, BertEncoder)
    with pytest.raises(ValueError, match="needs num_classes"):
        from_pretrained(tmp_path / format, "classifier")


@pytest.mark.parametrize("format", FORMATS)
def test_a_saved_classifier_of_other_classes_is_not_silently_replaced(tmp_path, format,
                                                                        tiny_preprocessor):
    save_pretrained(tiny_model("classifier"), tmp_path / format, tiny_preprocessor, format=format)
    with pytest.raises(ValueError, match="classifier of 3 classes, not 2"):
        from_pretrained(tmp_path / format, "classifier", num_classes=2)
    classifier, _ = from_pretrained(tmp_path / format, "classifier", num_classes=3)
    assert classifier.label_names == ["neg", "neu", "pos"]


def test_a_pretrainer_needs_heads(tmp_path):
    save_pretrained(tiny_model("classifier"), tmp_path / "keras")
    with pytest.raises(ValueError, match="no pretraining heads"):
        from_pretrained(tmp_path / "keras", "pretrainer")


def test_a_non_empty_directory_is_refused_before_any_work(tmp_path, monkeypatch):
    directory = tmp_path / "used"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    model = tiny_model("encoder")
    monkeypatch.setattr(BertEncoder, "save", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ValueError, match="exists and is not empty; pass overwrite=True"):
        save_pretrained(model, directory)
    assert os.listdir(directory) == ["notes.txt"]


def test_overwrite_replaces_the_layout_and_keeps_other_files(tmp_path, tiny_preprocessor):
    directory = tmp_path / "run"
    save_pretrained(tiny_model("pretrainer"), directory, tiny_preprocessor, format="google")
    (directory / "history.csv").write_text("step,loss\n")
    classifier = tiny_model("classifier")
    save_pretrained(classifier, directory, tiny_preprocessor, format="hf", overwrite=True)
    # No file of the Google layout is left to be read instead of the new weights.
    assert not list(directory.glob("bert_model.ckpt*")) and not (directory / "bert_config.json").exists()
    assert (directory / "history.csv").read_text() == "step,loss\n"
    loaded, _ = from_pretrained(directory)
    assert isinstance(loaded, BertClassifier)
    inputs = tiny_inputs("classifier")
    np.testing.assert_allclose(outputs_of(loaded, inputs)["logits"],
                               outputs_of(classifier, inputs)["logits"], atol=1e-6)
    assert not [name for name in os.listdir(directory) if name.endswith(".partial")]


@pytest.mark.parametrize("format", FORMATS)
def test_a_killed_save_leaves_nothing_that_looks_complete(tmp_path, tiny_preprocessor,
                                                          monkeypatch, format):
    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # as a signal would, in the middle of the write

    monkeypatch.setattr(BertPreprocessor, "save", dies)
    directory = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny_model("encoder"), directory, tiny_preprocessor, format=format)
    assert os.listdir(tmp_path) == []  # neither the directory nor its .partial
    monkeypatch.undo()
    # A partial directory a SIGKILL left is removed by the next save of the same directory.
    (tmp_path / "model.partial").mkdir()
    (tmp_path / "model.partial" / "model.keras").write_bytes(b"half")
    save_pretrained(tiny_model("encoder"), directory, tiny_preprocessor, format=format)
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_save_pretrained_refuses_what_a_format_cannot_hold(tmp_path, tiny_preprocessor):
    exact_gelu = tiny_model("encoder", config=CHECKPOINT_TINY.replace(hidden_act="gelu"))
    with pytest.raises(ValueError, match="cannot be written as Google's bert_config.json"):
        save_pretrained(exact_gelu, tmp_path / "google", tiny_preprocessor, format="google")
    with pytest.raises(ValueError, match="format='hf' needs the preprocessor"):
        save_pretrained(exact_gelu, tmp_path / "google", format="hf")
    with pytest.raises(ValueError, match="format must be one of"):
        save_pretrained(exact_gelu, tmp_path / "x", format="torch")
    with pytest.raises(ValueError, match="label_names must be 3 distinct names"):
        save_pretrained(tiny_model("classifier"), tmp_path / "x", label_names=["a", "b"])
    with pytest.raises(ValueError, match="label_names need a classifier"):
        save_pretrained(exact_gelu, tmp_path / "x", label_names=["a"])
    small = BertPreprocessor(write_vocab_file(str(tmp_path / "vocab.txt"), CHECKPOINT_VOCAB[:10]),
                             8)
    with pytest.raises(ValueError, match="has 10 tokens but the model's vocab_size is 30"):
        save_pretrained(exact_gelu, tmp_path / "x", small)
    assert not (tmp_path / "x").exists() and not (tmp_path / "google").exists()


def test_a_new_head_does_not_take_another_tasks_label_names(tmp_path, tiny_preprocessor):
    tagger = BertTokenClassifier(tiny_model("encoder"), 2, label_names=["O", "B-PER"])
    for format in FORMATS:
        save_pretrained(tagger, tmp_path / format, tiny_preprocessor, format=format)
        # A tagger's hf file has no pooler (as transformers writes it): a classifier, which
        # reads the pooler, must say it accepts an untrained one.
        classifier, _ = from_pretrained(tmp_path / format, "classifier", num_classes=2,
                                        allow_missing_pooler=format == "hf")
        assert classifier.label_names is None, format
        again, _ = from_pretrained(tmp_path / format)
        assert again.label_names == ["O", "B-PER"], format


def test_googles_fine_tuned_directory_keeps_its_head(tmp_path, tiny_preprocessor):
    """run_classifier.py / run_squad.py write no keras_bert_min.json: their heads are read by
    Google's names."""
    for kind, expected_class in (("classifier", BertClassifier),
                                 ("span_predictor", BertSpanPredictor)):
        model = tiny_model(kind)
        directory = tmp_path / kind
        save_pretrained(model, directory, tiny_preprocessor, format="google")
        os.remove(directory / "keras_bert_min.json")
        for request in ("auto", kind):
            loaded, _ = from_pretrained(directory, request)
            assert type(loaded) is expected_class
            inputs = tiny_inputs(kind)
            for name, value in outputs_of(model, inputs).items():
                np.testing.assert_allclose(outputs_of(loaded, inputs)[name], value, atol=1e-6)
    with pytest.raises(ValueError, match="classifier of 3 classes, not 4"):
        from_pretrained(tmp_path / "classifier", "classifier", num_classes=4)


@pytest.mark.parametrize("format", FORMATS)
def test_a_taggers_ignore_label_comes_back(tmp_path, tiny_preprocessor, format):
    tagger = randomised(BertTokenClassifier(BertEncoder(CHECKPOINT_TINY), 4, ignore_label=-1))
    save_pretrained(tagger, tmp_path / format, tiny_preprocessor, format=format)
    loaded, _ = from_pretrained(tmp_path / format)
    assert loaded.ignore_label == -1


def test_a_multiple_choice_hf_file_has_transformers_names(tmp_path, tiny_preprocessor):
    """BertForMultipleChoice's keys: the encoder with its pooler under bert., and
    classifier.weight [1, H] / classifier.bias [1]."""
    model = tiny_model("multiple_choice")
    save_pretrained(model, tmp_path / "hf", tiny_preprocessor, format="hf")
    tensors = safetensors.numpy.load_file(str(tmp_path / "hf" / "model.safetensors"))
    hidden = CHECKPOINT_TINY.hidden_size
    assert tensors["classifier.weight"].shape == (1, hidden)
    assert tensors["classifier.bias"].shape == (1,)
    assert "bert.pooler.dense.weight" in tensors
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForMultipleChoice"]
    assert config["classifier_dropout"] == 0.2
    chooser, _ = from_pretrained(tmp_path / "hf", "multiple_choice", dropout=0.3)
    assert chooser.dropout == 0.3


def test_a_span_head_on_a_taggers_hf_file_needs_no_pooler(tmp_path, tiny_preprocessor):
    # transformers writes neither a tagger's nor a span predictor's pooler.
    save_pretrained(tiny_model("token_classifier"), tmp_path / "hf", tiny_preprocessor,
                    format="hf")
    reader, _ = from_pretrained(tmp_path / "hf", "span_predictor")
    assert isinstance(reader, BertSpanPredictor)


def test_class_arguments_for_a_model_without_classes_are_refused(tmp_path, tiny_preprocessor):
    save_pretrained(tiny_model("pretrainer"), tmp_path / "keras", tiny_preprocessor)
    with pytest.raises(ValueError, match="num_classes and dropout are for a classifier"):
        from_pretrained(tmp_path / "keras", num_classes=3)
    with pytest.raises(ValueError, match="num_classes and dropout are for a classifier"):
        from_pretrained(tmp_path / "keras", "span_predictor", num_classes=3)


def test_a_refused_save_leaves_the_model_as_it_was(tmp_path, tiny_preprocessor):
    classifier = tiny_model("classifier")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty"):
        save_pretrained(classifier, tmp_path / "used", label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="needs the preprocessor"):
        save_pretrained(classifier, tmp_path / "hf", format="hf", label_names=["a", "b", "c"])
    assert classifier.label_names == ["neg", "neu", "pos"]
