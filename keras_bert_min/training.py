"""Pretraining losses and metrics, and the split of feature dicts into what `model.fit` takes.

The MLM loss is Google's: cross-entropy at the masked positions, weighted by `masked_lm_weights`
and divided by the sum of the weights (so padding predictions neither count nor dilute), which
Keras spells `reduction="mean_with_sample_weight"`. A batch whose weights are all zero gives a
loss of 0, not NaN (Keras divides with `divide_no_nan`).
"""

import keras

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
