"""A NumPy BERT forward pass, independent of keras_bert_min's layers, for the tests to check against.

It transcribes Google's `modeling.py` in float64 over a dict of weights keyed by Google's TF1
checkpoint variable names (`bert/embeddings/word_embeddings`, ...), so the same reference checks
our layers (random weights) and real pretrained checkpoints.
"""

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)

ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def dense(params, prefix, x):
    return x @ params[f"{prefix}/kernel"] + params[f"{prefix}/bias"]


def encoder(params, input_word_ids, input_mask, input_type_ids, num_heads, hidden_act, eps=1e-12):
    """Returns (sequence_output [B,S,H], pooled_output [B,H]) as float64."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    batch, seq = input_word_ids.shape
    e = "bert/embeddings/"
    x = (params[e + "word_embeddings"][input_word_ids]
         + params[e + "token_type_embeddings"][input_type_ids]
         + params[e + "position_embeddings"][None, :seq])
    x = layer_norm(x, params[e + "LayerNorm/gamma"], params[e + "LayerNorm/beta"], eps)
    layer = 0
    while f"bert/encoder/layer_{layer}/attention/self/query/kernel" in params:
        x = encoder_block(params, f"bert/encoder/layer_{layer}/", x, input_mask, num_heads,
                          hidden_act, eps)
        layer += 1
    pooled = np.tanh(dense(params, "bert/pooler/dense", x[:, 0]))
    return x, pooled


def encoder_block(params, prefix, x, input_mask, num_heads, hidden_act, eps=1e-12):
    """One post-LN block of Google's `transformer_model`, weights under `prefix`."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items() if k.startswith(prefix)}
    x = np.asarray(x, np.float64)
    batch, seq, hidden = x.shape
    head = hidden // num_heads
    bias = (1.0 - np.asarray(input_mask, np.float64))[:, None, None, :] * -10000.0

    def heads(t):
        return t.reshape(batch, seq, num_heads, head).transpose(0, 2, 1, 3)

    q = heads(dense(params, prefix + "attention/self/query", x))
    k = heads(dense(params, prefix + "attention/self/key", x))
    v = heads(dense(params, prefix + "attention/self/value", x))
    probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    attention = dense(params, prefix + "attention/output/dense", context)
    x = layer_norm(x + attention, params[prefix + "attention/output/LayerNorm/gamma"],
                   params[prefix + "attention/output/LayerNorm/beta"], eps)
    ffn = dense(params, prefix + "output/dense",
                ACTIVATIONS[hidden_act](dense(params, prefix + "intermediate/dense", x)))
    return layer_norm(x + ffn, params[prefix + "output/LayerNorm/gamma"],
                      params[prefix + "output/LayerNorm/beta"], eps)


def pretraining_heads(params, sequence_output, pooled_output, masked_lm_positions, hidden_act,
                      eps=1e-12):
    """Returns (mlm_logits [B,P,V], nsp_logits [B,2]) as float64, as Google's
    `get_masked_lm_output` and `get_next_sentence_output`."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    gathered = np.take_along_axis(sequence_output, masked_lm_positions[:, :, None], axis=1)
    t = ACTIVATIONS[hidden_act](dense(params, "cls/predictions/transform/dense", gathered))
    t = layer_norm(t, params["cls/predictions/transform/LayerNorm/gamma"],
                   params["cls/predictions/transform/LayerNorm/beta"], eps)
    mlm = t @ params["bert/embeddings/word_embeddings"].T + params["cls/predictions/output_bias"]
    nsp = (pooled_output @ params["cls/seq_relationship/output_weights"].T
           + params["cls/seq_relationship/output_bias"])
    return mlm, nsp


def google_params_from_model(model):
    """Reads our model's weights into Google's names, by layer attribute (not by our name map,
    so the weights module's own map is tested against this one)."""
    encoder_model = getattr(model, "encoder", model)
    emb = encoder_model.get_layer("embeddings")
    params = {
        "bert/embeddings/word_embeddings": emb.word_embeddings,
        "bert/embeddings/token_type_embeddings": emb.token_type_embeddings,
        "bert/embeddings/position_embeddings": emb.position_embeddings,
        "bert/embeddings/LayerNorm/gamma": emb.layer_norm.gamma,
        "bert/embeddings/LayerNorm/beta": emb.layer_norm.beta,
        "bert/pooler/dense/kernel": encoder_model.get_layer("pooler").kernel,
        "bert/pooler/dense/bias": encoder_model.get_layer("pooler").bias,
    }
    for i in range(encoder_model.bert_config.num_hidden_layers):
        block = encoder_model.get_layer(f"transformer_layer_{i}")
        p = f"bert/encoder/layer_{i}/"
        for name, layer in [("attention/self/query", block.query), ("attention/self/key", block.key),
                            ("attention/self/value", block.value),
                            ("attention/output/dense", block.attention_output),
                            ("intermediate/dense", block.intermediate),
                            ("output/dense", block.output_dense)]:
            params[p + name + "/kernel"] = layer.kernel
            params[p + name + "/bias"] = layer.bias
        for name, layer in [("attention/output/LayerNorm", block.attention_layer_norm),
                            ("output/LayerNorm", block.output_layer_norm)]:
            params[p + name + "/gamma"] = layer.gamma
            params[p + name + "/beta"] = layer.beta
    if model is not encoder_model:
        mlm = model.get_layer("masked_lm")
        nsp = model.get_layer("next_sentence")
        params.update({
            "cls/predictions/transform/dense/kernel": mlm.transform.kernel,
            "cls/predictions/transform/dense/bias": mlm.transform.bias,
            "cls/predictions/transform/LayerNorm/gamma": mlm.transform_layer_norm.gamma,
            "cls/predictions/transform/LayerNorm/beta": mlm.transform_layer_norm.beta,
            "cls/predictions/output_bias": mlm.output_bias,
            "cls/seq_relationship/output_weights": np.asarray(nsp.dense.kernel).T,
            "cls/seq_relationship/output_bias": nsp.dense.bias,
        })
    return {k: np.asarray(v) for k, v in params.items()}


# --- sizes, from the shapes of modeling.py ---------------------------------------------------

def parameter_count(config, heads=False):
    """BERT's parameter count from its shape, as the papers count it: embeddings (three tables
    and a LayerNorm), L blocks (Q, K, V, output, two feed-forward layers, two LayerNorms), the
    pooler; with `heads`, the MLM transform, its LayerNorm and output bias, and the NSP layer."""
    h, i, l = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tables = config.vocab_size + config.type_vocab_size + config.max_position_embeddings
    embeddings = tables * h + 2 * h
    block = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
    pooler = h * h + h
    total = embeddings + l * block + pooler
    if heads:
        total += (h * h + h) + 2 * h + config.vocab_size + (2 * h + 2)
    return total


def variable_count(config, heads=False):
    """How many variables hold those parameters: 3 tables + 2 (LayerNorm); 6 dense layers x 2
    + 2 LayerNorms x 2 per block; 2 for the pooler; the heads 2 + 2 + 1 (MLM) and 2 (NSP)."""
    return 5 + 16 * config.num_hidden_layers + 2 + (7 if heads else 0)
