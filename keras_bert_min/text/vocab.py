"""WordPiece vocabularies in BERT's `vocab.txt` format: read, write, and learn from text.

The format is Google's: one token per line, UTF-8, the id of a token is its line number
(from 0). Reading validates what Google's `load_vocab` silently accepts (bad bytes,
duplicates, missing special tokens), because each of those breaks training later in a way
that is hard to trace back to the file.

Learning uses tensorflow-text's WordPiece learner (the one behind `bert_vocab_from_dataset`)
on words split exactly as `BertPreprocessor` splits them, so every learned piece can be
produced by the tokenizer.
"""

import collections
import os

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner
from tqdm import tqdm

from keras_bert_min._checks import atomic_file, check_int
from keras_bert_min.text.normalize import split_words

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The special tokens every vocab must hold, in the order learn_vocab puts them (so [PAD] is
# id 0, as in Google's vocabs; Google's also have [unused*] tokens between them).
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)

_UTF8_BOM = b"\xef\xbb\xbf"


def read_vocab(path):
    """Reads a BERT `vocab.txt`: the list of tokens, id = position.

    Each line is stripped of surrounding whitespace, as Google's `load_vocab` does.

    Args:
        path: the vocab file.

    Returns:
        list of str.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is empty or not UTF-8, has an empty line or a duplicate token,
            or lacks one of `RESERVED_TOKENS`; the message names the line or byte.

    Example:
    >>> write_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello"], "/tmp/vocab.txt")
    >>> read_vocab("/tmp/vocab.txt")[-1]
    'hello'
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No vocab file at {path!r}; pass the path of a BERT vocab.txt "
                                "(one token per line), or make one with learn_vocab().")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_UTF8_BOM):
        raise ValueError(f"Vocab file {path!r} starts with a UTF-8 byte-order mark, which would "
                         "become part of the first token; save it as UTF-8 without BOM.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"Vocab file {path!r} is not UTF-8: byte offset {e.start} (line {line}) "
                         f"is {data[e.start:e.end]!r}. Re-encode the file as UTF-8.") from None
    # Split on "\n" only: str.splitlines() would also split inside tokens at U+2028, U+0085...
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    tokens = [line.strip() for line in lines]
    _check_tokens(tokens, f"Vocab file {path!r}")
    return tokens


def write_vocab(tokens, path):
    """Writes tokens as a BERT `vocab.txt`, atomically: a crash never leaves a partial file.

    Args:
        tokens: sequence of str, id = position. Validated as `read_vocab` validates a file,
            so what is written always reads back.
        path: the file to write; its directory must exist.

    Example:
    >>> write_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi", "##s"], "/tmp/vocab.txt")
    """
    tokens = list(tokens)
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise ValueError(f"Vocab token {index} is {token!r}, not a str.")
        if token != token.strip() or "\n" in token:
            raise ValueError(f"Vocab token {index} {token!r} has surrounding whitespace or a "
                             "newline, so it would not read back the same; remove them.")
    _check_tokens(tokens, "The vocab to write")
    with atomic_file(path, newline="\n") as f:
        for token in tokens:
            f.write(token + "\n")


def _check_tokens(tokens, source):
    if not tokens:
        raise ValueError(f"{source} is empty; a BERT vocab needs at least the tokens "
                         f"{list(RESERVED_TOKENS)}.")
    first_line = {}
    for line, token in enumerate(tokens, start=1):
        if not token:
            raise ValueError(f"{source} has an empty token at line {line}; remove the blank line "
                             "(ids are line numbers, so check the ids after it).")
        if token in first_line:
            raise ValueError(f"{source} has the token {token!r} twice, at lines "
                             f"{first_line[token]} and {line}; each token must be unique.")
        first_line[token] = line
    missing = [token for token in RESERVED_TOKENS if token not in first_line]
    if missing:
        raise ValueError(f"{source} lacks the special token(s) {missing}; BERT needs all of "
                         f"{list(RESERVED_TOKENS)}. Add them as lines of their own, e.g. at the "
                         "top with [PAD] first so that padding is id 0.")


def learn_vocab(texts_or_files, vocab_size, lower_case=True, *, batch_size=1024,
                learn_params=None, progress=True):
    """Learns a WordPiece vocab from text with tensorflow-text's WordPiece learner.

    Text is normalised and split into words by the same ops as `BertPreprocessor` (so the
    vocab fits the tokenizer), the words are counted, and the learner picks pieces by a
    binary search on a count threshold. The result holds `RESERVED_TOKENS` first ([PAD] = 0),
    then every character of the corpus alone and with "##" (so no corpus word is [UNK]),
    then the learned pieces by frequency.

    Args:
        texts_or_files: one of
            - a path (str or os.PathLike) or a list of paths: text files read line by line;
            - a list of texts (str), when none of them names a file;
            - a `tf.data.Dataset` of scalar tf.string texts.
            A list that mixes existing files and other strings is refused as ambiguous.
        vocab_size: the largest vocab wanted. The learner lands within 5% below it
            (`slack_ratio`), or lower if the corpus has fewer pieces worth keeping.
        lower_case: as `BertPreprocessor(lower_case=...)` will be built.
        batch_size: texts normalised per TF call.
        learn_params: keyword arguments for the learner
            (`tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib.learn`),
            e.g. `{"lower_thresh": 5, "max_unique_chars": 1000}`. They override the defaults
            chosen here for speed: `max_token_length=24` and an `upper_thresh` of
            4 * (number of words) / vocab_size.
        progress: show a progress bar while counting words.

    Returns:
        list of str, ready for `write_vocab`.

    Raises:
        FileNotFoundError: a named file does not exist.
        ValueError: the corpus has no words, or `vocab_size` cannot hold the reserved tokens
            and the corpus's characters.

    Example:
    >>> vocab = learn_vocab(["The cat sat.", "The cats sat!"] * 20, vocab_size=60, progress=False)
    >>> vocab[:5]
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    """
    check_int("vocab_size", vocab_size, len(RESERVED_TOKENS) + 1,
              hint=f" (more than the {len(RESERVED_TOKENS)} reserved tokens)")
    dataset, total_bytes = _text_dataset(texts_or_files)
    word_counts = _count_words(dataset, lower_case, batch_size, total_bytes, progress)
    if not word_counts:
        raise ValueError("The corpus has no words (it is empty or only whitespace and control "
                         "characters); pass non-empty text files or texts.")

    if progress:
        tqdm.write(f"Learning a WordPiece vocab of up to {vocab_size} tokens from "
                   f"{len(word_counts)} distinct words...")
    params = _learner_params(word_counts, vocab_size, learn_params)
    vocab = learner.learn(word_counts, vocab_size, list(RESERVED_TOKENS), **params)
    return _fit_to_size(vocab, vocab_size)


def _learner_params(word_counts, vocab_size, learn_params):
    """The learner's defaults, changed where they make it slow on a corpus of many MB."""
    num_words = sum(word_counts.values())
    params = {
        # Words longer than this are left out of learning. Google's vocabs have no piece over
        # 18 characters, and the learner's time grows with the cube of word length.
        "max_token_length": 24,
        # The learner binary-searches a count threshold, one full pass over the words per
        # step, up to the count of the most frequent word (~10^5 on 10 MB). But a piece kept
        # at threshold t occurs at least t times, and N words rarely split into more than 4N
        # pieces, so above 4N / vocab_size the vocab would be too small: don't search there.
        "upper_thresh": max(4 * num_words // vocab_size, 20),
    }
    params.update(learn_params or {})
    return params


def _fit_to_size(vocab, vocab_size):
    """Drops the rarest learned pieces if the learner overshot `vocab_size`.

    The learner searches its count threshold only up to `upper_thresh` and the count of the
    most frequent word, which on a small corpus can leave too many pieces. Its list is ordered
    reserved tokens, characters, then pieces by falling count, so cutting pieces from the end
    drops the rarest. The characters (alone and with "##") always stay: without them some words
    would become [UNK].
    """
    is_essential = [token in RESERVED_TOKENS or len(token.removeprefix("##")) == 1
                    for token in vocab]
    num_essential = sum(is_essential)
    if num_essential > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small for this corpus: the reserved "
                         f"tokens and its characters (each alone and with '##') already need "
                         f"{num_essential} entries. Pass vocab_size >= {num_essential}, ideally "
                         "several times that.")
    room_for_pieces = vocab_size - num_essential
    fitted = []
    for token, essential in zip(vocab, is_essential):
        if essential or room_for_pieces > 0:
            fitted.append(token)
            room_for_pieces -= not essential
    return fitted


def _text_dataset(texts_or_files):
    """A tf.data.Dataset of scalar strings, and the total size in bytes if known (for progress)."""
    if isinstance(texts_or_files, tf.data.Dataset):
        return texts_or_files, None
    if isinstance(texts_or_files, (str, os.PathLike)):
        files = [os.fspath(texts_or_files)]
        _check_files_exist(files)
        return tf.data.TextLineDataset(files), sum(os.path.getsize(f) for f in files)
    items = list(texts_or_files)
    is_path = [isinstance(item, os.PathLike) or (isinstance(item, str) and os.path.isfile(item))
               for item in items]
    if items and all(is_path):
        files = [os.fspath(item) for item in items]
        _check_files_exist(files)
        return tf.data.TextLineDataset(files), sum(os.path.getsize(f) for f in files)
    if any(is_path):
        not_files = [item for item, path in zip(items, is_path) if not path][:3]
        raise ValueError(f"texts_or_files mixes file paths with other strings (e.g. {not_files!r}); "
                         "pass either only existing files (check for typos) or only texts.")
    return tf.data.Dataset.from_tensor_slices(tf.constant(items, tf.string)), None


def _check_files_exist(files):
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"No text file at {missing!r}; pass existing text files.")


def _count_words(dataset, lower_case, batch_size, total_bytes, progress):
    def words_and_size(texts):
        # + 1 per text for the newline a text file spends on each line (progress only).
        return split_words(texts, lower_case), tf.reduce_sum(tf.strings.length(texts) + 1)

    batches = dataset.batch(batch_size).map(words_and_size, num_parallel_calls=tf.data.AUTOTUNE)
    counts = collections.Counter()
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="Counting words",
              disable=not progress) as bar:
        for words, num_bytes in batches.prefetch(2):
            counts.update(words.flat_values.numpy().tolist())
            bar.update(int(num_bytes))
    return {word.decode("utf-8"): count for word, count in counts.items()}
