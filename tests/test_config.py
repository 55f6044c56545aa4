import dataclasses
import json
import os

import pytest

from keras_bert_min import PRESETS, BertConfig

# Google's released bert_config.json for BERT-Base, Uncased, as published.
GOOGLE_BASE_JSON = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}
# A Hugging Face config.json (all-MiniLM-L6-v2's, abridged).
HF_MINILM_JSON = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02,
    "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
    "position_embedding_type": "absolute", "transformers_version": "4.8.2", "type_vocab_size": 2,
    "use_cache": True, "vocab_size": 30522,
}


def write_json(tmp_path, values, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return str(path)


def test_defaults_are_bert_base_with_googles_activation():
    config = BertConfig()
    assert config == BertConfig.from_preset("base")
    assert config.hidden_act == "gelu_tanh"
    assert config.layer_norm_eps == 1e-12
    assert config.head_size == 64


def test_google_json_gelu_means_tanh_approximation(tmp_path):
    config = BertConfig.from_json_file(write_json(tmp_path, GOOGLE_BASE_JSON, "bert_config.json"))
    assert config.hidden_act == "gelu_tanh"
    assert config == BertConfig.from_preset("base")


def test_hf_json_gelu_means_exact_gelu(tmp_path):
    config = BertConfig.from_json_file(write_json(tmp_path, HF_MINILM_JSON))
    assert config.hidden_act == "gelu"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size) == (6, 384, 12, 1536)


@pytest.mark.parametrize("hf_act, ours", [("gelu_new", "gelu_tanh"), ("gelu_pytorch_tanh", "gelu_tanh"),
                                          ("relu", "relu"), ("silu", "silu")])
def test_hf_activation_names(tmp_path, hf_act, ours):
    path = write_json(tmp_path, {**HF_MINILM_JSON, "hidden_act": hf_act})
    assert BertConfig.from_json_file(path).hidden_act == ours


def test_source_override(tmp_path):
    path = write_json(tmp_path, GOOGLE_BASE_JSON)
    assert BertConfig.from_json_file(path, source="hf").hidden_act == "gelu"
    fields = {f.name for f in dataclasses.fields(BertConfig)}
    path = write_json(tmp_path, {k: v for k, v in HF_MINILM_JSON.items() if k in fields})
    assert BertConfig.from_json_file(path, source="google").hidden_act == "gelu_tanh"


def test_a_misspelled_or_missing_field_of_our_format_is_refused(tmp_path):
    ours = {"keras_bert_min_config": True, **BertConfig.from_preset("tiny").to_dict()}
    ours["hiden_size"] = ours.pop("hidden_size")  # would silently be BERT-base's 768
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['hidden_size'\]"):
        BertConfig.from_json_file(write_json(tmp_path, ours))
    ours["hidden_size"] = 128
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['hiden_size'\] \(misspelled\?\); "
                                         r"the known fields are \['vocab_size', 'hidden_size'"):
        BertConfig.from_json_file(write_json(tmp_path, ours))


def test_google_configs_take_only_the_keys_google_releases_carry(tmp_path):
    # bert-base-multilingual-cased's bert_config.json carries these, and Google's code ignores them.
    released = {**GOOGLE_BASE_JSON, "directionality": "bidi", "pooler_fc_size": 768,
                "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3,
                "pooler_size_per_head": 128, "pooler_type": "first_token_transform"}
    assert BertConfig.from_json_file(write_json(tmp_path, released)).hidden_size == 768
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['num_hiden_layers'\]"):
        BertConfig.from_json_file(write_json(tmp_path, {**GOOGLE_BASE_JSON,
                                                        "num_hiden_layers": 6}))


@pytest.mark.parametrize("key, value", [("position_embedding_type", "relative_key"),
                                        ("position_embedding_type", "relative_key_query"),
                                        ("is_decoder", True), ("add_cross_attention", True),
                                        ("chunk_size_feed_forward", 64)])
def test_hf_features_the_model_does_not_implement_are_refused_by_name(tmp_path, key, value):
    with pytest.raises(ValueError, match=rf"sets {key}={value!r}; keras_bert_min implements only"):
        BertConfig.from_json_file(write_json(tmp_path, {**HF_MINILM_JSON, key: value}))
    defaults = {"position_embedding_type": "absolute", "is_decoder": False,
                "add_cross_attention": False, "chunk_size_feed_forward": 0}
    assert BertConfig.from_json_file(write_json(tmp_path, {**HF_MINILM_JSON, key:
                                                           defaults[key]})).hidden_size == 384


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "relu"])
def test_json_round_trip_is_lossless(tmp_path, act):
    config = BertConfig.from_preset("tiny", hidden_act=act, vocab_size=999, layer_norm_eps=1e-6)
    config.to_json_file(str(tmp_path / "ours.json"))
    assert BertConfig.from_json_file(str(tmp_path / "ours.json")) == config


def test_google_format_round_trip_and_refusal_of_exact_gelu(tmp_path):
    config = BertConfig.from_preset("mini")
    path = str(tmp_path / "bert_config.json")
    config.to_json_file(path, format="google")
    on_disk = json.loads(open(path).read())
    assert on_disk["hidden_act"] == "gelu"  # Google's spelling of the tanh form
    assert BertConfig.from_json_file(path) == config
    with pytest.raises(ValueError, match="cannot be written as a Google"):
        config.replace(hidden_act="gelu").to_json_file(path, format="google")
    # Google's activations, in our names: gelu_tanh (its "gelu"), relu, tanh, linear.
    assert [config.replace(hidden_act=act).fits_google_format
            for act in ("gelu_tanh", "relu", "tanh", "linear", "gelu", "silu")] == [
        True, True, True, True, False, False]


@pytest.mark.parametrize("hidden_act, written", [("gelu_tanh", "bert_config.json"),
                                                 ("gelu", "config.json"),
                                                 ("silu", "config.json")])
def test_checkpoint_config_is_googles_when_it_can_be(tmp_path, hidden_act, written):
    from keras_bert_min.weights import write_google_config

    config = BertConfig.from_preset("mini", hidden_act=hidden_act)
    write_google_config(config, str(tmp_path))
    assert os.listdir(tmp_path) == [written]
    assert BertConfig.from_json_file(str(tmp_path / written)) == config


@pytest.mark.parametrize("changes, message", [
    ({"hidden_size": 100, "num_attention_heads": 12}, "divisible by num_attention_heads"),
    ({"hidden_size": 0}, "hidden_size must be an integer of at least 1"),
    ({"num_hidden_layers": -1}, "num_hidden_layers must be an integer of at least 1"),
    ({"vocab_size": 3.5}, "vocab_size must be an integer of at least 1"),
    ({"hidden_act": "swishy"}, "hidden_act 'swishy' is unknown"),
    ({"hidden_dropout_prob": 1.0}, r"hidden_dropout_prob must be in \[0, 1\)"),
    ({"attention_probs_dropout_prob": -0.1}, r"attention_probs_dropout_prob must be in \[0, 1\)"),
    ({"initializer_range": 0}, "initializer_range must be a positive number"),
    ({"layer_norm_eps": -1e-12}, "layer_norm_eps must be a positive number"),
])
def test_invalid_configs_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**changes)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No BERT config file"):
        BertConfig.from_json_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid JSON BERT config"):
        BertConfig.from_json_file(str(bad))
    incomplete = {k: v for k, v in GOOGLE_BASE_JSON.items() if k != "num_hidden_layers"}
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['num_hidden_layers'\]"):
        BertConfig.from_json_file(write_json(tmp_path, incomplete))
    with pytest.raises(ValueError, match="'roberta' model, not a BERT"):
        BertConfig.from_json_file(write_json(tmp_path, {**HF_MINILM_JSON, "model_type": "roberta"}))
    with pytest.raises(ValueError, match="must be a JSON object"):
        BertConfig.from_json_file(write_json(tmp_path, [1, 2]))
    with pytest.raises(ValueError, match="Invalid BERT config .* divisible"):
        BertConfig.from_json_file(write_json(tmp_path, {**GOOGLE_BASE_JSON, "hidden_size": 700}))


def test_presets_match_googles_published_shapes():
    small_berts = [name for name in PRESETS if name.startswith("bert_L-")]
    assert len(small_berts) == 24
    assert PRESETS["bert_L-4_H-256"] == PRESETS["mini"]
    assert PRESETS["bert_L-2_H-128"] == PRESETS["tiny"]
    assert PRESETS["bert_L-4_H-512"] == PRESETS["small"]
    assert PRESETS["bert_L-8_H-512"] == PRESETS["medium"]
    assert PRESETS["bert_L-12_H-768"] == PRESETS["base"]
    large = BertConfig.from_preset("large")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads,
            large.intermediate_size) == (24, 1024, 16, 4096)
    with pytest.raises(ValueError, match="Unknown BERT preset 'huge'"):
        BertConfig.from_preset("huge")
