"""A pure-Python transcription of Google BERT's tokenization rules, the reference the tests use.

It follows `tokenization.py` (`BasicTokenizer`, `WordpieceTokenizer`, `FullTokenizer`) and
`run_classifier.py` (`_truncate_seq_pair` and the `[CLS] A [SEP] B [SEP]` packing) of
google-research/bert, rule by rule, using only `unicodedata`. It must never import
keras_bert_min: it is the independent answer the TF implementation is checked against.
"""

import unicodedata

MAX_INPUT_CHARS_PER_WORD = 200

# Google's `_is_chinese_char`: the CJK Unified Ideographs blocks and their compatibility forms.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _is_whitespace(char):
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    return any(low <= cp <= high for low, high in _CJK_RANGES)


def _clean_text(text):
    output = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


def _tokenize_chinese_chars(text):
    return "".join(f" {char} " if _is_chinese_char(ord(char)) else char for char in text)


def _strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(text):
    words = []
    start_new_word = True
    for char in text:
        if _is_punctuation(char):
            words.append(char)
            start_new_word = True
        else:
            if start_new_word:
                words.append("")
            start_new_word = False
            words[-1] += char
    return words


def basic_tokenize(text, do_lower_case=True):
    """Google's `BasicTokenizer.tokenize`: the list of words (strings) of `text`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "ignore")
    text = _tokenize_chinese_chars(_clean_text(text))
    split_tokens = []
    # `str.split()` with no argument is Google's `whitespace_tokenize` (it also splits on
    # U+2028 and U+2029, which `_clean_text` keeps).
    for token in text.split():
        if do_lower_case:
            token = _strip_accents(token.lower())
        split_tokens.extend(_split_on_punctuation(token))
    return " ".join(split_tokens).split()


def wordpiece_tokenize(word, vocab, unk_token="[UNK]"):
    """Google's `WordpieceTokenizer.tokenize` for one word: greedy longest match first."""
    if len(word) > MAX_INPUT_CHARS_PER_WORD:
        return [unk_token]
    pieces = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while start < end:
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


class FullTokenizer:
    """Google's `FullTokenizer`: basic tokenization, then WordPiece, then ids.

    Args:
        vocab: list of tokens, id = position.
        do_lower_case: lower-case and strip accents, as for the uncased models.
    """

    def __init__(self, vocab, do_lower_case=True):
        self.vocab = {token: index for index, token in enumerate(vocab)}
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        return [piece for word in basic_tokenize(text, self.do_lower_case)
                for piece in wordpiece_tokenize(word, self.vocab)]

    def ids(self, text):
        return [self.vocab[piece] for piece in self.tokenize(text)]


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """`run_classifier._truncate_seq_pair`: pop from the end of the longer list (B on a tie)."""
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()
    return tokens_a, tokens_b


def pack(ids_a, ids_b, seq_length, cls_id, sep_id, pad_id=0):
    """`run_classifier.convert_single_example`'s packing: `[CLS] A [SEP] (B [SEP])`, padded.

    Returns the lists `(input_ids, input_mask, segment_ids)`, each `seq_length` long.
    """
    if not ids_b:  # Google's `if tokens_b:`: a B that tokenizes to nothing packs as no B
        ids_a = list(ids_a)[:seq_length - 2]
        input_ids = [cls_id] + ids_a + [sep_id]
        segment_ids = [0] * len(input_ids)
    else:
        ids_a, ids_b = truncate_seq_pair(ids_a, ids_b, seq_length - 3)
        input_ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
        segment_ids = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    input_mask = [1] * len(input_ids)
    padding = seq_length - len(input_ids)
    return (input_ids + [pad_id] * padding, input_mask + [0] * padding,
            segment_ids + [0] * padding)
