"""Tests for keras_bert_min.text.conll: readers on hand-made files, word-piece windows by hand,
and conlleval's counts from golden outputs of the Perl script (tests/text/golden/)."""

import json
import os

import pytest

from keras_bert_min.text.conll import (IGNORE, conlleval, read_conll, read_tagged_jsonl,
                                       word_piece_windows)

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "conlleval.json")

# CoNLL-2003's layout (word, POS, chunk, NER), a -DOCSTART- line, blank lines, \r\n endings.
CONLL = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
         "call NN I-NP O\n. . O O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\n")


def test_read_conll_takes_the_chosen_column_and_skips_docstart(tmp_path):
    path = tmp_path / "eng.train"
    path.write_bytes(CONLL.replace("\n", "\r\n").encode("utf-8"))
    sentences = read_conll(str(path))
    assert [s.words for s in sentences] == [("EU", "rejects", "German", "call", "."),
                                            ("Peter", "Blackburn")]
    assert sentences[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert sentences[1].source == f"{path}:9"
    assert read_conll(str(path), tag_column=1)[1].tags == ("NNP", "NNP")


def test_read_conll_names_the_line_without_a_tag_column(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.conll:2: the line has one column"):
        read_conll(str(path))
    with pytest.raises(ValueError, match=r"bad.conll:1: the line has 2 column\(s\), no tag "
                                         r"column 3; pass the --tag_column"):
        read_conll(str(path), tag_column=3)
    latin1 = tmp_path / "latin1.conll"
    latin1.write_bytes("Caf\u00e9 O\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.conll is not UTF-8"):
        read_conll(str(latin1))


def test_read_tagged_jsonl_checks_lengths_by_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}\n\n'
                    '{"tokens": ["Peter"], "tags": ["B-PER", "I-PER"]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:3: 1 word\(s\) but 2 tag\(s\)"):
        read_tagged_jsonl(str(path))
    path.write_text('{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}\n', encoding="utf-8")
    assert read_tagged_jsonl(str(path))[0].tags == ("B-ORG", "O")


def test_windows_label_first_pieces_and_split_at_words():
    # "Blackburn" is 3 pieces; windows of 4 pieces never cut a word and lose none.
    pieces = [[10], [11, 12, 13], [14], [15, 16]]
    windows = word_piece_windows(pieces, [1, 2, 0, 3], max_pieces=4)
    assert windows == [([10, 11, 12, 13], [1, 2, IGNORE, IGNORE], [0, 1, -1, -1]),
                       ([14, 15, 16], [0, 3, IGNORE], [2, 3, -1])]
    with pytest.raises(ValueError, match="Word 1 has 3 word pieces, more than the 2"):
        word_piece_windows(pieces, [1, 2, 0, 3], max_pieces=2)
    with pytest.raises(ValueError, match="Word 0 has no word pieces"):
        word_piece_windows([[]], [0], max_pieces=2)


def test_conlleval_counts_as_the_perl_script():
    with open(GOLDEN, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert {c["scheme"] for c in cases} == {"iob1", "iob2", "iobes"}
    for case in cases:
        scores = conlleval(case["gold"], case["predicted"], case["scheme"])
        reference = case["conlleval"]
        for name in ("tokens", "gold_chunks", "predicted_chunks", "correct_chunks"):
            assert scores[name] == reference[name], (case, name)
        assert scores["accuracy"] == pytest.approx(reference["correct_tags"]
                                                   / reference["tokens"])
        assert {k: {n: v[n] for n in ("gold_chunks", "predicted_chunks", "correct_chunks")}
                for k, v in scores["per_type"].items()} == reference["per_type"], case


def test_conlleval_rates_by_hand():
    # Gold: ORG, MISC, PER (3 chunks); predicted: ORG, MISC, PER cut short + a LOC. Correct 2.
    gold = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    predicted = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "B-LOC"]]
    scores = conlleval(gold, predicted)
    assert (scores["correct_chunks"], scores["gold_chunks"], scores["predicted_chunks"]) == (2, 3, 4)
    assert scores["precision"] == 0.5 and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["accuracy"] == 5 / 6
    assert scores["per_type"]["LOC"]["precision"] == 0.0
    # IOBES: two single-word PERs next to each other are two chunks.
    assert conlleval([["S-PER", "S-PER"]], [["S-PER", "S-PER"]], "iobes")["correct_chunks"] == 2
    with pytest.raises(ValueError, match="scheme must be one of"):
        conlleval(gold, predicted, "bilou")
    with pytest.raises(ValueError, match="Sentence 1: 2 gold tags but 1 predicted"):
        conlleval(gold, [predicted[0], ["O"]])
