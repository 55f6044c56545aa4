"""SQuAD reading, windowing, decoding and scoring (keras_bert_min.text.squad, squad_answers)
against tests/text/reference_squad.py, a transcription of Google's run_squad.py and of SQuAD's
official v1.1 and v2.0 evaluation scripts, on hand-made paragraphs (no SQuAD copy is reachable
here) with long contexts, Unicode and whitespace traps. All ids use bert-base-uncased's vocab.
"""

import copy
import json

import numpy as np
import pytest

from keras_bert_min.text.squad import read_squad, squad_features
from keras_bert_min.text.squad_answers import final_text, squad_predictions, squad_scores
from tests.text import reference_squad as google
from tests.text import reference_tokenization
from tests.text.test_preprocessor import VOCAB, preprocessor_for

LONG = ("The old harbour town grew slowly over the centuries, and its people fished, traded "
        "and built ships of oak and pine along the grey northern coast. ") * 4

PARAGRAPHS = [
    {"context": "The leader was John Smith (1895-1943). He was born in Zürich, not in Japan; "
                "the Japanese electronics industry came later.",
     "qas": [("q-year", "What year was John Smith born?", "1895"),
             ("q-city", "Where was he born?", "Zürich"),
             ("q-japan", "Which country exports electronics?", "Japan", "Japanese")]},
    {"context": LONG + "In 1907 the mayor, Anna Kowalski, opened the first public library "
                "beside the market square. " + LONG + "The library closed in 1999.",
     "qas": [("q-mayor", "Who opened the first public library?", "Anna Kowalski"),
             ("q-closed", "When did the library close?", "1999"),
             ("q-none", "Who built the lighthouse?", None)]},
    {"context": "  Café  au\tlait\ncosts\u202f3\u00a0euros  in  Montréal;  日本語 is "
                "Japanese.  \u200bZero\u200bwidth  and e\u0301 accents. ",
     "qas": [("q-cost", "How much does café au lait cost?", "3\u00a0euros"),
             ("q-jp", "What is Japanese?", "日本語"),
             ("q-cafe", "What costs three euros?", "Café  au\tlait"),
             ("q-zw", "What is zero width?", "\u200bZero\u200bwidth")]},
]


def squad_json(paragraphs=PARAGRAPHS, version_2=True):
    """SQuAD JSON of the hand-made paragraphs; an answer given as (text, in) is the text found
    in the context at the first occurrence of `in`."""
    data = []
    for paragraph in paragraphs:
        context, qas = paragraph["context"], []
        for qa in paragraph["qas"]:
            qas_id, question, answer = qa[:3]
            entry = {"id": qas_id, "question": question}
            if answer is None:
                entry["answers"], entry["is_impossible"] = [], True
            else:
                anchor = qa[3] if len(qa) > 3 else answer
                entry["answers"] = [{"text": answer, "answer_start": context.index(anchor)}]
                entry["is_impossible"] = False
            if not version_2:
                entry.pop("is_impossible")
            qas.append(entry)
        data.append({"title": "handmade", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "v2.0" if version_2 else "1.1", "data": data}


def write_squad(tmp_path, data, name="squad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


class GoogleTokenizer(reference_tokenization.FullTokenizer):
    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    return write_squad(tmp_path_factory.mktemp("squad"), squad_json())


def test_examples_split_and_answer_positions_are_googles(squad_file):
    ours, skipped = read_squad(squad_file, training=True)
    reference = google.read_squad_examples(squad_file, is_training=True,
                                           version_2_with_negative=True)
    # Google skips an answer it cannot find again among the split words: "3\u00a0euros" is
    # one doc token, but str.split() (its answer cleaning) splits the answer at U+00A0.
    assert skipped == ["q-cost"]
    assert [e.qas_id for e in ours] == [r["qas_id"] for r in reference]
    for example, expected in zip(ours, reference):
        assert list(example.doc_tokens) == expected["doc_tokens"]
        assert (example.start_token, example.end_token) == (expected["start_position"],
                                                            expected["end_position"])
        assert example.is_impossible == expected["is_impossible"]
    # Google's whitespace: U+202F splits, U+00A0 does not.
    cafe = next(e for e in read_squad(squad_file)[0] if e.qas_id == "q-cost")
    assert "costs" in cafe.doc_tokens and "3\u00a0euros" in cafe.doc_tokens


@pytest.mark.parametrize("seq_length, doc_stride, max_query_length", [
    (384, 128, 64), (48, 16, 10), (32, 7, 5), (24, 1, 4)])
@pytest.mark.parametrize("lower_case", [True, False])
def test_features_are_googles(squad_file, seq_length, doc_stride, max_query_length, lower_case):
    preprocessor = preprocessor_for(seq_length=seq_length, lower_case=lower_case)
    tokenizer = GoogleTokenizer(VOCAB, do_lower_case=lower_case)
    examples, _ = read_squad(squad_file, training=True)
    reference = google.convert_examples_to_features(
        google.read_squad_examples(squad_file, True, True), tokenizer, seq_length, doc_stride,
        max_query_length, is_training=True)
    features = squad_features(examples, preprocessor, doc_stride, max_query_length,
                              training=True)
    assert len(features.example_index) == len(reference)
    if seq_length == 48:
        assert len(reference) > 2 * len(examples)  # the long contexts take many windows
    for row, expected in enumerate(reference):
        assert features.example_index[row] == expected["example_index"]
        np.testing.assert_array_equal(features.inputs["input_word_ids"][row],
                                      expected["input_ids"])
        np.testing.assert_array_equal(features.inputs["input_mask"][row],
                                      expected["input_mask"])
        np.testing.assert_array_equal(features.inputs["input_type_ids"][row],
                                      expected["segment_ids"])
        orig = {i: int(t) for i, t in enumerate(features.token_to_orig[row]) if t >= 0}
        assert orig == expected["token_to_orig_map"]
        is_max = {i: bool(features.max_context[row, i]) for i in orig}
        assert is_max == expected["token_is_max_context"]
        assert (features.start_positions[row], features.end_positions[row]) == (
            expected["start_position"], expected["end_position"])


def test_improved_span_finds_the_year_inside_the_brackets(squad_file):
    preprocessor = preprocessor_for(seq_length=64)
    examples, _ = read_squad(squad_file, training=True)
    features = squad_features(examples, preprocessor, 32, 16, training=True)
    row = int(np.flatnonzero(features.example_index == 0)[0])  # q-year
    ids = features.inputs["input_word_ids"][row]
    answer = ids[features.start_positions[row]:features.end_positions[row] + 1]
    assert [VOCAB[i] for i in answer] == ["1895"]


def random_logits(features, seed):
    rng = np.random.default_rng(seed)
    shape = features.inputs["input_word_ids"].shape
    # Ties on purpose: logits on a coarse grid, so the orders of equal scores must match too.
    return (np.round(rng.normal(0, 2, shape) * 2) / 2).astype("float32"), \
        (np.round(rng.normal(0, 2, shape) * 2) / 2).astype("float32")


@pytest.mark.parametrize("version_2", [False, True])
@pytest.mark.parametrize("n_best_size, max_answer_length, seed", [(20, 30, 0), (20, 3, 1),
                                                                  (10, 8, 2), (6, 30, 3)])
def test_predictions_are_googles(squad_file, version_2, n_best_size, max_answer_length, seed):
    preprocessor = preprocessor_for(seq_length=48)
    tokenizer = GoogleTokenizer(VOCAB, do_lower_case=True)
    examples, _ = read_squad(squad_file)
    features = squad_features(examples, preprocessor, 16, 10)
    start_logits, end_logits = random_logits(features, seed)
    reference_features = google.convert_examples_to_features(
        google.read_squad_examples(squad_file, False), tokenizer, 48, 16, 10, False)
    expected = google.write_predictions(
        google.read_squad_examples(squad_file, False), reference_features,
        [(s.tolist(), e.tolist()) for s, e in zip(start_logits, end_logits)], n_best_size,
        max_answer_length, True, version_2_with_negative=version_2,
        null_score_diff_threshold=0.5)
    ours = squad_predictions(examples, features, start_logits, end_logits, VOCAB, True,
                             n_best_size, max_answer_length, version_2,
                             null_score_diff_threshold=0.5)
    assert ours[0] == dict(expected[0])
    for qas_id, nbest in expected[1].items():
        assert [e["text"] for e in ours[1][qas_id]] == [e["text"] for e in nbest], qas_id
        np.testing.assert_allclose([e["probability"] for e in ours[1][qas_id]],
                                   [e["probability"] for e in nbest], rtol=1e-9)
    for qas_id, diff in expected[2].items():
        assert ours[2][qas_id] == pytest.approx(diff)


@pytest.mark.parametrize("pred_text, orig_text, lower_case", [
    ("steve smith", "Steve Smith's", True), ("1895", "(1895-1943).", True),
    ("zurich", "Zürich,", True), ("cafe au", "Café au", True), ("日 本", "日本語", True),
    ("japan", "Japanese", True), ("Montréal", "Montréal;", False), ("x", "abc", True),
])
def test_final_text_is_googles(pred_text, orig_text, lower_case):
    words = reference_tokenization.basic_tokenize(orig_text, lower_case)
    assert final_text(pred_text, orig_text, words) == google.get_final_text(
        pred_text, orig_text, lower_case)


def gold_examples(data, tmp_path):
    return read_squad(write_squad(tmp_path, data, "gold.json"))[0]


PREDICTION_TRAPS = {"q-year": "1895", "q-city": "in Zürich", "q-japan": "the Japan!",
                    "q-mayor": "Anna", "q-closed": "", "q-none": "", "q-cost": "3 euros",
                    "q-jp": "日本語 is", "q-cafe": "Café au lait", "q-zw": "Zero width"}


def test_scores_are_the_official_v2_scripts(tmp_path):
    data = squad_json()
    ours = squad_scores(gold_examples(data, tmp_path), PREDICTION_TRAPS)
    expected = google.evaluate_v2(data["data"], PREDICTION_TRAPS)
    assert ours["exact_match"] == pytest.approx(expected["exact"])
    assert ours["f1"] == pytest.approx(expected["f1"])
    assert ours["has_answer_f1"] == pytest.approx(expected["HasAns_f1"])
    assert ours["no_answer_exact_match"] == pytest.approx(expected["NoAns_exact"])
    assert ours["total"] == expected["total"] == 10


def test_scores_are_the_official_v1_script_with_several_gold_answers(tmp_path):
    data = squad_json([p for p in PARAGRAPHS if all(qa[2] for qa in p["qas"])], False)
    qa = data["data"][0]["paragraphs"][0]["qas"][1]  # q-city: a second, longer gold answer
    context = data["data"][0]["paragraphs"][0]["context"]
    qa["answers"].append({"text": "in Zürich", "answer_start": context.index("in Zürich")})
    # v1.1 keeps a gold answer that normalises to nothing: "the" matches "the" exactly.
    year = data["data"][0]["paragraphs"][0]["qas"][0]
    year["answers"].append({"text": "The", "answer_start": context.index("The")})
    predictions = {k: v for k, v in PREDICTION_TRAPS.items() if k in
                   {q["id"] for p in data["data"] for q in p["paragraphs"][0]["qas"]}}
    predictions["q-year"] = "the"
    ours = squad_scores(gold_examples(data, tmp_path), predictions)
    expected = google.evaluate_v1(data["data"], predictions)
    assert ours["exact_match"] == pytest.approx(expected["exact_match"])
    assert ours["f1"] == pytest.approx(expected["f1"])
    assert "has_answer_f1" not in ours
    assert squad_scores(gold_examples(data, tmp_path), {**predictions, "q-year": "the"},
                        version_2=True)["exact_match"] < ours["exact_match"]  # v2.0 drops "The"
    with pytest.raises(ValueError, match=r"No prediction for 6 questions, e.g. \['q-city'"):
        squad_scores(gold_examples(data, tmp_path), {"q-year": "1895"})


def test_a_question_whose_n_best_is_only_the_null_answer_predicts_nothing(squad_file):
    """Google's write_predictions fails here (best_non_null_entry is None): every span of
    the n-best is invalid. Ours answers "" with a null score difference of +inf."""
    preprocessor = preprocessor_for(seq_length=48)
    examples, _ = read_squad(squad_file)
    features = squad_features(examples, preprocessor, 16, 10)
    start_logits = np.zeros(features.inputs["input_word_ids"].shape, "float32")
    end_logits = start_logits.copy()
    start_logits[:, 1] = end_logits[:, 1] = 9.0  # the question's first piece: never valid
    predictions, nbest, diffs = squad_predictions(examples, features, start_logits, end_logits,
                                                  VOCAB, True, n_best_size=1, version_2=True)
    assert set(predictions.values()) == {""}
    assert all(diff == float("inf") for diff in diffs.values())
    assert all(entries[0]["text"] == "" for entries in nbest.values())


# --- bad files --------------------------------------------------------------------------------

def test_an_answer_whose_offset_misses_its_text_is_named(tmp_path):
    data = squad_json()
    data["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1
    with pytest.raises(ValueError, match=r"question 'q-city': the answer 'Zürich' at "
                                         r"answer_start \d+ does not match the context"):
        read_squad(write_squad(tmp_path, data))


def test_an_empty_context_is_named(tmp_path):
    data = squad_json()
    data["data"][1]["paragraphs"][0]["context"] = "   "
    with pytest.raises(ValueError, match="paragraph of question 'q-mayor' has an empty context"):
        read_squad(write_squad(tmp_path, data))


def test_training_needs_one_answer_and_unique_ids(tmp_path):
    data = squad_json()
    qa = data["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"].append(copy.deepcopy(qa["answers"][0]))
    path = write_squad(tmp_path, data)
    assert len(read_squad(path)[0]) == 10  # dev files have several answers
    with pytest.raises(ValueError, match="'q-year': for training, each question needs exactly 1"):
        read_squad(path, training=True)
    data = squad_json()
    data["data"][1]["paragraphs"][0]["qas"][0]["id"] = "q-year"
    with pytest.raises(ValueError, match="question id 'q-year' occurs twice"):
        read_squad(write_squad(tmp_path, data))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not SQuAD JSON"):
        read_squad(tmp_path / "bad.json")


def test_training_features_need_training_examples_and_logits_need_their_shape(squad_file):
    examples, _ = read_squad(squad_file)  # not read for training: no answer positions
    with pytest.raises(ValueError, match=r"'q-year' has no answer position: read the file with "
                                         r"read_squad\(path, training=True\)"):
        squad_features(examples, preprocessor_for(seq_length=48), 16, 10, training=True)
    features = squad_features(examples, preprocessor_for(seq_length=48), 16, 10)
    short = np.zeros((len(features.example_index), 40), "float32")
    with pytest.raises(ValueError, match=r"must be \[windows, seq_length\] = \(\d+, 48\)"):
        squad_predictions(examples, features, short, short, VOCAB, True)


def test_windows_need_room_for_the_context(squad_file):
    examples, _ = read_squad(squad_file)
    with pytest.raises(ValueError, match="leaves no room for the context"):
        squad_features(examples, preprocessor_for(seq_length=16), 8, max_query_length=13)
