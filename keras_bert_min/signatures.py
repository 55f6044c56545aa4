"""The serving signatures of each model, as concrete functions for `export.export_saved_model`.

    serving_default   the model's own inputs (ids) -> its outputs                  every model
    serve_text        text [B] -> the outputs, and input_word_ids           encoder, task models
    serve_text_pair   text_a, text_b [B] -> the same                          but multiple choice
    serve_question    question, context [B] -> the best answer: text, byte offsets, score
                                                                             span predictor
    serve_choices     context [B], choices [B, K] -> the chosen index and probabilities
                                                                            multiple choice

Task outputs added to the model's own (all computed in the graph):

    classifier        probabilities (softmax), label (argmax, int32), label_name (with names)
    tagger            serve_text also returns tag_ids (int32 [B, L]), tags (tf.string, with
                      names), and start_offsets / end_offsets (int64 [B, L]): each word piece's
                      [start, end) bytes in the input text, -1 on [CLS], [SEP] and padding, so
                      a client maps the tags onto its own string
    span predictor    serve_question: answer (tf.string), answer_start / answer_end (int64 byte
                      offsets into context, -1 for no answer), score (start + end logit),
                      null_score ([CLS]'s), over the spans `tasks.decode_span` allows; a
                      context longer than one window is cut (the Python reader's doc stride,
                      `text.squad`, reads long contexts whole)
    multiple choice   logits [B, K], probabilities, choice (int32 [B])

The text signatures pad each request to its longest example (`text_padding="longest"`) or to
seq_length ("max_length"); see `export.py`.
"""

import tensorflow as tf

from keras_bert_min.tasks import BertMultipleChoice, BertSpanPredictor, BertTokenClassifier

SERVING_DEFAULT = "serving_default"
SERVE_TEXT = "serve_text"
SERVE_TEXT_PAIR = "serve_text_pair"
SERVE_QUESTION = "serve_question"
SERVE_CHOICES = "serve_choices"


def is_classifier(model):
    """Whether the export adds `probabilities`, `label` (and `label_name`) to the outputs.

    Args:
        model: a Keras model with dict outputs.

    Returns:
        True if it has an output `logits` of shape [B, C] with C > 1 (C = 1 is a regressor),
        and is not a multiple-choice model (whose logits are over its choices).

    Example:
    >>> is_classifier(bert_classifier("tiny", num_classes=3)), is_classifier(bert_encoder("tiny"))
    (True, False)
    """
    logits = model.output.get("logits")
    return (logits is not None and len(logits.shape) == 2 and (logits.shape[-1] or 0) > 1
            and not isinstance(model, BertMultipleChoice))


def signature_functions(model, preprocessor, input_specs, label_names, text_padding,
                        max_answer_length=30, null_score_threshold=None, max_query_length=64):
    """Signature name -> concrete function, as listed in the module docstring.

    Args:
        model: the Keras model.
        preprocessor: a `BertPreprocessor`, or None for `serving_default` only.
        input_specs: the model's inputs as TensorSpecs.
        label_names: class (or tag) names in id order, or None.
        text_padding: "longest" or "max_length".
        max_answer_length: a span predictor's longest answer, in word pieces.
        null_score_threshold: a span predictor answers nothing (SQuAD 2.0) where the null
            score beats the best span's by more than this; None always answers.
        max_query_length: a span predictor's questions are cut to this many pieces, as in
            training (Google's run_squad.py).
    """
    def model_outputs(inputs):
        outputs = model(inputs, training=False)
        outputs = {name: _as_float32(tensor) for name, tensor in outputs.items()}
        if is_classifier(model):
            outputs["probabilities"] = tf.nn.softmax(outputs["logits"], axis=-1)
            outputs["label"] = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
            if label_names is not None:
                outputs["label_name"] = tf.gather(tf.constant(label_names), outputs["label"])
        if isinstance(model, BertMultipleChoice):
            outputs["probabilities"] = tf.nn.softmax(outputs["logits"], axis=-1)
            outputs["choice"] = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
        return outputs

    def text_outputs(segments):
        inputs = preprocessor(segments, padding=text_padding)
        return {**model_outputs(inputs), "input_word_ids": inputs["input_word_ids"]}

    def serve_text(text):
        text = _one_text_per_example(text, "text")
        if not isinstance(model, BertTokenClassifier):
            return text_outputs(text)
        ids, starts, ends = preprocessor.tokenize_with_offsets(text)
        inputs = preprocessor.pack([ids], padding=text_padding, offsets=[(starts, ends)])
        outputs = model_outputs({name: inputs[name] for name in input_specs})
        outputs["tag_ids"] = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
        if label_names is not None:
            outputs["tags"] = tf.gather(tf.constant(label_names), outputs["tag_ids"])
        return {**outputs, "input_word_ids": inputs["input_word_ids"],
                "start_offsets": inputs["start_offsets"], "end_offsets": inputs["end_offsets"]}

    def serve_text_pair(text_a, text_b):
        text_a, text_b = _same_length(_one_text_per_example(text_a, "text_a"),
                                      _one_text_per_example(text_b, "text_b"), "text_a",
                                      "text_b")
        return text_outputs([text_a, text_b])

    def serve_question(question, context):
        question, context = _same_length(_one_text_per_example(question, "question"),
                                         _one_text_per_example(context, "context"), "question",
                                         "context")
        q_ids = preprocessor.tokenize(question)[:, :max_query_length]
        c_ids, c_starts, c_ends = preprocessor.tokenize_with_offsets(context)
        inputs = preprocessor.pack([q_ids, c_ids], padding=text_padding,
                                   offsets=[(tf.zeros_like(q_ids, tf.int64) - 1,
                                             tf.zeros_like(q_ids, tf.int64) - 1),
                                            (c_starts, c_ends)])
        outputs = model_outputs({name: inputs[name] for name in input_specs})
        return {**outputs, **_best_answer(outputs, inputs, context, max_answer_length,
                                          null_score_threshold),
                "input_word_ids": inputs["input_word_ids"]}

    def serve_choices(context, choices):
        context = _one_text_per_example(context, "context")
        with tf.control_dependencies([
                tf.debugging.assert_rank(choices, 2, message="choices must be a [batch, K] "
                                         "list of lists of strings, K >= 2 per context"),
                tf.debugging.assert_equal(tf.shape(choices)[0], tf.size(context), message=(
                    "choices must hold one list of choices per context")),
                tf.debugging.assert_greater_equal(tf.shape(choices)[1], 2, message=(
                    "each context needs two or more choices"))]):
            shape = tf.shape(choices)
        k = shape[1]
        text_a = tf.reshape(tf.repeat(tf.expand_dims(context, 1), k, axis=1), [-1])
        pairs = preprocessor([text_a, tf.reshape(choices, [-1])], padding=text_padding)
        inputs = {name: tf.reshape(pairs[name], tf.concat([shape, [-1]], 0))
                  for name in input_specs}
        return model_outputs(inputs)

    signatures = {SERVING_DEFAULT: _concrete(model_outputs, [input_specs])}
    if preprocessor is None:
        return signatures
    if isinstance(model, BertMultipleChoice):
        signatures[SERVE_CHOICES] = _concrete(serve_choices, [
            _text_spec("context"), tf.TensorSpec([None, None], tf.string, name="choices")])
        return signatures
    signatures[SERVE_TEXT] = _concrete(serve_text, [_text_spec("text")])
    signatures[SERVE_TEXT_PAIR] = _concrete(serve_text_pair,
                                            [_text_spec("text_a"), _text_spec("text_b")])
    if isinstance(model, BertSpanPredictor):
        signatures[SERVE_QUESTION] = _concrete(serve_question,
                                               [_text_spec("question"), _text_spec("context")])
    return signatures


def _best_answer(outputs, inputs, context, max_answer_length, null_score_threshold):
    """The best span of each example, as `tasks.decode_span` picks it, mapped to the bytes of
    `context`."""
    start_logits, end_logits = outputs["start_logits"], outputs["end_logits"]  # [B, L]
    # Where an answer may start or end: the context's pieces ([SEP] and padding have no
    # offsets, the question's were given none).
    allowed = inputs["start_offsets"] >= 0
    length = tf.shape(start_logits)[1]
    positions = tf.range(length)
    span_length = positions[None, :] - positions[:, None]  # [i, j] -> j - i
    valid = ((span_length >= 0) & (span_length < max_answer_length))[None] \
        & allowed[:, :, None] & allowed[:, None, :]  # [B, L, L]
    scores = tf.where(valid, start_logits[:, :, None] + end_logits[:, None, :], -float("inf"))
    best = tf.argmax(tf.reshape(scores, [tf.shape(scores)[0], -1]), axis=1, output_type=tf.int32)
    start, end = best // length, best % length
    score = tf.reduce_max(tf.reshape(scores, [tf.shape(scores)[0], -1]), axis=1)
    null_score = start_logits[:, 0] + end_logits[:, 0]
    found = tf.reduce_any(allowed, axis=1)
    if null_score_threshold is not None:
        found &= ~(null_score - score > null_score_threshold)
    byte_start = tf.where(found, tf.gather(inputs["start_offsets"], start, batch_dims=1), -1)
    byte_end = tf.where(found, tf.gather(inputs["end_offsets"], end, batch_dims=1), -1)
    answer = tf.where(found, tf.strings.substr(context, tf.maximum(byte_start, 0),
                                               tf.maximum(byte_end - byte_start, 0)), "")
    return {"answer": answer, "answer_start": byte_start, "answer_end": byte_end,
            "score": tf.where(found, score, null_score), "null_score": null_score}


# In-graph checks: TF Serving's session feeds the placeholders without the shape checks of a
# Python signature call, and the graph would flatten a [B, N] batch or fail deep inside the
# packing on a pair of unequal lengths.
def _one_text_per_example(text, name):
    with tf.control_dependencies([tf.debugging.assert_rank(
            text, 1, message=f"{name} must be a list of strings (one per example)")]):
        return tf.identity(text)


def _same_length(first, second, first_name, second_name):
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.size(first), tf.size(second),
            message=f"{first_name} and {second_name} must be lists of the same length (one "
                    f"{second_name} for each {first_name})")]):
        return tf.identity(first), tf.identity(second)


def _concrete(function, input_signature):
    # No AutoGraph: nothing here branches on tensor values.
    return tf.function(function, input_signature=input_signature,
                       autograph=False).get_concrete_function()


def _text_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


def _as_float32(tensor):
    return tf.cast(tensor, tf.float32) if tensor.dtype.is_floating else tensor
