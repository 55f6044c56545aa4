"""Multiple-choice examples (SWAG-style) -> the [B, K, S] inputs of `BertMultipleChoice`.

    ChoiceExample        a context, its K candidate continuations or answers, the right one
    read_choices_jsonl   {"context": str, "choices": [str, ...], "label": int (, "id")} per line
    choice_inputs        examples -> int32 [N, K, S] arrays: K pairs `[CLS] context [SEP] choice
                         [SEP]` per example, packed as `run_classifier.py` packs pairs
    choice_dataset       examples -> `tf.data` batches of (inputs, label) for `model.fit`

Every example of a file has the same number of choices (SWAG: 4), so that they batch; the
reader refuses a line with fewer than two choices, an empty context or choice, a label that
is not the index of a choice, naming the file and line.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ChoiceExample:
    """One multiple-choice question: `choices[label]` is the right one (label None: unknown)."""
    context: str
    choices: tuple
    label: int = None
    source: str = ""


def read_choices_jsonl(path):
    """Reads multiple-choice examples from JSON lines.

    Each line: {"context": str, "choices": [str, ...], "label": int}, and optionally "id"
    (named in errors); a label of null, or no label, leaves it unknown (for prediction).

    Args:
        path: the .jsonl file.

    Returns:
        list of `ChoiceExample`, in file order, all with the same number of choices.

    Example:
    >>> read_choices_jsonl("swag_dev.jsonl")[0].choices  # doctest: +SKIP
    ('runs to the car.', 'sings a song.', 'falls asleep.', 'opens the door.')
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No multiple-choice file {path!r}.")
    examples = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if line.strip():
                examples.append(_example(line, f"{path}:{line_number}"))
    if not examples:
        raise ValueError(f"{path!r} holds no examples; give one JSON object per line.")
    counts = {len(example.choices) for example in examples}
    if len(counts) > 1:
        first = examples[0]
        odd = next(e for e in examples if len(e.choices) != len(first.choices))
        raise ValueError(f"{odd.source} has {len(odd.choices)} choices, {first.source} "
                         f"{len(first.choices)}; every example of a file needs the same number "
                         "of choices (SWAG: 4), so that they batch.")
    return examples


def _example(line, where):
    try:
        row = json.loads(line)
    except ValueError as error:
        raise ValueError(f"{where} is not JSON: {error}.") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be a JSON object with context, choices and label.")
    if "id" in row:
        where = f"{where} (id {row['id']!r})"
    context, choices, label = row.get("context"), row.get("choices"), row.get("label")
    if not isinstance(context, str) or not context.strip():
        raise ValueError(f"{where}: 'context' must be a non-empty string, got {context!r:.80}.")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(choice, str) and choice.strip() for choice in choices)):
        raise ValueError(f"{where}: 'choices' must be a list of two or more non-empty strings, "
                         f"got {choices!r:.80}; one choice leaves nothing to choose.")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)
                              or not 0 <= label < len(choices)):
        raise ValueError(f"{where}: 'label' must be the index of the right choice, 0 to "
                         f"{len(choices) - 1}, got {label!r}.")
    return ChoiceExample(context, tuple(choices), label, where)


def choice_inputs(contexts, choices, preprocessor):
    """The encoder inputs of K (context, choice) pairs per example.

    Args:
        contexts: list of N str.
        choices: N lists of K str each.
        preprocessor: a `BertPreprocessor`; pairs are trimmed as `run_classifier.py` trims them.

    Returns:
        dict of int32 arrays [N, K, seq_length]: `input_word_ids`, `input_mask`, `input_type_ids`.
    """
    count = len(contexts)
    widths = {len(row) for row in choices}
    if len(choices) != count or len(widths) > 1 or min(widths, default=2) < 2:
        raise ValueError(f"choice_inputs needs one list of K >= 2 choices per context, the same K "
                         f"for all; got {count} contexts and choice counts {sorted(widths)}.")
    k = widths.pop() if widths else 2
    text_a = [context for context in contexts for _ in range(k)]
    text_b = [choice for row in choices for choice in row]
    packed = preprocessor([tf.constant(text_a, tf.string), tf.constant(text_b, tf.string)])
    return {name: tensor.numpy().reshape(count, k, -1) for name, tensor in packed.items()}


def choice_dataset(examples, preprocessor, batch_size, shuffle_seed=None, drop_remainder=False):
    """Batches of `(inputs [B, K, S], labels [B])` of `ChoiceExample`s for `model.fit`, each
    batch cut to its longest pair (S <= the preprocessor's seq_length).

    Args:
        examples: list of `ChoiceExample` with labels.
        preprocessor: a `BertPreprocessor`.
        batch_size: examples per batch.
        shuffle_seed: reshuffle every epoch with this seed; None keeps the order.
        drop_remainder: drop the last partial batch.

    Returns:
        a `tf.data.Dataset`.
    """
    unlabelled = [example.source for example in examples if example.label is None]
    if unlabelled:
        raise ValueError(f"{unlabelled[0]} has no label; training and scoring need one.")
    inputs = choice_inputs([e.context for e in examples], [list(e.choices) for e in examples],
                           preprocessor)
    labels = np.array([example.label for example in examples], dtype="int32")
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size, drop_remainder=drop_remainder)
            .map(_trim_padding).prefetch(tf.data.AUTOTUNE))


def _trim_padding(inputs, labels):
    # Every pair of the batch cut to the longest: short choices cost what their tokens cost.
    longest = tf.reduce_max(tf.reduce_sum(inputs["input_mask"], axis=-1))
    return {name: value[..., :longest] for name, value in inputs.items()}, labels
