"""Tests for keras_bert_min.text.conll: readers on hand-made files, word-piece windows by hand,
and conlleval's counts from golden outputs of the Perl script (tests/text/golden/)."""

import json
import os

import numpy as np
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
    counts = (scores["correct_chunks"], scores["gold_chunks"], scores["predicted_chunks"])
    assert counts == (2, 3, 4)
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


# --- from sentences to a fine-tuned tagger and back --------------------------------------------

from keras_bert_min.text.conll import (TaggedSentence, tagger_dataset,  # noqa: E402
                                       tagger_features, word_tags)


def test_features_pad_label_first_pieces_and_map_back(tmp_path):
    from keras_bert_min.text.preprocessor import BertPreprocessor
    from tests.fixtures import SPECIAL_TOKENS, write_vocab_file

    vocab = SPECIAL_TOKENS + ["new", "york", "is", "big", "black", "##burn", "."]
    preprocessor = BertPreprocessor(write_vocab_file(tmp_path / "v.txt", vocab), seq_length=6)
    ids = {token: i for i, token in enumerate(vocab)}
    tags = {"O": 0, "B-LOC": 1, "I-LOC": 2, "B-PER": 3}
    sentences = [TaggedSentence(("New", "York", "is", "big", "."),
                                ("B-LOC", "I-LOC", "O", "O", "O")),
                 TaggedSentence(("Blackburn", "\u200b"), ("B-PER", "O"))]
    features = tagger_features(sentences, preprocessor, tags)
    # Sentence 0 is 5 pieces: windows of 4 ([CLS] and [SEP] take 2 of 6); sentence 1 is
    # "black ##burn" and a word with no pieces, which gets [UNK].
    assert features.inputs["input_word_ids"].tolist() == [
        [ids["[CLS]"], ids["new"], ids["york"], ids["is"], ids["big"], ids["[SEP]"]],
        [ids["[CLS]"], ids["."], ids["[SEP]"], 0, 0, 0],
        [ids["[CLS]"], ids["black"], ids["##burn"], ids["[UNK]"], ids["[SEP]"], 0]]
    assert features.labels.tolist() == [[IGNORE, 1, 2, 0, 0, IGNORE],
                                        [IGNORE, 0, IGNORE, IGNORE, IGNORE, IGNORE],
                                        [IGNORE, 3, IGNORE, 0, IGNORE, IGNORE]]
    assert features.sentence.tolist() == [0, 0, 1]
    names = list(tags)
    assert word_tags(np.where(features.labels >= 0, features.labels, 0), features, names, 2) == [
        list(s.tags) for s in sentences]
    with pytest.raises(ValueError, match=r"sentence 0: tags \['B-MISC'\] are not among"):
        tagger_features([TaggedSentence(("x",), ("B-MISC",))], preprocessor, tags)


def test_minilm_fine_tuned_with_fit_tags_unseen_names(minilm_config):
    import keras

    import keras_bert_min as kbm
    from tests.fixtures import MINILM_DIR

    from keras_bert_min.text import handmade

    keras.utils.set_random_seed(0)
    # Names of the test sentences never occur in training: the tagger must read the context.
    train, test = handmade.ner_sentences("train"), handmade.ner_sentences("test")
    assert not ({w for s in test for w, t in zip(s.words, s.tags) if t != "O"}
                & {w for s in train for w, t in zip(s.words, s.tags) if t != "O"})
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tagger, preprocessor = kbm.from_pretrained(MINILM_DIR, "token_classifier", 12,
                                               num_classes=len(names))
    tag_ids = {name: i for i, name in enumerate(names)}
    features = {name: tagger_features(split, preprocessor, tag_ids)
                for name, split in (("train", train), ("test", test))}
    assert len(features["test"].labels) > len(test)  # seq_length 12 splits some sentences
    tagger.compile(optimizer=kbm.finetuning_optimizer(6 * 10, 2e-4, 0.1))
    tagger.fit(tagger_dataset(features["train"], 16, shuffle_seed=0), epochs=6, verbose=0)
    logits = tagger.predict(features["test"].inputs, batch_size=64, verbose=0)["logits"]
    predicted = word_tags(logits.argmax(-1), features["test"], names, len(test))
    scores = conlleval([s.tags for s in test], predicted)
    assert scores["f1"] >= 0.9, scores
