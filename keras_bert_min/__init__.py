"""keras_bert_min: BERT for TensorFlow and Keras 3, exact to Google's original.

    config = BertConfig.from_preset("base")           # Google's field names and presets
    encoder = bert_encoder(config)                    # input_word_ids/mask/type_ids -> outputs
    pretrainer = bert_pretrainer(encoder)             # + masked_lm_positions -> MLM, NSP logits
    encoder, preprocessor = from_pretrained("dir")    # Google or Hugging Face weights + vocab
"""

from keras_bert_min.config import PRESETS, BertConfig
from keras_bert_min.export import export_saved_model
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead,
                                   TransformerEncoderBlock)
from keras_bert_min.finetuning import LabelMap, decode_span, finetuning_optimizer
from keras_bert_min.models import (BertClassifier, BertEncoder, BertPretrainer, BertSpanPredictor,
                                   BertTokenClassifier, bert_classifier, bert_encoder,
                                   bert_pretrainer, bert_span_predictor, bert_token_classifier)
from keras_bert_min.text.labelled import classifier_dataset, read_columns
from keras_bert_min.training import (compile_pretrainer, create_optimizer, pretraining_losses,
                                     pretraining_metrics, split_pretraining_features)
from keras_bert_min.pretrained import from_pretrained
from keras_bert_min.weights import load_google_checkpoint, load_hf_weights, save_google_checkpoint

__version__ = "0.1.0"
