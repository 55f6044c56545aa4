"""Fill-mask: a pretrainer's guesses for every `[MASK]` written in a text.

    fill_mask(pretrainer_or_directory, preprocessor, texts, top_k=5)

The literal `[MASK]` in a text becomes the mask token (the tokenizer alone would split it into
`[`, `mask`, `]`, as Google's does); the rest of the text is tokenized as usual, packed as
`[CLS] text [SEP]` and cut to the preprocessor's `seq_length` (masks cut off are not answered).
"""

import keras
import numpy as np

from keras_bert_min._checks import check_int
from keras_bert_min.models import BertPretrainer
from keras_bert_min.pretrained import from_pretrained

MASK_TEXT = "[MASK]"


def fill_mask(model, preprocessor=None, texts=(), top_k=5):
    """For each text, for each `[MASK]` in it: the `top_k` word pieces and their probabilities.

    Args:
        model: a `BertPretrainer`, or a directory `from_pretrained` reads as one (a pretraining
            run's output, Google's release, a Hugging Face BertForPreTraining directory).
        preprocessor: the `BertPreprocessor` the model was trained with; None takes the
            directory's.
        texts: str or list of str, each with any number of `[MASK]`s.
        top_k: guesses per mask.

    Returns:
        One list per text, with one list per mask of `(token, probability)` pairs, best first.

    Example:
    >>> fill_mask("runs/pretrain", texts=["It was a dark and stormy [MASK]."], top_k=2)
    [[[('night', 0.41), ('day', 0.07)]]]
    """
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model, saved_preprocessor = from_pretrained(model, "pretrainer")
        preprocessor = preprocessor or saved_preprocessor
    if not isinstance(model, BertPretrainer):
        raise ValueError(f"fill_mask needs a BertPretrainer (its masked-LM head), got a "
                         f"{type(model).__name__}.")
    if preprocessor is None:
        raise ValueError("fill_mask needs the model's BertPreprocessor.")
    texts = [texts] if isinstance(texts, str) else list(texts)
    check_int("top_k", top_k)
    if not texts:
        return []
    rows = [_masked_ids(text, preprocessor) for text in texts]
    length = max(len(ids) for ids, _ in rows)
    slots = max(1, max(len(positions) for _, positions in rows))
    word_ids = np.full((len(rows), length), preprocessor.pad_id, np.int32)
    positions = np.zeros((len(rows), slots), np.int32)
    for i, (ids, masks) in enumerate(rows):
        word_ids[i, :len(ids)] = ids
        positions[i, :len(masks)] = masks
    inputs = {"input_word_ids": word_ids,
              "input_mask": (np.arange(length)[None] < [[len(ids)] for ids, _ in rows]).astype(
                  np.int32),
              "input_type_ids": np.zeros_like(word_ids), "masked_lm_positions": positions}
    logits = keras.ops.convert_to_numpy(model(inputs, training=False)["mlm_logits"])
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    vocab = preprocessor.vocab
    answers = []
    for i, (_, masks) in enumerate(rows):
        answers.append([[(vocab[t], float(probabilities[i, j, t]))
                         for t in np.argsort(-probabilities[i, j], kind="stable")[:top_k]]
                        for j in range(len(masks))])
    return answers


def _masked_ids(text, preprocessor):
    """(ids of `[CLS] text [SEP]` with each written [MASK] as the mask id, the mask positions)."""
    pieces = text.split(MASK_TEXT)
    tokenized = preprocessor.tokenize(pieces).to_list()
    ids = [preprocessor.cls_id]
    for index, piece_ids in enumerate(tokenized):
        if index:
            ids.append(preprocessor.mask_id)
        ids.extend(piece_ids)
    ids = ids[:preprocessor.seq_length - 1] + [preprocessor.sep_id]
    positions = [i for i, token in enumerate(ids) if token == preprocessor.mask_id]
    return ids, positions
