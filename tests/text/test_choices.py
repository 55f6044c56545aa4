"""Multiple-choice files and inputs (keras_bert_min.text.choices): the JSONL reader's errors
name the file, line and id; packed pairs are the preprocessor's, one row per choice."""

import json

import numpy as np
import pytest

from keras_bert_min.text.choices import (ChoiceExample, choice_dataset, choice_inputs,
                                         read_choices_jsonl)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" if isinstance(row, dict) else row + "\n"
                            for row in rows), encoding="utf-8")
    return str(path)


def test_reads_examples_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "swag.jsonl", [
        {"id": "a", "context": "She opens the door", "choices": ["and walks in.", "x"],
         "label": 0},
        "",
        {"context": "He sits", "choices": ["down.", "up."], "label": None}])
    examples = read_choices_jsonl(path)
    assert examples[0] == ChoiceExample("She opens the door", ("and walks in.", "x"), 0,
                                        f"{path}:1 (id 'a')")
    assert examples[1].label is None and examples[1].source == f"{path}:3"


@pytest.mark.parametrize("row, message", [
    ({"context": "c", "choices": ["only one"], "label": 0}, "two or more non-empty strings"),
    ({"context": "", "choices": ["a", "b"], "label": 0}, "'context' must be a non-empty"),
    ({"context": "c", "choices": ["a", " "], "label": 0}, "two or more non-empty strings"),
    ({"context": "c", "choices": ["a", "b"], "label": 2}, "index of the right choice, 0 to 1"),
    ({"context": "c", "choices": ["a", "b"], "label": True}, "index of the right choice"),
    ("not json", "is not JSON"),
    ("[1, 2]", "must be a JSON object"),
])
def test_bad_lines_are_named(tmp_path, row, message):
    good = {"id": "q1", "context": "c", "choices": ["a", "b"], "label": 1}
    bad = dict(row, id="q7") if isinstance(row, dict) else row
    path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
    with pytest.raises(ValueError, match=message) as error:
        read_choices_jsonl(path)
    assert "bad.jsonl:2" in str(error.value)
    if isinstance(row, dict):
        assert "'q7'" in str(error.value)


def test_a_file_needs_one_number_of_choices(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"context": "c", "choices": ["a", "b"], "label": 1},
        {"context": "c", "choices": ["a", "b", "c"], "label": 1}])
    with pytest.raises(ValueError, match=r"mixed.jsonl:2 has 3 choices, .*mixed.jsonl:1 2"):
        read_choices_jsonl(path)
    with pytest.raises(ValueError, match="holds no examples"):
        read_choices_jsonl(write_jsonl(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="No multiple-choice file"):
        read_choices_jsonl(tmp_path / "missing.jsonl")


def test_choice_inputs_are_the_preprocessors_pairs(task_preprocessor):
    contexts = ["the movie was", "it was"]
    choices = [["good", "bad", "awful"], ["great", "the plot", "terrible"]]
    inputs = choice_inputs(contexts, choices, task_preprocessor)
    assert inputs["input_word_ids"].shape == (2, 3, task_preprocessor.seq_length)
    for b in range(2):
        for k in range(3):
            pair = task_preprocessor([[contexts[b]], [choices[b][k]]])
            for name, value in pair.items():
                np.testing.assert_array_equal(inputs[name][b, k], value.numpy()[0])
    with pytest.raises(ValueError, match="one list of K >= 2 choices per context"):
        choice_inputs(["a"], [["only"]], task_preprocessor)


def test_choice_dataset_batches_and_needs_labels(task_preprocessor):
    examples = [ChoiceExample("the movie", ("good", "bad"), i % 2, f"ex{i}") for i in range(5)]
    batches = list(choice_dataset(examples, task_preprocessor, 2))
    assert [len(labels) for _, labels in batches] == [2, 2, 1]
    # [CLS] the movie [SEP] good [SEP]: each batch cut to its longest pair.
    assert batches[0][0]["input_word_ids"].shape == (2, 2, 6)
    with pytest.raises(ValueError, match="ex9 has no label"):
        choice_dataset([ChoiceExample("c", ("a", "b"), None, "ex9")], task_preprocessor, 2)
