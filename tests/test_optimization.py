"""The BERT optimizer (keras_bert_min.optimization): Google's schedule written out step by
step, AdamW's update as a NumPy float64 formula, and weight decay by variable name."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_min.config import BertConfig
from keras_bert_min.models import bert_pretrainer
from keras_bert_min.optimization import (AdamW, WarmupLinearDecay, create_optimizer,
                                         finetuning_optimizer)


def test_learning_rate_warms_up_then_decays_linearly():
    schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=100)
    # Google: lr * step / warmup during warmup, then lr * (1 - step / total).
    for step, expected in [(0, 0.0), (5, 5e-4), (9, 9e-4), (10, 9e-4), (55, 4.5e-4),
                           (100, 0.0), (150, 0.0)]:
        np.testing.assert_allclose(float(schedule(step)), expected, atol=1e-9)
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps must be in"):
        WarmupLinearDecay(1e-3, warmup_steps=200, total_steps=100)
    # A negative peak would climb the loss and still finish (a bad-input sweep's finding).
    with pytest.raises(ValueError, match="peak_learning_rate must be a number above 0, got -0.1"):
        WarmupLinearDecay(-0.1, warmup_steps=10, total_steps=100)


def test_weight_decay_skips_layer_norm_and_bias():
    """With a zero gradient Adam's update is zero, so only decoupled weight decay moves a
    variable: kernels and embeddings shrink by lr * decay, LayerNorm and biases stay put."""
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
    assert isinstance(create_optimizer(1e-3, 100, 10, optimizer="lamb"), keras.optimizers.Lamb)
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'lamb'"):
        create_optimizer(1e-3, 100, 10, optimizer="sgd")


def test_adamw_is_adam_with_decoupled_weight_decay():
    """Three steps of our AdamW (Adam through TF's fused kernel) against the formula written out
    in NumPy float64: decay kernels by lr * weight_decay, then bias-corrected Adam. One gradient
    arrives as IndexedSlices, as an embedding's does."""
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
