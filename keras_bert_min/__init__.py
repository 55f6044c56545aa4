"""keras_bert_min: BERT for TensorFlow and Keras 3, exact to Google's original."""

from keras_bert_min.config import PRESETS, BertConfig
from keras_bert_min.layers import (BertEmbedding, MaskedLMHead, NextSentenceHead,
                                   TransformerEncoderBlock)
from keras_bert_min.models import BertEncoder, BertPretrainer, bert_encoder, bert_pretrainer

__version__ = "0.1.0"
