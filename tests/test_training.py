import numpy as np
import pytest

from keras_bert_min.training import (pretraining_losses, pretraining_metrics,
                                     split_pretraining_features)


def log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def googles_mlm_loss(logits, label_ids, label_weights):
    """`get_masked_lm_output` of Google's run_pretraining.py, minus its 1e-5 in the denominator."""
    per_example = -np.take_along_axis(log_softmax(logits), label_ids[..., None], -1)[..., 0]
    return (per_example * label_weights).sum() / label_weights.sum()


def test_mlm_loss_is_weighted_mean_over_real_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 11)).astype("float32")
    labels = rng.integers(0, 11, (3, 4))
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], "float32")
    loss = pretraining_losses()["mlm_logits"](labels, logits, sample_weight=weights)
    assert loss.dtype == "float32"
    np.testing.assert_allclose(loss, googles_mlm_loss(logits, labels, weights), rtol=1e-6)
    # Padding predictions change nothing: neither their logits nor their count matter.
    padded_logits = logits.copy()
    padded_logits[0, 2:] += 100.0
    np.testing.assert_allclose(
        pretraining_losses()["mlm_logits"](labels, padded_logits, sample_weight=weights), loss,
        rtol=1e-6)


def test_all_zero_weights_give_zero_loss_not_nan():
    logits = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")
    loss = pretraining_losses()["mlm_logits"](np.zeros((2, 3)), logits, sample_weight=np.zeros((2, 3)))
    assert float(loss) == 0.0


def test_nsp_loss_and_accuracy():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.5]], "float32")
    labels = np.array([[0], [1], [1]])
    loss = pretraining_losses()["nsp_logits"](labels, logits)
    expected = -np.take_along_axis(log_softmax(logits), labels, -1).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    accuracy = pretraining_metrics()["nsp_logits"][0]
    accuracy.update_state(labels, logits)
    np.testing.assert_allclose(accuracy.result(), 2 / 3, rtol=1e-6)


def test_mlm_accuracy_ignores_padding_predictions():
    logits = np.zeros((1, 3, 4), "float32")
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 3] = 5.0
    labels = np.array([[2, 0, 1]])  # first right, second wrong, third wrong but padding
    accuracy = pretraining_metrics()["mlm_logits"][0]
    accuracy.update_state(labels, logits, sample_weight=np.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(accuracy.result(), 0.5)


def test_split_pretraining_features():
    features = {name: np.zeros((2, 3), "int32") for name in (
        "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions", "masked_lm_ids")}
    features["masked_lm_weights"] = np.ones((2, 3), "float32")
    features["next_sentence_labels"] = np.array([[0], [1]], "int32")
    x, y, sample_weight = split_pretraining_features(features)
    assert sorted(x) == ["input_mask", "input_type_ids", "input_word_ids", "masked_lm_positions"]
    assert y["mlm_logits"] is features["masked_lm_ids"]
    assert sample_weight["mlm_logits"] is features["masked_lm_weights"]
    np.testing.assert_array_equal(sample_weight["nsp_logits"], [[1.0], [1.0]])
    del features["masked_lm_weights"]
    with pytest.raises(ValueError, match=r"lack \['masked_lm_weights'\]"):
        split_pretraining_features(features)


def test_learning_rate_warms_up_then_decays_linearly():
    from keras_bert_min.training import WarmupLinearDecay

    schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=100)
    # Google: lr * step / warmup during warmup, then lr * (1 - step / total).
    for step, expected in [(0, 0.0), (5, 5e-4), (9, 9e-4), (10, 9e-4), (55, 4.5e-4),
                           (100, 0.0), (150, 0.0)]:
        np.testing.assert_allclose(float(schedule(step)), expected, atol=1e-9)
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps must be in"):
        WarmupLinearDecay(1e-3, warmup_steps=200, total_steps=100)


def test_weight_decay_skips_layer_norm_and_bias():
    """With a zero gradient Adam's update is zero, so only decoupled weight decay moves a
    variable: kernels and embeddings shrink by lr * decay, LayerNorm and biases stay put."""
    import keras
    from keras_bert_min import BertConfig, bert_pretrainer
    from keras_bert_min.training import create_optimizer

    pretrainer = bert_pretrainer(BertConfig.from_preset("tiny", vocab_size=30))
    optimizer = create_optimizer(0.1, total_steps=10, warmup_steps=0, weight_decay=0.5)
    variables = pretrainer.trainable_variables
    for v in variables:
        v.assign(np.ones(v.shape, "float32"))
    optimizer.apply([keras.ops.zeros(v.shape) for v in variables], variables)
    decayed = {v.path for v in variables if np.allclose(np.asarray(v), 1.0 - 0.1 * 0.5)}
    kept = {v.path for v in variables if np.allclose(np.asarray(v), 1.0)}
    assert decayed | kept == {v.path for v in variables}
    for path in kept:
        assert path.endswith(("gamma", "beta", "bias")), path
    for path in decayed:
        assert path.endswith(("kernel", "embeddings")), path
    assert any("word_embeddings" in p for p in decayed)
    assert any("layer_norm/gamma" in p for p in kept) and any("output_bias" in p for p in kept)


def test_constant_rate_optimizer_and_finetuning_optimizer_are_ours():
    """Without total_steps the rate stays constant, and fine-tuning gets the same optimizer class
    (clipping the all-reduced gradient) as pretraining, scheduled or not."""
    from keras_bert_min.finetuning import finetuning_optimizer
    from keras_bert_min.training import AdamW, create_optimizer

    constant = create_optimizer(3e-5, total_steps=None, warmup_steps=0)
    assert isinstance(constant, AdamW) and float(constant.learning_rate) == pytest.approx(3e-5)
    with pytest.raises(ValueError, match="warmup_steps=10 needs total_steps"):
        create_optimizer(3e-5, total_steps=None, warmup_steps=10)
    for optimizer in (finetuning_optimizer(), finetuning_optimizer(total_steps=100)):
        assert isinstance(optimizer, AdamW) and optimizer.global_clipnorm == 1.0
        assert optimizer.weight_decay == 0.01 and optimizer.epsilon == 1e-6
    assert float(finetuning_optimizer().learning_rate) == pytest.approx(3e-5)
    assert float(finetuning_optimizer(total_steps=100).learning_rate) == 0.0  # warming up


def test_lamb_optimizer_and_unknown_name():
    from keras_bert_min.training import create_optimizer
    import keras

    assert isinstance(create_optimizer(1e-3, 100, 10, optimizer="lamb"), keras.optimizers.Lamb)
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'lamb'"):
        create_optimizer(1e-3, 100, 10, optimizer="sgd")


def test_adamw_is_adam_with_decoupled_weight_decay():
    """Three steps of our AdamW (Adam through TF's fused kernel) against the formula written out
    in NumPy float64: decay kernels by lr * weight_decay, then bias-corrected Adam. One gradient
    arrives as IndexedSlices, as an embedding's does."""
    import keras
    import tensorflow as tf
    from keras_bert_min.training import AdamW

    rng = np.random.default_rng(0)
    shapes, lr, decay, eps = [(5, 3), (3,)], 0.01, 0.1, 1e-6
    start = [rng.normal(size=shape).astype("float32") for shape in shapes]
    variables = [keras.Variable(w, name=name) for w, name in zip(start, ["kernel", "bias"])]
    optimizer = AdamW(learning_rate=lr, weight_decay=decay, epsilon=eps)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    weights = [w.astype(np.float64) for w in start]
    m, v = [np.zeros_like(w) for w in weights], [np.zeros_like(w) for w in weights]
    for step in (1, 2, 3):
        rows = rng.normal(size=(2, 3)).astype("float32")
        dense = np.zeros(shapes[0], "float32")
        dense[[1, 3]] = rows
        bias_gradient = rng.normal(size=shapes[1]).astype("float32")
        optimizer.apply([tf.IndexedSlices(tf.constant(rows), tf.constant([1, 3]),
                                          tf.constant(shapes[0])), tf.constant(bias_gradient)],
                        variables)
        for i, gradient in enumerate([dense, bias_gradient]):
            if i == 0:
                weights[i] -= weights[i] * lr * decay
            m[i] += (gradient - m[i]) * (1 - 0.9)
            v[i] += (np.square(gradient.astype(np.float64)) - v[i]) * (1 - 0.999)
            rate = lr * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            weights[i] -= m[i] * rate / (np.sqrt(v[i]) + eps)
    for variable, expected in zip(variables, weights):
        np.testing.assert_allclose(np.asarray(variable), expected, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations) == 3
    apply = tf.function(lambda: optimizer.apply([tf.constant(dense), tf.constant(bias_gradient)],
                                                variables))
    assert "ResourceApplyAdam" in {op.type for op in apply.get_concrete_function().graph
                                   .get_operations()}
