"""Text pipeline: WordPiece vocab files, the in-graph BertPreprocessor, pretraining data.

    vocab.py         read_vocab / write_vocab (BERT vocab.txt), learn_vocab (WordPiece learner)
    preprocessor.py  BertPreprocessor: text or text pairs -> input_word_ids, input_mask,
                     input_type_ids, with the ids of Google's tokenization.py
"""

from keras_bert_min.text.preprocessor import (SERVING_SAFE_TF_TEXT_OPS, BertPreprocessor,
                                              graph_op_types, unservable_ops)
from keras_bert_min.text.vocab import RESERVED_TOKENS, learn_vocab, read_vocab, write_vocab

# --- pretraining.py, tfrecords.py, corpus.py: their public names go here ------------------------
