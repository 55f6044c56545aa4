"""Checkpoint files written the way Google's and Hugging Face's own code writes them, for the
loaders to be checked against: Google's variable names and shapes (from `modeling.py`), the
renames between Google's and Hugging Face's names, and a TF1 writer as `run_pretraining.py`
left its checkpoints. Independent of keras_bert_min's name maps (`weights.py`, `hf_weights.py`).
"""

import os

import numpy as np
import tensorflow as tf

# The same sublayers in Google's and Hugging Face's spelling, inside encoder layer N.
DENSE_NAMES = [("attention/self/query", "attention.self.query"),
               ("attention/self/key", "attention.self.key"),
               ("attention/self/value", "attention.self.value"),
               ("attention/output/dense", "attention.output.dense"),
               ("intermediate/dense", "intermediate.dense"),
               ("output/dense", "output.dense")]
LAYER_NORM_NAMES = [("attention/output/LayerNorm", "attention.output.LayerNorm"),
                    ("output/LayerNorm", "output.LayerNorm")]


def google_shapes(config, heads=True):
    """Google's variable names and shapes for a config, written out from `modeling.py`."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "bert/embeddings/word_embeddings": (config.vocab_size, h),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
    }
    for layer in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{layer}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"], shapes[p + name + "/bias"] = (h, h), (h,)
        shapes[p + "intermediate/dense/kernel"] = (h, i)
        shapes[p + "intermediate/dense/bias"] = (i,)
        shapes[p + "output/dense/kernel"] = (i, h)
        shapes[p + "output/dense/bias"] = (h,)
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + name + "/gamma"], shapes[p + name + "/beta"] = (h,), (h,)
    if heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": (h, h),
            "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,),
            "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/output_bias": (config.vocab_size,),
            "cls/seq_relationship/output_weights": (2, h),
            "cls/seq_relationship/output_bias": (2,),
        })
    return shapes


def random_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}


def google_from_hf(tensors, num_layers):
    """Hugging Face BertModel tensors -> Google names (Linear weights are [out, in])."""
    t = tensors
    params = {
        "bert/embeddings/word_embeddings": t["embeddings.word_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": t["embeddings.token_type_embeddings.weight"],
        "bert/embeddings/position_embeddings": t["embeddings.position_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": t["embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": t["embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": t["pooler.dense.weight"].T,
        "bert/pooler/dense/bias": t["pooler.dense.bias"],
    }
    for layer in range(num_layers):
        g, hf = f"bert/encoder/layer_{layer}/", f"encoder.layer.{layer}."
        for google_name, hf_name in DENSE_NAMES:
            params[g + google_name + "/kernel"] = t[hf + hf_name + ".weight"].T
            params[g + google_name + "/bias"] = t[hf + hf_name + ".bias"]
        for google_name, hf_name in LAYER_NORM_NAMES:
            params[g + google_name + "/gamma"] = t[hf + hf_name + ".weight"]
            params[g + google_name + "/beta"] = t[hf + hf_name + ".bias"]
    return params


def hf_from_google(params, num_layers, old_layer_norm_names=False):
    """Google params -> a Hugging Face BertForPreTraining file's tensors (`bert.` prefix, heads)."""
    gamma, beta = ("gamma", "beta") if old_layer_norm_names else ("weight", "bias")
    p = params
    t = {
        "bert.embeddings.word_embeddings.weight": p["bert/embeddings/word_embeddings"],
        "bert.embeddings.token_type_embeddings.weight": p["bert/embeddings/token_type_embeddings"],
        "bert.embeddings.position_embeddings.weight": p["bert/embeddings/position_embeddings"],
        f"bert.embeddings.LayerNorm.{gamma}": p["bert/embeddings/LayerNorm/gamma"],
        f"bert.embeddings.LayerNorm.{beta}": p["bert/embeddings/LayerNorm/beta"],
        "bert.embeddings.position_ids":
            np.arange(len(p["bert/embeddings/position_embeddings"]))[None],
        "bert.pooler.dense.weight": p["bert/pooler/dense/kernel"].T,
        "bert.pooler.dense.bias": p["bert/pooler/dense/bias"],
        "cls.predictions.transform.dense.weight": p["cls/predictions/transform/dense/kernel"].T,
        "cls.predictions.transform.dense.bias": p["cls/predictions/transform/dense/bias"],
        f"cls.predictions.transform.LayerNorm.{gamma}":
            p["cls/predictions/transform/LayerNorm/gamma"],
        f"cls.predictions.transform.LayerNorm.{beta}":
            p["cls/predictions/transform/LayerNorm/beta"],
        "cls.predictions.bias": p["cls/predictions/output_bias"],
        "cls.predictions.decoder.bias": p["cls/predictions/output_bias"],
        "cls.predictions.decoder.weight": p["bert/embeddings/word_embeddings"],
        "cls.seq_relationship.weight": p["cls/seq_relationship/output_weights"],
        "cls.seq_relationship.bias": p["cls/seq_relationship/output_bias"],
    }
    for layer in range(num_layers):
        g, hf = f"bert/encoder/layer_{layer}/", f"bert.encoder.layer.{layer}."
        for google_name, hf_name in DENSE_NAMES:
            t[hf + hf_name + ".weight"] = p[g + google_name + "/kernel"].T
            t[hf + hf_name + ".bias"] = p[g + google_name + "/bias"]
        for google_name, hf_name in LAYER_NORM_NAMES:
            t[f"{hf}{hf_name}.{gamma}"] = p[g + google_name + "/gamma"]
            t[f"{hf}{hf_name}.{beta}"] = p[g + google_name + "/beta"]
    return {name: np.ascontiguousarray(value) for name, value in t.items()}


def write_tf1_checkpoint(prefix, params, training_state=True):
    """Writes params as Google's TF1 code did: variables by name in a graph, saved by a Saver,
    with an Adam `adam_m`/`adam_v` slot pair per variable and `global_step`."""
    with tf.Graph().as_default():
        for name, value in params.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            if training_state:
                tf.compat.v1.get_variable(name + "/adam_m", initializer=tf.zeros_like(value))
                tf.compat.v1.get_variable(name + "/adam_v", initializer=tf.ones_like(value))
        if training_state:
            tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.fspath(prefix))
