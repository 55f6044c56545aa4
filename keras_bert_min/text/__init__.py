"""Text pipeline: raw text to the tensors BERT takes, as TF ops where it matters.

    normalize.py     Google's BasicTokenizer rules: clean, lower-case, strip accents, split words
    vocab.py         read_vocab / write_vocab (BERT vocab.txt), learn_vocab (WordPiece learner)
    preprocessor.py  BertPreprocessor: text or text pairs -> input_word_ids, input_mask,
                     input_type_ids, with the ids of Google's tokenization.py
    prose.py         prose rules: sentence boundaries, Gutenberg boilerplate, headings, layout
    corpus.py        text files (BERT format or prose) -> documents of sentences, streamed
    pretraining.py   documents -> NSP sentence pairs -> statically masked examples (Google's)
    masking.py       the same masks drawn in tf.data, fresh every batch (dynamic masking), and
                     statically masked instances as tf.data batches
    tfrecords.py     pretraining examples in Google's TFRecord layout, written and read
    shards.py        a corpus bigger than memory, paired shard by shard into TFRecord files
    labelled.py      labelled CSV/TSV/JSONL files -> text and label columns -> classifier
                     tf.data batches (read_columns, classifier_dataset); LabelMap
    conll.py         tagged words (NER/POS): CoNLL and JSONL readers, word-piece windows,
                     conlleval's entity scores
    handmade.py      hand-made labelled sets (NER) for recipe defaults and tests
"""

from keras_bert_min.text.corpus import (expand_paths, iter_documents, read_documents,
                                        split_documents)
from keras_bert_min.text.prose import detect_format, split_sentences, strip_gutenberg_boilerplate
from keras_bert_min.text.labelled import LabelMap, classifier_dataset, read_columns
from keras_bert_min.text.normalize import normalize_text, split_words
from keras_bert_min.text.preprocessor import BertPreprocessor
from keras_bert_min.text.serving_ops import (SERVING_SAFE_TF_TEXT_OPS, graph_op_types,
                                             unservable_ops)
from keras_bert_min.text.masking import (dynamic_mask, pretraining_dataset_from_instances,
                                         pretraining_dataset_from_static_instances)
from keras_bert_min.text.pretraining import (FEATURE_NAMES, SpecialTokenIds, TrainingInstance,
                                             create_training_instances, tokenize_documents)
from keras_bert_min.text.tfrecords import (pretraining_dataset_from_tfrecords, write_instances,
                                           write_pretraining_data)
from keras_bert_min.text.vocab import RESERVED_TOKENS, learn_vocab, read_vocab, write_vocab

__all__ = [
    "detect_format",
    "expand_paths",
    "iter_documents",
    "read_documents",
    "split_documents",
    "split_sentences",
    "strip_gutenberg_boilerplate",
    "LabelMap",
    "classifier_dataset",
    "read_columns",
    "normalize_text",
    "split_words",
    "SERVING_SAFE_TF_TEXT_OPS",
    "BertPreprocessor",
    "graph_op_types",
    "unservable_ops",
    "dynamic_mask",
    "pretraining_dataset_from_instances",
    "pretraining_dataset_from_static_instances",
    "FEATURE_NAMES",
    "SpecialTokenIds",
    "TrainingInstance",
    "create_training_instances",
    "tokenize_documents",
    "pretraining_dataset_from_tfrecords",
    "write_instances",
    "write_pretraining_data",
    "RESERVED_TOKENS",
    "learn_vocab",
    "read_vocab",
    "write_vocab",
]
