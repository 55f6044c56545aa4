"""Labelled text files -> text and label columns -> a classifier `tf.data` pipeline.

    read_columns        named columns of a CSV, TSV (GLUE's unquoted kind) or JSON-lines file
    classifier_dataset  texts (or text pairs) and labels -> batches of `(encoder inputs, labels)`,
                        tokenized once and cached, each batch cut to its longest example
    LabelMap            label names <-> class ids (sorted names; saved as labels.json)
    read_splits         train / dev / test files -> their columns, class ids and the LabelMap
    split_off_dev       a seeded random share of the training examples, as the dev split
"""

import csv
import json
import os

import numpy as np
import tensorflow as tf

from keras_bert_min._checks import write_json

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def read_columns(path, columns, file_format=None):
    """Reads named columns of a CSV, TSV or JSON-lines file, as lists of str.

    CSV files are read with Python's default quoting; TSV files without any quoting (as
    Google's `run_classifier.py` reads GLUE), so quotes stay part of the text; JSONL files hold
    one JSON object per line. CSV and TSV need a header row.

    Args:
        path: the file.
        columns: the column names (or JSON keys) to read.
        file_format: "csv", "tsv" or "jsonl"; None picks by extension (.json counts as JSONL).

    Returns:
        dict column name -> list of str, rows in file order.

    Example:
    >>> data = read_columns("train.tsv", ["sentence", "label"])
    >>> data["label"][:3]
    ['1', '0', '1']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No data file {path!r}.")
    if file_format is None:
        extension = os.path.splitext(path)[1].lower()
        if extension not in FILE_FORMATS:
            raise ValueError(f"Cannot tell the format of {path!r} from its extension; name it "
                             f"one of {sorted(FILE_FORMATS)} or pass file_format.")
        file_format = FILE_FORMATS[extension]
    if file_format not in ("csv", "tsv", "jsonl"):
        raise ValueError(f"file_format must be 'csv', 'tsv' or 'jsonl', got {file_format!r}.")
    with open(path, encoding="utf-8", newline="") as f:
        rows = _json_rows(f, path) if file_format == "jsonl" else _delimited_rows(f, path,
                                                                                file_format)
        values = {column: [] for column in columns}
        try:
            for line, row in rows:
                missing = [column for column in columns if column not in row]
                if missing:
                    raise ValueError(f"{path!r} has no column {missing[0]!r} (line {line}); its "
                                     f"columns are {sorted(row)}. Pass the right column name.")
                for column in columns:
                    values[column].append(_as_text(row[column], path, line, column))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path!r} is not UTF-8 text (it holds the byte "
                             f"{e.object[e.start]:#04x}); save it as UTF-8, e.g. with `iconv -f "
                             "latin1 -t utf-8`.") from None
    if not values[columns[0]]:
        raise ValueError(f"{path!r} holds no examples; give a file with a header and rows.")
    return values


def _delimited_rows(f, path, file_format):
    if file_format == "tsv":
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path!r} line {reader.line_num} has {len(row)} fields, the header "
                             f"{len(header)}; check the delimiter and quoting.")
        yield reader.line_num, dict(zip(header, row))


def _json_rows(f, path):
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path!r} line {line_number} is not JSON: {error}.") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path!r} line {line_number} must be a JSON object, got {line:.80}")
        yield line_number, row


def _as_text(value, path, line, column):
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
        raise ValueError(f"{path!r} line {line}: {column!r} is {value!r}; expected a string or "
                         "a number.")
    return str(value)


def classifier_dataset(texts, labels, preprocessor, batch_size, text_pairs=None,
                       shuffle_seed=None, drop_remainder=False, trim_padding=True):
    """Batches of `(encoder inputs, labels)` for `model.fit`, tokenized once and cached.

    Args:
        texts: list of str (segment A).
        labels: int class ids (or float targets for regression), one per text.
        preprocessor: a `keras_bert_min.text.preprocessor.BertPreprocessor`.
        batch_size: examples per batch (global, over all replicas).
        text_pairs: optional list of str, segment B of each example.
        shuffle_seed: shuffle each epoch with this seed; None keeps the order.
        drop_remainder: drop the last partial batch (for training on a fixed batch shape).
        trim_padding: cut each batch to its longest example, since `BertEncoder` takes any
            length and short texts then cost less; False keeps the preprocessor's
            `seq_length`, the static shape that TPUs and XLA want.

    Returns:
        a `tf.data.Dataset`.

    Example:
    >>> train = classifier_dataset(["good", "bad"], [1, 0], preprocessor, 2, shuffle_seed=0)
    >>> classifier.fit(train, epochs=3)
    """
    if len(texts) != len(labels) or (text_pairs is not None and len(text_pairs) != len(texts)):
        raise ValueError(f"Got {len(texts)} texts, {len(labels)} labels and "
                         f"{None if text_pairs is None else len(text_pairs)} text pairs; "
                         "give one of each per example.")
    segments = (texts,) if text_pairs is None else (texts, text_pairs)
    dataset = (tf.data.Dataset.from_tensor_slices(segments)
               .batch(1024)
               .map(lambda *batch: preprocessor(list(batch)))
               .unbatch()
               .cache())
    dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.from_tensor_slices(np.asarray(labels)))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if trim_padding:
        dataset = dataset.map(_trim_padding)
    batches = len(texts) // batch_size if drop_remainder else -(-len(texts) // batch_size)
    # unbatch() lost the count; Keras needs it for the progress bar and the epoch ends.
    return (dataset.apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(tf.data.AUTOTUNE))


def _trim_padding(inputs, labels):
    longest = tf.reduce_max(tf.reduce_sum(inputs["input_mask"], axis=1))
    return {name: value[:, :longest] for name, value in inputs.items()}, labels


# --- train, dev and test splits -----------------------------------------------------------------

SPLITS = ("train", "dev", "test")


def read_splits(paths, text_column, label_column, text_pair_column=None, file_format=None,
                dev_fraction=0.1, seed=12345, regression=False):
    """Reads the labelled files of a classification task and maps their labels to class ids:
    every file error and every unknown label before any model is built.

    Args:
        paths: dict "train" (required), "dev", "test" -> a file (`read_columns`) or None.
        text_column, label_column: the columns of the text and the label names.
        text_pair_column: an optional column of a second text (segment B).
        file_format: as `read_columns`.
        dev_fraction: without a "dev" file, this share of train (drawn with `seed`) is dev.
        seed: the seed of that draw.
        regression: the labels are numbers (e.g. STS-B's similarity scores), read as float32
            targets; there is no LabelMap then.

    Returns:
        `(splits, labels)`: splits maps "train", "dev" and (with a file) "test" to dicts of
        "texts", "labels" (names, without surrounding whitespace), "text_pairs" (None without a pair column) and "label_ids";
        labels is the `LabelMap` of the training labels, at least two (None for regression).

    Example:
    >>> splits, labels = read_splits({"train": "train.csv"}, "sentence", "label")
    >>> sorted(splits), labels.names
    (['dev', 'train'], ['0', '1'])
    """
    columns = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])

    def read(path):
        values = read_columns(path, columns, file_format)
        # "pos " and "pos" are one class: surrounding whitespace is not part of a label name.
        labels = [label.strip() for label in values[label_column]]
        if "" in labels:
            raise ValueError(f"{path!r} has an empty {label_column!r} in data row "
                             f"{labels.index('') + 1}; every example needs a label.")
        return {"texts": values[text_column], "labels": labels,
                "text_pairs": values[text_pair_column] if text_pair_column else None}

    splits = {name: read(paths[name]) for name in SPLITS if paths.get(name)}
    if "dev" not in splits:
        splits["train"], splits["dev"] = split_off_dev(splits["train"], dev_fraction, seed)
    splits = {name: splits[name] for name in SPLITS if name in splits}
    if regression:
        for name, split in splits.items():
            where = paths.get(name) or f"the dev split of {paths['train']}"
            split["label_ids"] = _regression_targets(split["labels"], label_column, where)
        return splits, None
    labels = LabelMap.from_labels(splits["train"]["labels"])
    if len(labels) < 2:
        raise ValueError(f"The training data has the single label {labels.names}; a classifier "
                         "needs two or more (check the label column).")
    for name, split in splits.items():
        where = paths.get(name) or f"the dev split of {paths['train']}"
        split["label_ids"] = labels.encode(split["labels"], where=f"{where!r}")
    return splits, labels


def _regression_targets(labels, label_column, where):
    targets = np.zeros(len(labels), dtype="float32")
    for row, label in enumerate(labels, start=1):
        try:
            targets[row - 1] = float(label)
        except ValueError:
            targets[row - 1] = np.nan
        if not np.isfinite(targets[row - 1]):
            raise ValueError(f"{where!r} data row {row}: {label_column!r} is {label!r}, not a "
                             "number; regression needs a numeric target in every row.")
    return targets


def split_off_dev(train, fraction, seed):
    """`(train, dev)`: a seeded random `fraction` of the examples of `train` (a dict of equally
    long lists, or None values, as `read_splits` makes) as dev, the rest as train, each in the
    original order. The same seed gives the same split; each side gets at least one example."""
    size = len(train["texts"])
    order = np.random.default_rng(seed).permutation(size)
    dev_size = max(1, round(fraction * size))
    if dev_size >= size:
        raise ValueError(f"{size} training examples are too few to hold out a dev set; give a "
                         "dev file or more data.")

    def subset(indices):
        return {key: None if value is None else [value[i] for i in sorted(indices)]
                for key, value in train.items()}

    return subset(order[dev_size:]), subset(order[:dev_size])


# --- label names ---------------------------------------------------------------------------------

class LabelMap:
    """Label names to class ids and back: id i is the i-th of the sorted names.

    Names sort as integers when they all are integers ("2" before "10"), else as strings, so
    the same labels always get the same ids.

    Args:
        names: the label names, in id order, without repeats.

    Example:
    >>> labels = LabelMap.from_labels(["pos", "neg", "pos"])
    >>> labels.names, labels.encode(["pos", "neg"]).tolist()
    (['neg', 'pos'], [1, 0])
    """

    FILE_NAME = "labels.json"

    def __init__(self, names):
        names = [str(name) for name in names]
        if not names:
            raise ValueError("A LabelMap needs at least one label name.")
        if len(set(names)) != len(names):
            raise ValueError(f"Label names repeat: {names}.")
        self.names = names
        self._ids = {name: i for i, name in enumerate(names)}

    @classmethod
    def from_labels(cls, labels):
        """The sorted distinct names of `labels` (any iterable of str or int)."""
        names = sorted({str(label) for label in labels})
        if names and all(_is_int(name) for name in names):
            names.sort(key=int)
        return cls(names)

    def __len__(self):
        return len(self.names)

    def __eq__(self, other):
        return isinstance(other, LabelMap) and self.names == other.names

    def encode(self, labels, where="the data"):
        """Class ids of `labels`, an int32 array; a name not in the map is a ValueError."""
        unknown = sorted({str(label) for label in labels} - set(self._ids))
        if unknown:
            raise ValueError(f"{where} has labels {unknown[:10]} that training never saw "
                             f"(known: {self.names[:20]}); every label must occur in the "
                             "training data.")
        return np.array([self._ids[str(label)] for label in labels], dtype="int32")

    def decode(self, ids):
        """Label names of class ids."""
        return [self.names[int(i)] for i in np.asarray(ids).reshape(-1)]

    def save(self, path):
        """Writes the names, id order, as a JSON list (to a temporary name, then renamed)."""
        write_json(path, self.names)

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No label file {path!r}; a fine-tuned classifier directory "
                                    f"holds its label names as {cls.FILE_NAME}.")
        with open(path, encoding="utf-8") as f:
            names = json.load(f)
        if not isinstance(names, list):
            raise ValueError(f"{path!r} must hold a JSON list of label names, got {names!r:.80}.")
        return cls(names)


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True
