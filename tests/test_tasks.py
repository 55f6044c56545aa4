"""Fine-tuning models, their losses and metrics, and span decoding (keras_bert_min.tasks).

References are independent of the code under test: the shared checks of tests/helpers.py with
weight counts by formula, NumPy cross-entropies, a brute-force span search written from the
rules, hand-written ids and spans. Learning tests train tiny BERTs from scratch on generated
sentences whose rule can be stated in one line.
"""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_bert_min.models import bert_encoder
from keras_bert_min.task_metrics import TokenAccuracy
from keras_bert_min.tasks import (BertClassifier, answer_positions, bert_classifier,
                                  bert_multiple_choice, bert_span_predictor,
                                  bert_token_classifier, decode_span)
from keras_bert_min.text.choices import choice_inputs
from keras_bert_min.text.labelled import classifier_dataset
from tests import helpers, reference_bert
from tests.fixtures import (DIGITS, FILLER, MARK, NEGATIVE, POSITIVE, TASK_TINY, TASK_VOCAB,
                            TINY)

HEADS = {
    "classifier": lambda encoder: bert_classifier(encoder, 3),
    "token_classifier": lambda encoder: bert_token_classifier(encoder, 4),
    "span_predictor": bert_span_predictor,
}


def padded_inputs(batch=3, seq=7, seed=0):
    """Rows `[CLS] A [SEP] B [SEP]` then padding: lengths seq, seq - 2 and 4."""
    rng = np.random.default_rng(seed)
    lengths = np.array([seq, seq - 2, 4][:batch])
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype("int32")
    type_ids = ((np.arange(seq)[None, :] >= 2) * mask).astype("int32")
    ids = rng.integers(5, len(TASK_VOCAB), (batch, seq)) * mask
    return {"input_word_ids": ids.astype("int32"),
            "input_mask": mask, "input_type_ids": type_ids}


def log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def cross_entropy(logits, labels):
    return -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]


# --- the shared checks ----------------------------------------------------------------------
# On TINY (two layers of width 16). Each task adds one dense layer to the encoder: H * C + C
# parameters in 2 variables, built float32 so the logits are float32 under any policy. The
# token classifier and the span predictor read the sequence output, never the pooler, so a
# fit step leaves the pooler as it was.

H = TINY.hidden_size
ENCODER_WEIGHTS = reference_bert.variable_count(TINY)
ENCODER_PARAMS = reference_bert.parameter_count(TINY)
POOLER = ("pooler/kernel", "pooler/bias")

SHARED_CHECKS = {
    "classifier": dict(
        make_model=lambda: bert_classifier(TINY, 3),
        expected_output_shape={"logits": (3, 3)},
        expected_num_weights=ENCODER_WEIGHTS + 2, expected_num_params=ENCODER_PARAMS + H * 3 + 3,
        float32_sublayers=("logits",), targets=np.array([0, 1, 2])),
    "token_classifier": dict(
        make_model=lambda: bert_token_classifier(TINY, 4),
        expected_output_shape={"logits": (3, 7, 4)},
        expected_num_weights=ENCODER_WEIGHTS + 2, expected_num_params=ENCODER_PARAMS + H * 4 + 4,
        float32_sublayers=("classifier",), targets=np.ones((3, 7), "int32"), unchanged=POOLER),
    "span_predictor": dict(
        make_model=lambda: bert_span_predictor(TINY),
        expected_output_shape={"start_logits": (3, 7), "end_logits": (3, 7)},
        expected_num_weights=ENCODER_WEIGHTS + 2, expected_num_params=ENCODER_PARAMS + H * 2 + 2,
        float32_sublayers=("span_logits",),
        targets={"start_logits": np.array([2, 3, 2]), "end_logits": np.array([4, 3, 3])},
        unchanged=POOLER),
}


@pytest.mark.parametrize("head", SHARED_CHECKS)
def test_task_passes_the_shared_checks(head, tmp_path):
    # The fit step trains with the task's own default loss (compile(loss="auto")).
    helpers.run_model_test(args=(padded_inputs(),), directory=tmp_path, float32_outputs=True,
                           loss="auto", **SHARED_CHECKS[head])


# --- the heads ----------------------------------------------------------------------------------

@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_outputs_names_shapes_and_float32(head):
    model = HEADS[head](bert_encoder(TASK_TINY))
    for seq in (7, 12):  # any sequence length
        outputs = model(padded_inputs(seq=seq))
        expected = {"classifier": {"logits": (3, 3)},
                    "token_classifier": {"logits": (3, seq, 4)},
                    "span_predictor": {"start_logits": (3, seq), "end_logits": (3, seq)}}[head]
        assert {name: tuple(value.shape) for name, value in outputs.items()} == expected
        assert all(value.dtype == "float32" for value in outputs.values())
    assert model.input["input_word_ids"].shape == (None, None)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_under_mixed_bfloat16(head, mixed_bfloat16):
    model = HEADS[head](bert_encoder(TASK_TINY))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = padded_inputs()
    assert model.encoder.compute_dtype == "bfloat16"
    assert all(value.dtype == "float32" for value in model(x).values())
    assert all(w.dtype == "float32" for w in model.weights)
    y = {"classifier": np.array([0, 1, 2]), "token_classifier": np.ones((3, 7), "int32"),
         "span_predictor": {"start_logits": np.array([2, 3, 2]),
                            "end_logits": np.array([4, 3, 3])}}[head]
    assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"])


@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_share_the_encoder_weights(head):
    encoder = bert_encoder(TASK_TINY)
    model = HEADS[head](encoder)
    assert model.encoder is encoder
    model_weights = {id(w) for w in model.weights}
    assert all(id(w) in model_weights for w in encoder.weights)
    # Training the head trains the very encoder the caller holds.
    table = encoder.embedding.word_embeddings
    before = ops.convert_to_numpy(table).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    y = {"classifier": np.array([0, 1, 2]), "token_classifier": np.ones((3, 7), "int32"),
         "span_predictor": {"start_logits": np.array([2, 3, 2]),
                            "end_logits": np.array([4, 3, 3])}}[head]
    model.fit(padded_inputs(), y, epochs=1, verbose=0)
    assert not np.allclose(ops.convert_to_numpy(table), before)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_config_and_keras_file_round_trip(head, tmp_path):
    model = HEADS[head](bert_encoder(TASK_TINY.replace(hidden_dropout_prob=0.1)))
    model.compile()
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.bert_config == model.bert_config

    x = padded_inputs()
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    assert len(reloaded.weights) == len(model.weights)
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(reloaded.predict(x, verbose=0)[name], value)
    # Reloaded compiled, with the head's own loss.
    assert type(reloaded.loss) is type(model.loss)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="needs a BertEncoder"):
        BertClassifier(keras.Sequential([keras.layers.Dense(2)]), 2)
    with pytest.raises(ValueError, match="num_classes must be an integer of at least 1, got 0"):
        bert_classifier(TASK_TINY, 0)
    with pytest.raises(ValueError, match="num_classes must be an integer of at least 1"):
        bert_token_classifier(TASK_TINY, 2.5)


# --- losses against NumPy -------------------------------------------------------------------------

def test_classifier_loss_and_accuracy_match_numpy():
    model = bert_classifier(TASK_TINY, 3)
    model.compile()
    x, labels = padded_inputs(), np.array([2, 0, 1])
    logits = model.predict(x, verbose=0)["logits"]
    result = model.evaluate(x, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], cross_entropy(logits, labels).mean(), rtol=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))


def test_regression_head_uses_mean_squared_error():
    model = bert_classifier(TASK_TINY, 1)
    model.compile()
    x, targets = padded_inputs(), np.array([0.5, -1.0, 2.0], "float32")
    predictions = model.predict(x, verbose=0)["logits"]
    assert predictions.shape == (3, 1)
    loss = model.evaluate(x, targets, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, np.mean((predictions[:, 0] - targets) ** 2), rtol=1e-5)


@pytest.mark.parametrize("ignore_label", [-100, -1])
def test_token_loss_skips_padding_and_the_ignore_label(ignore_label):
    model = bert_token_classifier(TASK_TINY, 4, ignore_label=ignore_label)
    model.compile()
    x = padded_inputs()
    labels = np.random.default_rng(1).integers(0, 4, (3, 7))
    labels[:, 0] = ignore_label    # [CLS]
    labels[0, 3] = ignore_label    # e.g. a word's second piece
    # Padding keeps real-looking labels: only input_mask says they do not count.
    logits = model.predict(x, verbose=0)["logits"]
    scored = (x["input_mask"] == 1) & (labels != ignore_label)
    assert scored.sum() == 7 + 5 + 4 - 4  # lengths 7, 5, 4; three [CLS] and one piece
    safe_labels = np.where(labels == ignore_label, 0, labels)
    expected_loss = cross_entropy(logits, safe_labels)[scored].mean()
    expected_accuracy = (logits.argmax(-1) == labels)[scored].mean()

    result = model.evaluate(x, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], expected_accuracy, rtol=1e-6)


def test_token_accuracy_by_hand():
    metric = TokenAccuracy(ignore_label=-1)
    logits = np.array([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]], "float32")  # predicts 1, 0, 1
    metric.update_state(np.array([[1, 1, -1]]), logits)  # right, wrong, ignored
    assert float(metric.result()) == 0.5


def test_span_loss_is_the_mean_of_start_and_end_cross_entropies():
    model = bert_span_predictor(TASK_TINY)
    model.compile()
    x = padded_inputs()
    starts, ends = np.array([3, 2, 1]), np.array([5, 4, 3])
    outputs = model.predict(x, verbose=0)
    expected = 0.5 * (cross_entropy(outputs["start_logits"], starts).mean()
                      + cross_entropy(outputs["end_logits"], ends).mean())
    result = model.evaluate(x, {"start_logits": starts, "end_logits": ends}, verbose=0,
                            return_dict=True)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


# --- learning stated rules -------------------------------------------------------------------------

def sentiment_sentences(count, seed):
    """Filler words with one sentiment word somewhere; label 1 iff it is a positive word."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        words = list(rng.choice(FILLER, rng.integers(3, 7)))
        positive = bool(rng.integers(2))
        words.insert(rng.integers(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(int(positive))
    return texts, labels


def test_classifier_learns_sentiment_words(task_preprocessor):
    keras.utils.set_random_seed(0)
    train = classifier_dataset(*sentiment_sentences(256, seed=1), task_preprocessor, 32,
                               shuffle_seed=0, drop_remainder=True)
    dev_texts, dev_labels = sentiment_sentences(100, seed=2)
    dev = classifier_dataset(dev_texts, dev_labels, task_preprocessor, 50)
    classifier = bert_classifier(TASK_TINY, 2)
    classifier.compile(optimizer=keras.optimizers.Adam(2e-3))
    classifier.fit(train, epochs=6, verbose=0)
    assert classifier.evaluate(dev, verbose=0, return_dict=True)["accuracy"] >= 0.9


def test_regression_reduces_the_error(task_preprocessor):
    """Target: number of positive words minus number of negative words."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    texts, targets = [], []
    for _ in range(192):
        words = list(rng.choice(FILLER + POSITIVE + NEGATIVE, rng.integers(3, 9)))
        texts.append(" ".join(words))
        targets.append(float(sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)))
    data = classifier_dataset(texts, np.array(targets, "float32"), task_preprocessor, 32)
    regressor = bert_classifier(TASK_TINY, 1)
    regressor.compile(optimizer=keras.optimizers.Adam(2e-3))
    before = regressor.evaluate(data, verbose=0, return_dict=True)["loss"]
    regressor.fit(data, epochs=5, verbose=0)
    after = regressor.evaluate(data, verbose=0, return_dict=True)["loss"]
    assert after < 0.5 * before


def digit_tagging(count, preprocessor, seed, ignore_label=-100):
    """Words and digits; tag 1 on every digit token, 0 on words, ignore [CLS] and [SEP]."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(FILLER + DIGITS, rng.integers(3, 12))) for _ in range(count)]
    x = {k: v.numpy() for k, v in preprocessor(texts).items()}
    digit_ids = [TASK_VOCAB.index(d) for d in DIGITS]
    labels = np.isin(x["input_word_ids"], digit_ids).astype("int32")
    special = np.isin(x["input_word_ids"], [TASK_VOCAB.index("[CLS]"), TASK_VOCAB.index("[SEP]")])
    labels[special] = ignore_label
    return x, labels


def test_token_classifier_learns_to_tag_digits(task_preprocessor):
    keras.utils.set_random_seed(0)
    x, labels = digit_tagging(256, task_preprocessor, seed=4)
    dev_x, dev_labels = digit_tagging(64, task_preprocessor, seed=5)
    tagger = bert_token_classifier(TASK_TINY, 2)
    tagger.compile(optimizer=keras.optimizers.Adam(2e-3))
    tagger.fit(x, labels, batch_size=32, epochs=3, verbose=0)
    assert tagger.evaluate(dev_x, dev_labels, verbose=0, return_dict=True)["accuracy"] >= 0.95


def marked_word_pairs(count, preprocessor, seed):
    """Question "where is the zebra ?" and a context with one "zebra"; answer: that token."""
    rng = np.random.default_rng(seed)
    contexts = []
    for _ in range(count):
        words = list(rng.choice(FILLER + DIGITS, rng.integers(2, 8)))
        words.insert(rng.integers(len(words) + 1), MARK)
        contexts.append(" ".join(words))
    x = {k: v.numpy() for k, v in preprocessor([["where is the zebra ?"] * count, contexts]).items()}
    # The mark also appears in the question (segment A); the answer is the one in the context.
    answer = (x["input_word_ids"] == TASK_VOCAB.index(MARK)) & (x["input_type_ids"] == 1)
    assert (answer.sum(axis=1) == 1).all()
    positions = answer.argmax(axis=1)
    return x, positions


def test_span_predictor_finds_the_marked_word(task_preprocessor):
    keras.utils.set_random_seed(0)
    x, positions = marked_word_pairs(256, task_preprocessor, seed=6)
    reader = bert_span_predictor(TASK_TINY)
    reader.compile(optimizer=keras.optimizers.Adam(2e-3))
    reader.fit(x, {"start_logits": positions, "end_logits": positions}, batch_size=32,
               epochs=3, verbose=0)
    dev_x, dev_positions = marked_word_pairs(64, task_preprocessor, seed=7)
    outputs = reader.predict(dev_x, verbose=0)
    starts, ends = decode_span(outputs["start_logits"], outputs["end_logits"],
                               dev_x["input_type_ids"], dev_x["input_mask"])
    assert np.mean((starts == dev_positions) & (ends == dev_positions)) >= 0.9


# --- span decoding ----------------------------------------------------------------------------------

def reference_best_span(start, end, type_ids, mask, max_answer_length):
    """Brute force over all spans, from the rules: both ends on second-segment tokens other
    than its last ([SEP]), start <= end, at most max_answer_length tokens. Returns the best
    score and the set of valid spans (None if there are none)."""
    context = [i for i in range(len(start)) if type_ids[i] == 1 and mask[i] == 1]
    allowed = set(context[:-1])
    spans = {(i, j) for i in allowed for j in allowed if i <= j < i + max_answer_length}
    if not spans:
        return None, spans
    return max(float(start[i]) + float(end[j]) for i, j in spans), spans


def test_decode_span_by_hand():
    #            [CLS]  q    q  [SEP]  c    c    c  [SEP] pad
    type_ids = [[0,    0,   0,   0,   1,   1,   1,   1,   0]]
    mask = [[1,        1,   1,   1,   1,   1,   1,   1,   0]]
    start = [[0.0,     9.0, 0.0, 0.0, 1.0, 3.0, 2.0, 8.0, 10.0]]
    end = [[0.0,       0.0, 0.0, 0.0, 5.5, 1.0, 4.0, 9.0, 10.0]]
    # Valid spans within 2 tokens: (4,4) 6.5, (4,5) 2, (5,5) 4, (5,6) 7, (6,6) 6.
    starts, ends = decode_span(start, end, type_ids, mask, max_answer_length=2)
    assert (starts.tolist(), ends.tolist()) == ([5], [6])
    # One token at most: (4,4) wins with 6.5.
    starts, ends = decode_span(start, end, type_ids, mask, max_answer_length=1)
    assert (starts.tolist(), ends.tolist()) == ([4], [4])
    # A single sentence has no second segment: no span.
    starts, ends = decode_span(start, end, [[0] * 9], mask)
    assert (starts.tolist(), ends.tolist()) == ([-1], [-1])


@st.composite
def span_problems(draw):
    batch = draw(st.integers(1, 3))
    seq = draw(st.integers(1, 10))
    logits = st.lists(st.floats(-50, 50, width=32), min_size=batch * seq, max_size=batch * seq)
    bits = st.lists(st.integers(0, 1), min_size=batch * seq, max_size=batch * seq)
    shape = (batch, seq)
    return (np.array(draw(logits), "float32").reshape(shape),
            np.array(draw(logits), "float32").reshape(shape),
            np.array(draw(bits), "int32").reshape(shape),
            np.array(draw(bits), "int32").reshape(shape),
            draw(st.integers(1, 12)))


@settings(max_examples=300, deadline=None)
@given(span_problems())
def test_decode_span_returns_the_best_valid_span_or_none(problem):
    start, end, type_ids, mask, max_answer_length = problem
    starts, ends = decode_span(start, end, type_ids, mask, max_answer_length)
    for b in range(len(start)):
        best, spans = reference_best_span(start[b], end[b], type_ids[b], mask[b],
                                          max_answer_length)
        span = (int(starts[b]), int(ends[b]))
        if best is None:
            assert span == (-1, -1)
        else:
            assert span in spans
            assert float(start[b, span[0]]) + float(end[b, span[1]]) == best


def test_answer_positions_exclude_question_sep_and_padding():
    type_ids = np.array([[0, 0, 0, 1, 1, 1, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 1, 0, 0]])
    assert answer_positions(type_ids, mask).astype(int).tolist() == [[0, 0, 0, 1, 1, 0, 0, 0]]


def test_decode_span_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_answer_length must be an integer of at least 1, got 0"):
        decode_span([[0.0]], [[0.0]], [[1]], [[1]], max_answer_length=0)
    with pytest.raises(ValueError, match=r"got shapes \(1, 2\) and \(1, 3\)"):
        decode_span([[0.0, 1.0]], [[0.0, 1.0, 2.0]], [[1, 1]], [[1, 1]])


# --- multiple choice ------------------------------------------------------------------------------

def choice_batch(batch=2, choices=3, seq=7, seed=0):
    """[B, K, S] inputs: each example's K rows as padded_inputs makes them."""
    rows = [padded_inputs(batch=3, seq=seq, seed=seed + i) for i in range(batch)]
    return {name: np.stack([row[name][:choices] for row in rows]) for name in rows[0]}


def test_multiple_choice_passes_the_shared_checks(tmp_path):
    helpers.run_model_test(
        make_model=lambda: bert_multiple_choice(TINY), args=(choice_batch(),),
        directory=tmp_path, float32_outputs=True, loss="auto",
        expected_output_shape={"logits": (2, 3)},
        expected_num_weights=ENCODER_WEIGHTS + 2, expected_num_params=ENCODER_PARAMS + H + 1,
        float32_sublayers=("choice_score", "logits"), targets=np.array([0, 2]),
        # One bias shifts every choice's score alike, and a softmax ignores shifts: it gets
        # no gradient (transformers' BertForMultipleChoice has the same bias).
        unchanged=("choice_score/bias",))


def test_multiple_choice_scores_each_pair_alone():
    """Each logit is dense(pooled output of that one (context, choice) pair): the encoder run
    on every pair by itself, and the head's kernel applied by hand."""
    model = bert_multiple_choice(TASK_TINY)
    x = choice_batch(batch=2, choices=3)
    logits = model.predict(x, verbose=0)["logits"]
    kernel, bias = (np.asarray(w) for w in model.get_layer("choice_score").weights)
    for b in range(2):
        for k in range(3):
            pair = {name: value[b, k][None] for name, value in x.items()}
            pooled = np.asarray(model.encoder(pair)["pooled_output"])
            np.testing.assert_allclose(logits[b, k], (pooled @ kernel + bias)[0, 0], rtol=1e-5,
                                       atol=1e-6)
    # Any number of choices and tokens.
    assert model(choice_batch(batch=1, choices=2, seq=5))["logits"].shape == (1, 2)


def test_multiple_choice_loss_and_accuracy_match_numpy():
    model = bert_multiple_choice(TASK_TINY)
    model.compile()
    x, labels = choice_batch(), np.array([2, 0])
    logits = model.predict(x, verbose=0)["logits"]
    result = model.evaluate(x, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], cross_entropy(logits, labels).mean(), rtol=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))


def test_multiple_choice_learns_to_pick_the_positive_word(task_preprocessor):
    """Choose, among K words, the one positive word: the rule reads each choice."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)

    def examples(count):
        contexts, choices, labels = [], [], []
        for _ in range(count):
            options = list(rng.choice(NEGATIVE + FILLER, 2, replace=False))
            label = int(rng.integers(3))
            options.insert(label, str(rng.choice(POSITIVE)))
            contexts.append(" ".join(rng.choice(FILLER, 3)))
            choices.append(options)
            labels.append(label)
        return choice_inputs(contexts, choices, task_preprocessor), np.array(labels)

    train_x, train_y = examples(192)
    dev_x, dev_y = examples(60)
    model = bert_multiple_choice(TASK_TINY)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train_x, train_y, batch_size=32, epochs=6, verbose=0)
    assert model.evaluate(dev_x, dev_y, verbose=0, return_dict=True)["accuracy"] >= 0.9
