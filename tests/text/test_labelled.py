"""Labelled text files, label names and the classifier pipeline (keras_bert_min.text.labelled).

References are hand-written: file contents with the columns they must give, label names in the
order they must get, and the ids, type ids and masks of a packed pair batch.
"""

import json

import numpy as np
import pytest

from keras_bert_min.text.labelled import LabelMap, classifier_dataset, read_columns, read_splits
from tests.fixtures import TASK_VOCAB


def test_pairs_get_segment_b_type_ids(task_preprocessor):
    # task_preprocessor: TASK_VOCAB, 16 positions (tests/fixtures.py).
    data = classifier_dataset(["good movie", "bad"], [1, 0], task_preprocessor, 2,
                              text_pairs=["awful plot", "the story was great"])
    x, y = next(iter(data))
    ids = {token: i for i, token in enumerate(TASK_VOCAB)}
    expected_words = [
        [ids[t] for t in ["[CLS]", "good", "movie", "[SEP]", "awful", "plot", "[SEP]"]] + [0],
        [ids[t] for t in ["[CLS]", "bad", "[SEP]", "the", "story", "was", "great", "[SEP]"]],
    ]
    # Cut to the longest pair (8 tokens), not padded to the preprocessor's 16.
    assert x["input_word_ids"].numpy().tolist() == expected_words
    assert x["input_type_ids"].numpy().tolist() == [[0, 0, 0, 0, 1, 1, 1, 0],
                                                    [0, 0, 0, 1, 1, 1, 1, 1]]
    assert x["input_mask"].numpy().tolist() == [[1] * 7 + [0], [1] * 8]
    assert y.numpy().tolist() == [1, 0]


def test_read_columns_csv_tsv_jsonl(tmp_path):
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('text,label\n"good, really",pos\n"she said ""bad""",neg\n',
                        encoding="utf-8")
    assert read_columns(csv_file, ["text", "label"]) == {
        "text": ["good, really", 'she said "bad"'], "label": ["pos", "neg"]}
    # TSV has no quoting: quotes are part of the text, as in the movie-review files.
    tsv_file = tmp_path / "data.tsv"
    tsv_file.write_text("id\tlabel\tsentence\n1\t1\t''Conan'' \"rocks\n", encoding="utf-8")
    assert read_columns(tsv_file, ["sentence", "label"]) == {
        "sentence": ["''Conan'' \"rocks"], "label": ["1"]}
    jsonl_file = tmp_path / "data.jsonl"
    jsonl_file.write_text('{"a": "x", "b": "y", "label": 2}\n\n{"a": "z", "b": "w", "label": 0}\n',
                          encoding="utf-8")
    assert read_columns(jsonl_file, ["a", "b", "label"]) == {
        "a": ["x", "z"], "b": ["y", "w"], "label": ["2", "0"]}


def test_read_columns_errors(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has no column 'sentence' .* columns are \['label', "
                                         r"'text'\]"):
        read_columns(data, ["sentence", "label"])
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no examples"):
        read_columns(empty, ["text", "label"])
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("text\tlabel\ngood\tpos\textra\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has 3 fields, the header 2"):
        read_columns(ragged, ["text", "label"])
    xml = tmp_path / "data.xml"
    xml.write_text("<text>good</text>", encoding="utf-8")
    with pytest.raises(ValueError, match="Cannot tell the format of .*data.xml"):
        read_columns(xml, ["text"])
    with pytest.raises(ValueError, match="file_format must be 'csv', 'tsv' or 'jsonl', got 'xml'"):
        read_columns(data, ["text"], file_format="xml")
    with pytest.raises(FileNotFoundError, match="No data file"):
        read_columns(tmp_path / "missing.csv", ["text"])
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ngood,pos\ncaf\u00e9 au lait,neg\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"'.*latin1.csv' is not UTF-8 text \(it holds the "
                                         r"byte 0xe9\); save it as UTF-8"):
        read_columns(latin1, ["text", "label"])


def test_labels_are_names_without_surrounding_whitespace(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text('text,label\ngood,pos\nfine," pos"\nbad,neg \nawful,neg\n', encoding="utf-8")
    splits, labels = read_splits({"train": str(data), "dev": str(data)}, "text", "label")
    assert labels.names == ["neg", "pos"]  # not [" pos", "neg", "neg ", "pos"]
    assert list(splits["train"]["label_ids"]) == [1, 1, 0, 0]
    data.write_text("text,label\ngood,pos\nbad, \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has an empty 'label' in data row 2; every example "
                                         r"needs a label"):
        read_splits({"train": str(data), "dev": str(data)}, "text", "label")


# --- label names ---------------------------------------------------------------------------

def test_label_map_sorts_and_round_trips(tmp_path):
    labels = LabelMap.from_labels(["pos", "neg", "neutral", "pos"])
    assert labels.names == ["neg", "neutral", "pos"]
    assert labels.encode(["pos", "neg", "neutral"]).tolist() == [2, 0, 1]
    assert labels.decode([2, 0, 1]) == ["pos", "neg", "neutral"]
    # Integer names sort as numbers, not as strings ("10" after "9").
    assert LabelMap.from_labels(["10", "9", "2", 9]).names == ["2", "9", "10"]
    path = str(tmp_path / "labels.json")
    labels.save(path)
    assert json.loads(open(path, encoding="utf-8").read()) == ["neg", "neutral", "pos"]
    assert LabelMap.load(path) == labels
    with pytest.raises(ValueError, match=r"dev.csv has labels \['mixed'\] that training never saw"):
        labels.encode(["pos", "mixed"], where="dev.csv")


# --- GLUE's pair and regression files ----------------------------------------------------------

def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_glue_pair_files_read_as_google_reads_them(tmp_path):
    """MRPC's, MNLI's and STS-B's TSV headers (as GLUE distributes them), read unquoted: the
    quotes in MNLI's sentences stay text."""
    mrpc = write_text(tmp_path / "mrpc.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                      "1\t702876\t702977\tAmrozi accused his brother .\tHe accused his brother .\n"
                      "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tIt sold the chain .\n")
    splits, labels = read_splits({"train": mrpc, "dev": mrpc}, "#1 String", "Quality",
                                 text_pair_column="#2 String")
    assert labels.names == ["0", "1"]
    assert splits["train"]["text_pairs"] == ["He accused his brother .", "It sold the chain ."]
    assert splits["train"]["label_ids"].tolist() == [1, 0]

    mnli = write_text(tmp_path / "mnli.tsv",
                      "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"
                      '0\t31193\t31193n\tgov\t"Conceptually" cream skimming\tProduct and '
                      "geography\tneutral\n"
                      "1\t101457\t101457e\ttelephone\tyou know\tYou lose\tentailment\n"
                      "2\t134793\t134793e\tfiction\tOne of our number\tA member\tcontradiction\n")
    splits, labels = read_splits({"train": mnli, "dev": mnli}, "sentence1", "gold_label",
                                 text_pair_column="sentence2")
    assert labels.names == ["contradiction", "entailment", "neutral"]
    assert splits["train"]["texts"][0] == '"Conceptually" cream skimming'

    sts = write_text(tmp_path / "sts.tsv", "index\tgenre\tsentence1\tsentence2\tscore\n"
                     "0\tmain\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
                     "1\tmain\tA man plays a flute.\tA man plays a bamboo flute.\t3.800\n")
    splits, labels = read_splits({"train": sts, "dev": sts}, "sentence1", "score",
                                 text_pair_column="sentence2", regression=True)
    assert labels is None
    assert splits["dev"]["label_ids"].dtype == np.float32
    np.testing.assert_allclose(splits["dev"]["label_ids"], [5.0, 3.8])


def test_a_regression_target_that_is_not_a_number_is_named(tmp_path):
    sts = write_text(tmp_path / "sts.csv", "s1,s2,score\na,b,4.5\nc,d,high\n")
    with pytest.raises(ValueError, match=r"sts.csv' data row 2: 'score' is 'high', not a number"):
        read_splits({"train": sts, "dev": sts}, "s1", "score", text_pair_column="s2",
                    regression=True)
    nan = write_text(tmp_path / "nan.csv", "s1,s2,score\na,b,nan\n")
    with pytest.raises(ValueError, match="'score' is 'nan', not a number"):
        read_splits({"train": nan, "dev": nan}, "s1", "score", regression=True)
