"""SQuAD v1.1 / v2.0 JSON -> examples -> windowed features, by the rules of Google's
`run_squad.py` (`read_squad_examples`, `convert_examples_to_features`).

    read_squad       the questions of a SQuAD file, each with its context split on whitespace
                     (Google's `doc_tokens`) and its answers; bad answers named by id
    squad_dataset    features -> `tf.data` batches for `model.fit` / `predict`, each batch cut
                     to its longest window
    squad_features   word pieces of the question (cut to max_query_length) and of each doc
                     token, windows of the context every doc_stride pieces, `[CLS] question
                     [SEP] window [SEP]` padded to seq_length, each piece's doc token
                     (`token_to_orig_map`) and whether this window gives it the most context
                     (`token_is_max_context`); for training, the answer's start and end pieces
                     (narrowed to the answer's own pieces as `_improve_answer_span` does),
                     0 / 0 ([CLS]) when the window misses it or there is none (v2.0)

Predictions are decoded back to text in `text.squad_answers`.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

# Google's `is_whitespace` of read_squad_examples: Python's str.split would also split on
# other Unicode spaces, which SQuAD's contexts keep inside words.
_SQUAD_WHITESPACE = (" ", "\t", "\r", "\n", "\u202f")


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One question: its context split into `doc_tokens`, the answers given, and for training
    the doc tokens of the first answer (`start_token`, `end_token`, -1 for no answer)."""
    qas_id: str
    question: str
    context: str
    doc_tokens: tuple
    answers: tuple  # every given answer text (several in dev files, none if impossible)
    answer_text: str = ""
    start_token: int = -1
    end_token: int = -1
    is_impossible: bool = False


def split_context(context):
    """`(doc_tokens, char_to_word_offset)`: Google's whitespace split of a SQuAD context and the
    doc token of each character (a space belongs to the token before it)."""
    doc_tokens, char_to_word, previous_is_space = [], [], True
    for char in context:
        if char in _SQUAD_WHITESPACE:
            previous_is_space = True
        else:
            if previous_is_space:
                doc_tokens.append(char)
            else:
                doc_tokens[-1] += char
            previous_is_space = False
        char_to_word.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word


def read_squad(path, training=False):
    """Reads the questions of a SQuAD v1.1 or v2.0 JSON file (or of its parsed JSON, a dict).

    Every answer's `answer_start` must point at its `text` in the context; a context must not
    be empty; for training, a question has exactly one answer unless `is_impossible` (Google's
    rule). An answer whose words cannot be found again in the whitespace-split context (rare
    Unicode spacing) is skipped, as Google skips it, and counted in the returned `skipped`.

    Args:
        path: the JSON file ({"data": [{"paragraphs": [{"context", "qas": [...]}]}]}).
        training: check and keep the one answer's position, for `squad_features`.

    Returns:
        `(examples, skipped)`: list of `SquadExample` in file order, and the ids skipped.

    Example:
    >>> examples, _ = read_squad("dev-v1.1.json")  # doctest: +SKIP
    """
    if isinstance(path, dict):
        path, parsed = "the SQuAD data given", path
    else:
        path, parsed = os.fspath(path), None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No SQuAD file {path!r}.")
    try:
        if parsed is None:
            with open(path, encoding="utf-8") as f:
                parsed = json.load(f)
        data = parsed["data"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path!r} is not SQuAD JSON with a top-level 'data' list: "
                         f"{error}.") from None
    examples, skipped, seen = [], [], set()
    for article in data:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            qas = paragraph.get("qas", [])
            first_id = qas[0].get("id") if qas else None
            if not isinstance(context, str) or not context.strip():
                raise ValueError(f"{path!r}: the paragraph of question {first_id!r} has an "
                                 "empty context; every question needs text to answer from.")
            doc_tokens, char_to_word = split_context(context)
            for qa in qas:
                example = _example(qa, context, doc_tokens, char_to_word, training, path)
                if example.qas_id in seen:
                    raise ValueError(f"{path!r}: question id {example.qas_id!r} occurs twice.")
                seen.add(example.qas_id)
                if example.start_token == -2:  # Google's "Could not find answer"
                    skipped.append(example.qas_id)
                else:
                    examples.append(example)
    if not examples:
        raise ValueError(f"{path!r} holds no questions.")
    return examples, skipped


def _example(qa, context, doc_tokens, char_to_word, training, path):
    qas_id, question = qa.get("id"), qa.get("question")
    where = f"{path!r} question {qas_id!r}"
    if not isinstance(qas_id, str) or not isinstance(question, str) or not question.strip():
        raise ValueError(f"{where}: every question needs a string 'id' and a non-empty "
                         "'question'.")
    impossible = bool(qa.get("is_impossible", False))
    answers = qa.get("answers", [])
    for answer in answers:
        text, start = answer.get("text"), answer.get("answer_start")
        if (not isinstance(text, str) or not text or not isinstance(start, int)
                or context[start:start + len(text)] != text):
            found = context[start:start + len(text)] if isinstance(start, int) and \
                isinstance(text, str) else None
            raise ValueError(f"{where}: the answer {text!r} at answer_start {start!r} does not "
                             f"match the context there ({found!r}); fix answer_start or text.")
    texts = tuple(answer["text"] for answer in answers)
    if not training:
        return SquadExample(qas_id, question, context, tuple(doc_tokens), texts,
                            is_impossible=impossible)
    if impossible:
        return SquadExample(qas_id, question, context, tuple(doc_tokens), texts,
                            is_impossible=True)
    if len(answers) != 1:
        raise ValueError(f"{where}: for training, each question needs exactly 1 answer (or "
                         f"is_impossible: true), it has {len(answers)}.")
    text, start = answers[0]["text"], answers[0]["answer_start"]
    start_token, end_token = char_to_word[start], char_to_word[start + len(text) - 1]
    # Google keeps only answers whose words can be found again in the split context.
    if " ".join(doc_tokens[start_token:end_token + 1]).find(" ".join(text.split())) == -1:
        start_token = end_token = -2
    return SquadExample(qas_id, question, context, tuple(doc_tokens), texts, text, start_token,
                        end_token)


@dataclasses.dataclass
class SquadFeatures:
    """The windows of a list of examples, one row each (N windows in all).

    inputs: the three encoder inputs, int32 [N, seq_length].
    start_positions, end_positions: int32 [N], the training targets (0: no answer here).
    example_index: int [N], the example each window comes from.
    token_to_orig: int [N, seq_length], the doc token of each context piece, -1 elsewhere.
    max_context: bool [N, seq_length], whether this window gives the piece the most context.
    """
    inputs: dict
    start_positions: np.ndarray
    end_positions: np.ndarray
    example_index: np.ndarray
    token_to_orig: np.ndarray
    max_context: np.ndarray


def doc_windows(num_pieces, max_tokens, doc_stride):
    """`[(start, length), ...]`: Google's sliding windows over `num_pieces` context pieces, each
    at most `max_tokens` long, starting every `doc_stride` pieces, the last reaching the end."""
    windows, start = [], 0
    while start < num_pieces:
        length = min(num_pieces - start, max_tokens)
        windows.append((start, length))
        if start + length == num_pieces:
            break
        start += min(length, doc_stride)
    return windows


def max_context_windows(windows, num_pieces):
    """For each piece, the window that gives it the most context: the highest
    `min(left, right) + 0.01 * window length`, the first such window on ties."""
    best, best_score = np.full(num_pieces, -1), np.full(num_pieces, -np.inf)
    for index, (start, length) in enumerate(windows):
        positions = np.arange(start, start + length)
        score = np.minimum(positions - start, start + length - 1 - positions) + 0.01 * length
        better = score > best_score[positions]
        best[positions[better]], best_score[positions[better]] = index, score[better]
    return best


def squad_features(examples, preprocessor, doc_stride=128, max_query_length=64, training=False):
    """Google's `convert_examples_to_features`: see the module docstring.

    Args:
        examples: `SquadExample`s (from `read_squad`, with `training` for training targets).
        preprocessor: a `BertPreprocessor`; its seq_length is the window's.
        doc_stride: pieces between the starts of consecutive windows.
        max_query_length: the question's pieces are cut to this many.
        training: compute start and end positions.

    Returns:
        `SquadFeatures`.
    """
    seq_length = preprocessor.seq_length
    if max_query_length + 3 >= seq_length:
        raise ValueError(f"seq_length {seq_length} leaves no room for the context after a "
                         f"question of max_query_length {max_query_length} and [CLS], [SEP], "
                         "[SEP]; lower max_query_length or raise seq_length.")
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be at least 1, got {doc_stride}.")
    if training:
        unread = next((e.qas_id for e in examples if not e.is_impossible and e.start_token < 0),
                      None)
        if unread is not None:
            raise ValueError(f"Question {unread!r} has no answer position: read the file with "
                             "read_squad(path, training=True) to train on it.")
    questions = preprocessor.tokenize([e.question for e in examples]).to_list()
    # Every doc token is tokenized on its own, as Google's loop does; each context once,
    # however many questions it has.
    contexts = {}
    for example in examples:
        contexts.setdefault(example.context, example.doc_tokens)
    context_pieces, all_tokens = {}, [token for tokens in contexts.values() for token in tokens]
    flat = preprocessor.tokenize(all_tokens).to_list() if all_tokens else []
    start = 0
    for context, tokens in contexts.items():
        context_pieces[context] = flat[start:start + len(tokens)]
        start += len(tokens)
    answers = (preprocessor.tokenize([e.answer_text for e in examples]).to_list()
               if training else None)
    rows = {name: [] for name in ("ids", "types", "mask", "orig", "max", "start", "end", "ex")}
    for index, example in enumerate(examples):
        token_pieces = context_pieces[example.context]
        doc_ids = [piece for token in token_pieces for piece in token]
        piece_token = [i for i, token in enumerate(token_pieces) for _ in token]
        query = questions[index][:max_query_length]
        target = None
        if training:
            target = (-1, -1) if example.is_impossible else _answer_pieces(
                example, token_pieces, answers[index])
        windows = doc_windows(len(doc_ids), seq_length - len(query) - 3, doc_stride)
        best = max_context_windows(windows, len(doc_ids))
        for window_index, (start, length) in enumerate(windows):
            ids = [preprocessor.cls_id, *query, preprocessor.sep_id,
                   *doc_ids[start:start + length], preprocessor.sep_id]
            first = len(query) + 2
            orig = np.full(seq_length, -1)
            orig[first:first + length] = piece_token[start:start + length]
            is_max = np.zeros(seq_length, bool)
            is_max[first:first + length] = best[start:start + length] == window_index
            pad = seq_length - len(ids)
            rows["ids"].append(ids + [preprocessor.pad_id] * pad)
            rows["types"].append([0] * first + [1] * (length + 1) + [0] * pad)
            rows["mask"].append([1] * len(ids) + [0] * pad)
            rows["orig"].append(orig)
            rows["max"].append(is_max)
            rows["ex"].append(index)
            answer_start, answer_end = 0, 0
            if target is not None and target[0] >= 0 and start <= target[0] \
                    and target[1] <= start + length - 1:
                answer_start, answer_end = target[0] - start + first, target[1] - start + first
            rows["start"].append(answer_start)
            rows["end"].append(answer_end)
    return SquadFeatures(
        inputs={"input_word_ids": np.array(rows["ids"], "int32").reshape(-1, seq_length),
                "input_mask": np.array(rows["mask"], "int32").reshape(-1, seq_length),
                "input_type_ids": np.array(rows["types"], "int32").reshape(-1, seq_length)},
        start_positions=np.array(rows["start"], "int32"),
        end_positions=np.array(rows["end"], "int32"),
        example_index=np.array(rows["ex"], "int64"),
        token_to_orig=np.array(rows["orig"], "int64").reshape(-1, seq_length),
        max_context=np.array(rows["max"], bool).reshape(-1, seq_length))


def _answer_pieces(example, token_pieces, answer_ids):
    """The first and last context piece of the answer: the pieces of its doc tokens, narrowed
    to the shortest run of pieces that is the answer's own tokenization, if there is one
    (Google's `_improve_answer_span`: "(1895-1943)." holds the answer "1895")."""
    starts = np.cumsum([0] + [len(pieces) for pieces in token_pieces])
    start, end = starts[example.start_token], starts[example.end_token + 1] - 1
    doc_ids = [piece for pieces in token_pieces for piece in pieces]
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start:new_end + 1] == answer_ids:
                return new_start, new_end
    return start, end


def squad_dataset(features, batch_size, shuffle_seed=None, drop_remainder=False, labels=True):
    """Batches of a `SquadFeatures`' windows: `(inputs, {"start_logits": start positions,
    "end_logits": end positions})` for `fit`, or the inputs alone (`labels=False`). Each batch
    is cut to its longest window, so short contexts cost what their pieces cost.

    Args:
        features: `SquadFeatures`.
        batch_size: windows per batch.
        shuffle_seed: reshuffle each epoch with this seed; None keeps the order.
        drop_remainder: drop the last partial batch (training).
        labels: include the start and end positions.

    Returns:
        a `tf.data.Dataset`.
    """
    inputs = features.inputs
    elements = ((inputs, {"start_logits": features.start_positions,
                          "end_logits": features.end_positions}) if labels else inputs)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features.example_index), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def trim(*element):
        batch = element[0]
        longest = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
        cut = {name: value[:, :longest] for name, value in batch.items()}
        return (cut, *element[1:]) if len(element) > 1 else cut

    return dataset.map(trim).prefetch(tf.data.AUTOTUNE)
