"""keras_bert_min: BERT for TensorFlow and Keras 3, exact to Google's original.

    config = BertConfig.from_preset("base")           # Google's field names and presets
    encoder = bert_encoder(config)                    # input_word_ids/mask/type_ids -> outputs
    pretrainer = bert_pretrainer(encoder)             # + masked_lm_positions -> MLM, NSP logits
    classifier = bert_classifier(encoder, 3)          # a task model around the same encoder
    encoder, preprocessor = from_pretrained("dir")    # Google or Hugging Face weights + vocab

Where each job lives (every import points down this list):

    config.py        BertConfig, presets, tensor names          (the floor)
    layers.py        the BERT layers
    models.py        BertEncoder, BertPretrainer
    optimization.py  schedule, AdamW / Lamb, create_optimizer
    task_metrics.py  the task heads' losses and metrics, regression scores
    tasks.py         task models and span decoding
    weights.py       Google TF1 checkpoints; hf_weights.py: Hugging Face safetensors
    pretrained.py    save_pretrained / from_pretrained: ours, Google's and Hugging Face's
    mask_filling.py  fill_mask: a pretrainer's guesses for the [MASK]s of a text
    training.py      pretraining losses, metrics and callbacks
    distribute.py    strategies, precision
    signatures.py    each model's serving signatures (text in, answers out)
    export.py        TF Serving SavedModels
    corpora.py       public corpora fetched into a checksummed cache
    text/            normalisation, vocab, preprocessor, corpus, pretraining data, labelled files
"""

from keras_bert_min.config import PRESETS, BertConfig
from keras_bert_min.export import export_saved_model
from keras_bert_min.hf_weights import load_hf_weights
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead, PaddingMask,
                                   TransformerEncoderBlock)
from keras_bert_min.mask_filling import fill_mask
from keras_bert_min.models import BertEncoder, BertPretrainer, bert_encoder, bert_pretrainer
from keras_bert_min.optimization import create_optimizer, finetuning_optimizer
from keras_bert_min.pretrained import from_pretrained, save_pretrained
from keras_bert_min.task_metrics import regression_scores
from keras_bert_min.tasks import (BertClassifier, BertMultipleChoice, BertSpanPredictor,
                                  BertTokenClassifier, bert_classifier, bert_multiple_choice,
                                  bert_span_predictor, bert_token_classifier, decode_span)
from keras_bert_min.text.labelled import LabelMap, classifier_dataset, read_columns
from keras_bert_min.text.preprocessor import BertPreprocessor
from keras_bert_min.training import (compile_pretrainer, pretraining_losses, pretraining_metrics,
                                     split_pretraining_features)
from keras_bert_min.weights import load_google_checkpoint, save_google_checkpoint

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "BertConfig",
    "BertEmbedding", "TransformerEncoderBlock", "MaskedLMHead", "NextSentenceHead", "PaddingMask",
    "BertEncoder", "BertPretrainer", "bert_encoder", "bert_pretrainer",
    "BertClassifier", "BertTokenClassifier", "BertSpanPredictor", "BertMultipleChoice",
    "bert_classifier", "bert_token_classifier", "bert_span_predictor", "bert_multiple_choice",
    "decode_span", "regression_scores",
    "create_optimizer", "finetuning_optimizer",
    "compile_pretrainer", "pretraining_losses", "pretraining_metrics",
    "split_pretraining_features",
    "BertPreprocessor", "LabelMap", "classifier_dataset", "read_columns",
    "from_pretrained", "save_pretrained", "load_google_checkpoint", "save_google_checkpoint",
    "load_hf_weights",
    "export_saved_model", "fill_mask",
]
