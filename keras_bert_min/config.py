"""BertConfig: the hyperparameters of a BERT model, with Google's field names.

A config reads and writes Google's `bert_config.json` and reads Hugging Face's
`config.json`. The two disagree on what `"gelu"` means: Google's code computes
the tanh approximation under that name, Hugging Face computes the exact erf
form. Here `"gelu"` always means the exact form and `"gelu_tanh"` the
approximation, and the JSON reader translates on the way in and out.
"""

import dataclasses
import json
import os

from keras_bert_min._checks import atomic_file, check_int

# The tensor names every model, dataset and export uses (TF Hub's BERT names; see docs/design.md).
ENCODER_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
ENCODER_OUTPUTS = ("sequence_output", "pooled_output")
PRETRAINING_INPUTS = (*ENCODER_INPUTS, "masked_lm_positions")
PRETRAINING_OUTPUTS = ("mlm_logits", "nsp_logits")
PRETRAINING_LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")

# Activations the encoder understands, by our names.
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "tanh", "silu", "linear")

# How each source spells an activation, mapped to our names.
_GOOGLE_ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu", "tanh": "tanh", "linear": "linear"}
_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "silu",
    "linear": "linear",
}
# How we write each activation for Hugging Face (its "gelu" is the exact form).
_HF_ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "tanh": "tanh",
                        "silu": "silu", "linear": "linear"}
# Keys only Hugging Face writes; any one of them marks a file as Hugging Face's.
_HF_MARKER_KEYS = ("model_type", "architectures", "transformers_version")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of a BERT encoder, with the names of Google's `bert_config.json`.

    Args:
        vocab_size: number of WordPiece tokens.
        hidden_size: width H of every layer.
        num_hidden_layers: number of Transformer encoder blocks L.
        num_attention_heads: heads per block; must divide `hidden_size`.
        intermediate_size: width of the feed-forward layer (4H in the papers).
        hidden_act: "gelu" (exact erf), "gelu_tanh" (Google's approximation),
            "relu", "tanh", "silu" or "linear".
        hidden_dropout_prob: dropout on embeddings and block outputs.
        attention_probs_dropout_prob: dropout on attention probabilities.
        max_position_embeddings: longest sequence the position table holds.
        type_vocab_size: number of segment (token type) ids.
        initializer_range: stddev of the truncated-normal initializer.
        layer_norm_eps: LayerNorm epsilon (Google uses 1e-12).

    Example:
    >>> config = BertConfig.from_preset("tiny")
    >>> config.hidden_size, config.num_hidden_layers
    (128, 2)
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu_tanh"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            check_int(f"BertConfig.{name}", getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}); choose heads = hidden_size / 64 "
                "as Google's models do.")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act {self.hidden_act!r} is unknown; expected one of {ACTIVATIONS}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}.")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"BertConfig.{name} must be a positive number, got {value!r}.")

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # --- dictionaries and JSON -------------------------------------------------------------

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source="ours"):
        """Builds a config from a dict in our, Google's ("google") or Hugging Face's ("hf") spelling.

        Ours must have every field (`layer_norm_eps` may be absent, as in files written before
        it existed) and nothing else: a misspelled field would otherwise silently take a
        default. Google's must have every field but `layer_norm_eps`, and only the extra keys
        Google's own releases carry (`directionality`, `pooler_*`), which its code ignores too.
        Hugging Face's may have any other key (it writes many), but the features this model
        does not implement are refused by name rather than silently computed another way.
        """
        if not isinstance(values, dict):
            raise ValueError(f"A BERT config must be a JSON object, got {type(values).__name__}.")
        field_names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {k: values[k] for k in field_names if k in values}
        required = [name for name in field_names if name != "layer_norm_eps"]
        missing = [k for k in required if k not in kwargs]
        if missing:
            raise ValueError(
                f"The {source} BERT config lacks the field(s) {missing}; a BERT config needs all "
                f"of {required}.")
        if source == "hf":
            _refuse_unimplemented_hf_features(values)
        else:
            allowed = (_OUR_MARKER_KEYS if source == "ours" else _GOOGLE_EXTRA_KEYS)
            unknown = sorted(k for k in values if k not in field_names and k not in allowed
                             and not (source == "google" and k.startswith("pooler_")))
            if unknown:
                raise ValueError(
                    f"The {source} BERT config has unknown field(s) {unknown} (misspelled?); "
                    f"the known fields are {field_names}.")
        if source != "ours":
            table = _GOOGLE_ACTIVATIONS if source == "google" else _HF_ACTIVATIONS
            act = kwargs["hidden_act"]
            if act not in table:
                raise ValueError(
                    f"hidden_act {act!r} in the {source} config has no BERT equivalent here; "
                    f"expected one of {sorted(table)}.")
            kwargs["hidden_act"] = table[act]
        return cls(**kwargs)

    @property
    def fits_google_format(self):
        """Whether Google's `bert_config.json` can express this config (its activations are
        gelu_tanh, which it calls "gelu", relu, tanh and linear)."""
        return self.hidden_act in _GOOGLE_ACTIVATIONS.values()

    def to_google_dict(self):
        """The fields as Google's `bert_config.json` spells them.

        Google's code only knows the tanh GELU (which it calls "gelu"); an exact-GELU model
        cannot be expressed in that format, so it is refused rather than silently changed.
        """
        if not self.fits_google_format:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} cannot be written as a Google bert_config.json "
                "(Google's 'gelu' is the tanh approximation); use to_json_file(path) instead.")
        values = self.to_dict()
        values["hidden_act"] = {v: k for k, v in _GOOGLE_ACTIVATIONS.items()}[self.hidden_act]
        return values

    def to_hf_dict(self, architecture="BertModel"):
        """The fields as Hugging Face's `config.json` for transformers' `architecture` class
        spells them (exact GELU "gelu", the tanh form "gelu_new")."""
        values = self.to_dict()
        values["hidden_act"] = _HF_ACTIVATION_NAMES[self.hidden_act]
        return {"architectures": [architecture], "model_type": "bert", **values,
                "pad_token_id": 0, "position_embedding_type": "absolute",
                "torch_dtype": "float32"}

    def to_json_file(self, path, format="ours"):
        """Writes the config as JSON: `format="ours"` (lossless) or `"google"` (bert_config.json)."""
        if format not in ("ours", "google"):
            raise ValueError(f"format must be 'ours' or 'google', got {format!r}.")
        values = self.to_dict() if format == "ours" else self.to_google_dict()
        if format == "ours":
            values = {"keras_bert_min_config": True, **values}
        with atomic_file(path) as f:
            json.dump(values, f, indent=2, sort_keys=False)
            f.write("\n")

    @classmethod
    def from_json_file(cls, path, source="auto"):
        """Reads a config written by us, by Google (`bert_config.json`) or by Hugging Face (`config.json`).

        Args:
            path: the JSON file.
            source: "auto" (Hugging Face if the file has `model_type`, `architectures` or
                `transformers_version`, ours if it has our marker, else Google), "google", "hf"
                or "ours". It decides what `"gelu"` means (see the module docstring).
        """
        if source not in ("auto", "google", "hf", "ours"):
            raise ValueError(f"source must be 'auto', 'google', 'hf' or 'ours', got {source!r}.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No BERT config file at {path!r}; pass the path of a "
                                    "bert_config.json or config.json.")
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r} is not a valid JSON BERT config: {e}.") from None
        if source == "auto" and isinstance(values, dict):
            if values.get("keras_bert_min_config"):
                source = "ours"
            elif any(k in values for k in _HF_MARKER_KEYS):
                source = "hf"
            else:
                source = "google"
        if isinstance(values, dict) and source == "hf" and values.get("model_type", "bert") != "bert":
            raise ValueError(f"{path!r} describes a {values['model_type']!r} model, not a BERT.")
        try:
            return cls.from_dict(values, source=source)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Invalid BERT config in {path!r}: {e}") from None

    # --- presets ---------------------------------------------------------------------------

    @classmethod
    def for_vocab(cls, preset_or_file, vocab_size):
        """The config of a model for a vocab of `vocab_size` tokens: a preset's shape with that
        vocab size, or a config JSON file (ours, Google's or Hugging Face's), whose vocab_size
        must be that size.

        Example:
        >>> BertConfig.for_vocab("tiny", 8000).hidden_size
        128
        """
        preset_or_file = os.fspath(preset_or_file)
        if os.path.isfile(preset_or_file):
            config = cls.from_json_file(preset_or_file)
            if config.vocab_size != vocab_size:
                raise ValueError(f"{preset_or_file} has vocab_size {config.vocab_size} but the "
                                 f"vocab has {vocab_size} tokens; use the matching vocab.")
            return config
        try:
            return cls.from_preset(preset_or_file, vocab_size=vocab_size)
        except ValueError as e:
            raise ValueError(f"{e} Or pass a config JSON file.") from None

    @classmethod
    def from_preset(cls, name, **overrides):
        """One of Google's released shapes: `bert_L-{2..12}_H-{128..768}`, tiny, mini, small,
        medium, base or large. Keyword arguments override single fields."""
        if name not in PRESETS:
            raise ValueError(f"Unknown BERT preset {name!r}; expected one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


_OUR_MARKER_KEYS = ("keras_bert_min_config",)
# Keys of Google's released bert_config.json files beyond the fields (the multilingual and
# Chinese models'); modeling.py ignores them, and so do we. Also every "pooler_*" key.
_GOOGLE_EXTRA_KEYS = ("directionality",)
# Hugging Face BertConfig features this model does not implement, with the value it computes.
_HF_UNIMPLEMENTED = {"position_embedding_type": "absolute", "is_decoder": False,
                     "add_cross_attention": False, "chunk_size_feed_forward": 0}


def _refuse_unimplemented_hf_features(values):
    for key, ours in _HF_UNIMPLEMENTED.items():
        if key in values and values[key] not in (ours, None):
            raise ValueError(
                f"The hf config sets {key}={values[key]!r}; keras_bert_min implements only "
                f"{key}={ours!r} (Google's BERT), so these weights would compute other outputs.")


def _shape(layers, hidden, heads=None):
    return {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads or hidden // 64,
        "intermediate_size": 4 * hidden,
    }


# Google's 24 small BERTs (Turc et al., 2019) and the named sizes of the BERT README.
PRESETS = {
    f"bert_L-{layers}_H-{hidden}": _shape(layers, hidden)
    for layers in (2, 4, 6, 8, 10, 12)
    for hidden in (128, 256, 512, 768)
}
PRESETS.update({
    "tiny": _shape(2, 128),
    "mini": _shape(4, 256),
    "small": _shape(4, 512),
    "medium": _shape(8, 512),
    "base": _shape(12, 768),
    "large": _shape(24, 1024, heads=16),
})
