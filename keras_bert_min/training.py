"""Pretraining losses and metrics, and the split of feature dicts into what `model.fit` takes.

The MLM loss is Google's: cross-entropy at the masked positions, weighted by `masked_lm_weights`
and divided by the sum of the weights (so padding predictions neither count nor dilute), which
Keras spells `reduction="mean_with_sample_weight"`. A batch whose weights are all zero gives a
loss of 0, not NaN (Keras divides with `divide_no_nan`).
"""

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from keras.src.optimizers.base_optimizer import clip_by_global_norm

from keras_bert_min.models import ENCODER_INPUTS

PRETRAINING_INPUTS = (*ENCODER_INPUTS, "masked_lm_positions")


def pretraining_losses():
    """Losses for `BertPretrainer.compile`, keyed by output name, computed in float32."""
    return {
        "mlm_logits": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight", name="mlm_loss",
            dtype="float32"),
        "nsp_logits": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, name="nsp_loss", dtype="float32"),
    }


def pretraining_metrics():
    """Metrics for `compile(weighted_metrics=...)`: MLM accuracy weighted by `masked_lm_weights`
    (padding predictions excluded), NSP accuracy (its sample weights are all ones)."""
    return {
        "mlm_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")],
        "nsp_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")],
    }


def compile_pretrainer(pretrainer, optimizer="adam", **compile_kwargs):
    """`pretrainer.compile` with the pretraining losses and metrics."""
    pretrainer.compile(optimizer=optimizer, loss=pretraining_losses(),
                       weighted_metrics=pretraining_metrics(), **compile_kwargs)
    return pretrainer


def split_pretraining_features(features):
    """Maps a flat pretraining feature dict (our names, see DESIGN.md) to `(x, y, sample_weight)`.

    Works on NumPy dicts and inside `tf.data.Dataset.map`. `next_sentence_labels` may be [B] or
    [B, 1]; the NSP sample weight is ones so both outputs have a weight, as Keras requires.
    """
    missing = [k for k in (*PRETRAINING_INPUTS, "masked_lm_ids", "masked_lm_weights",
                           "next_sentence_labels") if k not in features]
    if missing:
        raise ValueError(f"Pretraining features lack {missing}; got keys {sorted(features)}.")
    x = {name: features[name] for name in PRETRAINING_INPUTS}
    nsp_labels = features["next_sentence_labels"]
    y = {"mlm_logits": features["masked_lm_ids"], "nsp_logits": nsp_labels}
    nsp_weight = keras.ops.ones_like(keras.ops.cast(nsp_labels, "float32"))
    sample_weight = {"mlm_logits": features["masked_lm_weights"], "nsp_logits": nsp_weight}
    return x, y, sample_weight


# --- optimizer and learning-rate schedule ---------------------------------------------------

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
    """Clips the all-reduced gradient by its global norm, as Google's `run_pretraining.py` does.

    Keras' TensorFlow optimizers clip each replica's partial gradient *before* summing them
    across replicas (measured here: under a two-replica MirroredStrategy, global-norm clipping
    made the weights differ from one device's by 1e-2 after four steps), so with several
    replicas the effective clip depends on the replica count. This moves the global-norm clip
    after the all-reduce; without a distribution strategy nothing changes. It relies on the
    Keras optimizer's `_clip_gradients` / `_all_reduce_sum_gradients` hooks, and
    `tests/test_distribute.py` checks mirrored training against one device.
    """

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
                     weight_decay=0.01, epsilon=1e-6, clip_norm=1.0):
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
    """
    classes = {"adamw": AdamW, "lamb": Lamb}
    if optimizer not in classes:
        raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {optimizer!r}.")
    if total_steps is None and warmup_steps:
        raise ValueError(f"warmup_steps={warmup_steps} needs total_steps; a constant rate "
                         "(total_steps=None) has no warmup.")
    result = classes[optimizer](
        learning_rate=(learning_rate if total_steps is None
                       else WarmupLinearDecay(learning_rate, warmup_steps, total_steps)),
        weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=epsilon,
        global_clipnorm=clip_norm)
    result.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY_NAMES))
    return result


# --- callbacks and resuming -------------------------------------------------------------------

BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore


def completed_epochs(backup_dir):
    """Epochs a `BackupAndRestore` backup in `backup_dir` has completed (0 without a backup).

    Training runs in epochs of `steps_per_epoch` steps and backs up at each epoch end, so a
    restarted run resumes at step `completed_epochs * steps_per_epoch` exactly; the input
    pipeline skips that many batches so it sees the batches the killed run would have seen.
    """
    path = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["epoch"])


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, plus the state of the dropout layers' random generators.

    Keras backs up the weights and the optimizer (so the step and the learning rate resume
    where they were) but not the `SeedGenerator` states of Dropout layers, which are variables
    outside `model.weights`; a resumed run would then redraw the dropout masks of its first
    steps. Backing them up too makes a resumed run train exactly as an uninterrupted one.
    """

    RNG_FILE = "rng_states.npz"

    def _rng_states(self):
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _save_model(self):
        super()._save_model()
        path = os.path.join(self.backup_dir, self.RNG_FILE)
        with open(path + ".tmp", "wb") as f:
            np.savez(f, **{str(i): np.asarray(v) for i, v in enumerate(self._rng_states())})
        os.replace(path + ".tmp", path)

    def _load_model(self):
        super()._load_model()
        path = os.path.join(self.backup_dir, self.RNG_FILE)
        if os.path.exists(path):
            with np.load(path) as saved:
                for i, variable in enumerate(self._rng_states()):
                    variable.assign(saved[str(i)])


def write_google_config(config, directory):
    """The config beside a Google-layout checkpoint: Google's `bert_config.json` when the format
    can express the activation (`BertConfig.fits_google_format`), else our lossless
    `config.json` (Google's "gelu" is the tanh form, so e.g. an exact-GELU model cannot be
    written as a bert_config.json)."""
    if config.fits_google_format:
        config.to_json_file(os.path.join(directory, "bert_config.json"), format="google")
    else:
        config.to_json_file(os.path.join(directory, "config.json"))


class EncoderCheckpoint(keras.callbacks.Callback):
    """Every `every_epochs` epochs, saves the pretrainer's encoder twice under
    `directory/step-<N>/`: `encoder.keras` (Keras) and `bert_model.ckpt` (Google's TF1 layout,
    with `bert_config.json`), so other BERT tools can read it. Only the chief should get one."""

    def __init__(self, directory, every_epochs=1, steps_per_epoch=1):
        super().__init__()
        self.directory = directory
        self.every_epochs = every_epochs
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs == 0:
            self.save(int((epoch + 1) * self.steps_per_epoch))

    def save(self, step):
        from keras_bert_min.weights import save_google_checkpoint

        encoder = getattr(self.model, "encoder", self.model)
        target = os.path.join(self.directory, f"step-{step}")
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        encoder.save(os.path.join(partial, "encoder.keras"))
        save_google_checkpoint(self.model, os.path.join(partial, "bert_model.ckpt"))
        write_google_config(encoder.bert_config, partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
