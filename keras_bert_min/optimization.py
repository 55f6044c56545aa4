"""The BERT optimizer: Google's learning-rate schedule and AdamW / Lamb with its clipping.

    WarmupLinearDecay     linear warmup to the peak, then linear decay to 0 (run_pretraining.py)
    AdamW, Lamb           Keras' optimizers, clipped by the global norm of the summed gradient;
                          AdamW's update through TF's fused Adam kernel
    create_optimizer      the one place a BERT optimizer is built (pretraining and fine-tuning)
    finetuning_optimizer  Google's fine-tuning defaults: 3e-5, 10% warmup

A leaf of the package: the task models' `compile()` defaults use it, the trainer too.
"""

import keras
import tensorflow as tf
from keras.src.optimizers.base_optimizer import clip_by_global_norm

from keras_bert_min._checks import check_int, check_positive

# Google's fine-tuning recipe: peak learning rate in 2e-5..5e-5, warmup over the first 10%.
DEFAULT_LEARNING_RATE = 3e-5
DEFAULT_WARMUP_FRACTION = 0.1


# Variables excluded from weight decay, by name: LayerNorm scales and offsets and every bias,
# as Google's AdamWeightDecayOptimizer excludes "LayerNorm", "layer_norm" and "bias".
NO_WEIGHT_DECAY_NAMES = ("gamma", "beta", "bias")


@keras.saving.register_keras_serializable(package="keras_bert_min")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Google's BERT schedule: linear warmup from 0 to `peak_learning_rate` over `warmup_steps`,
    then `peak * (1 - step / total_steps)` (the polynomial decay of power 1 that Google applies
    from step 0, overridden during warmup), reaching 0 at `total_steps`.

    Example:
    >>> schedule = WarmupLinearDecay(1e-4, warmup_steps=10, total_steps=100)
    >>> round(float(schedule(5)), 9), round(float(schedule(50)), 9)
    (5e-05, 5e-05)
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps):
        # A negative rate would climb the loss and still "finish" (found by a bad-input sweep).
        check_positive("peak_learning_rate", peak_learning_rate)
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}.")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], "
                             f"got {warmup_steps}.")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decayed = self.peak_learning_rate * keras.ops.maximum(0.0, 1.0 - step / self.total_steps)
        if self.warmup_steps == 0:
            return decayed
        warmup = self.peak_learning_rate * step / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


class _ClipSummedGradients:
    """Clips the all-reduced gradient by its global norm, as Google's `run_pretraining.py` does,
    and steps the learning-rate schedule once per update under gradient accumulation.

    Keras' TensorFlow optimizers clip each replica's partial gradient *before* summing them
    across replicas (measured here: under a two-replica MirroredStrategy, global-norm clipping
    made the weights differ from one device's by 1e-2 after four steps), so with several
    replicas the effective clip depends on the replica count. This moves the global-norm clip
    after the all-reduce; without a distribution strategy nothing changes. It relies on the
    Keras optimizer's `_clip_gradients` / `_all_reduce_sum_gradients` hooks, and
    `tests/test_distribute.py` checks mirrored training against one device.
    """

    def _get_current_learning_rate(self):
        # Keras 3.15 evaluates a schedule at its micro-batch counter `_iterations`; with
        # gradient accumulation that runs the schedule N times too fast (a run of S updates
        # would reach the end of its decay after S / N). `iterations` counts updates.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _clip_gradients(self, grads):
        if self.global_clipnorm and self.global_clipnorm > 0:
            return grads  # clipped once summed, in _all_reduce_sum_gradients
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        grads_and_vars = list(super()._all_reduce_sum_gradients(grads_and_vars))
        if not (self.global_clipnorm and self.global_clipnorm > 0):
            return grads_and_vars
        present = [i for i, (g, _) in enumerate(grads_and_vars) if g is not None]
        clipped = clip_by_global_norm([grads_and_vars[i][0] for i in present], self.global_clipnorm)
        for i, gradient in zip(present, clipped):
            grads_and_vars[i] = (gradient, grads_and_vars[i][1])
        return grads_and_vars


@keras.saving.register_keras_serializable(package="keras_bert_min")
class AdamW(_ClipSummedGradients, keras.optimizers.AdamW):
    """Keras AdamW whose global-norm clip applies to the summed gradient of all replicas, and
    whose Adam update is TensorFlow's fused `ResourceApplyAdam` kernel.

    The kernel computes Keras' `Adam.update_step` formula (bias-corrected rate, m and v moving
    averages, `m * rate / (sqrt(v) + epsilon)`) in one pass over each variable instead of about
    ten elementwise ops (benchmarks/bench_optimizer.py: 2.5x faster than Keras' AdamW on
    BERT-small's 29M weights on a 2-core CPU). Weight decay stays Keras' (applied before this).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not isinstance(variable, tf.Variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        # Under a tf.distribute strategy this runs inside `extended.update`, where a mirrored
        # slot's handle is the copy on the device being updated.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype))


@keras.saving.register_keras_serializable(package="keras_bert_min")
class Lamb(_ClipSummedGradients, keras.optimizers.Lamb):
    """Keras Lamb whose global-norm clip applies to the summed gradient of all replicas."""


def create_optimizer(learning_rate, total_steps, warmup_steps, optimizer="adamw",
                     weight_decay=0.01, epsilon=1e-6, clip_norm=1.0,
                     gradient_accumulation_steps=None):
    """The BERT optimizer: Keras AdamW (or Lamb for large batches) with weight decay that skips
    LayerNorm and bias variables, global-norm clipping of the summed gradient and
    `WarmupLinearDecay`.

    Args:
        learning_rate: the peak learning rate (BERT: 1e-4 pretraining, 2e-5..5e-5 fine-tuning).
        total_steps: steps of the whole run; the rate reaches 0 there. None keeps the rate
            constant (when the run length is not known; warmup_steps must then be 0).
        warmup_steps: steps of linear warmup.
        optimizer: "adamw" or "lamb".
        weight_decay, epsilon, clip_norm: Google's 0.01, 1e-6 and 1.0 by default (None: no clip).
        gradient_accumulation_steps: N >= 2 averages the gradients of N batches (Keras'
            accumulation) before each update, clipped and decayed once, so N micro-batches of
            B make the step of one batch of N * B; steps and the schedule count updates.
            None or 1: every batch is a step.
    """
    classes = {"adamw": AdamW, "lamb": Lamb}
    if optimizer not in classes:
        raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {optimizer!r}.")
    if gradient_accumulation_steps is not None:
        check_int("gradient_accumulation_steps", gradient_accumulation_steps, 1)
    if total_steps is None and warmup_steps:
        raise ValueError(f"warmup_steps={warmup_steps} needs total_steps; a constant rate "
                         "(total_steps=None) has no warmup.")
    result = classes[optimizer](
        learning_rate=(learning_rate if total_steps is None
                       else WarmupLinearDecay(learning_rate, warmup_steps, total_steps)),
        weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=epsilon,
        global_clipnorm=clip_norm,
        gradient_accumulation_steps=(gradient_accumulation_steps
                                     if gradient_accumulation_steps != 1 else None))
    result.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY_NAMES))
    return result


def finetuning_optimizer(total_steps=None, learning_rate=DEFAULT_LEARNING_RATE,
                         warmup_fraction=DEFAULT_WARMUP_FRACTION):
    """Google's fine-tuning optimizer: AdamW (decay 0.01 except LayerNorm and bias, clip 1.0).

    Args:
        total_steps: steps of the whole run. Given, the rate warms up linearly over the first
            `warmup_fraction` of them and decays linearly to 0 at the end (`create_optimizer`);
            None gives a constant rate, for when the run length is not known.
        learning_rate: the peak rate; BERT's paper searches 2e-5..5e-5.
        warmup_fraction: share of `total_steps` spent warming up.

    Example:
    >>> optimizer = finetuning_optimizer(total_steps=3 * 265)
    """
    warmup_steps = 0 if total_steps is None else round(warmup_fraction * total_steps)
    return create_optimizer(learning_rate, total_steps, warmup_steps)
