"""Hand-made labelled sets, built in memory: the default data of the task recipes that have no
public data set to fetch (no copy of CoNLL-2003 or SQuAD is reachable from where this package
is developed), and data for their tests. They show that a recipe trains and serves; their
scores are not comparable with published ones.

    ner_sentences(split)   English sentences from templates with PER and LOC names, IOB2
                           tags; the dev and test names never occur in training, so a tagger
                           must read the context
"""

import random

from keras_bert_min.text.conll import TaggedSentence

PEOPLE = ["John Smith", "Maria Garcia", "Wei Chen", "Anna Kowalski", "David Miller",
          "Fatima Khan", "Pierre Dubois", "Olga Ivanova", "Kenji Sato", "Laura Rossi",
          "Ahmed Hassan", "Emma Johansson"]
# Each split has one- and two-word places, so "I-LOC" is learned and tested.
PLACES = ["Paris", "New York", "Buenos Aires", "Tokyo", "Los Angeles", "Hong Kong",
          "Cairo", "San Diego", "Lima", "Oslo", "Cape Town", "Nairobi"]
TEMPLATES = ["{PER} lives in {LOC} .", "{PER} flew to {LOC} on Monday .",
             "Yesterday {PER} met {PER} in {LOC} .", "The mayor of {LOC} thanked {PER} .",
             "{PER} said the weather in {LOC} was cold .", "We drove from {LOC} to {LOC} .",
             "In {LOC} , {PER} opened a small bakery .", "{PER} has never seen {LOC} ."]
# Which names each split draws from: training never sees a dev or test name.
NER_SPLITS = {"train": (slice(0, 6), 160), "dev": (slice(6, 9), 40), "test": (slice(9, 12), 40)}


def ner_sentences(split, seed=0):
    """The sentences of one split ("train", "dev" or "test") of the hand-made NER set.

    Example:
    >>> ner_sentences("train")[0].tags  # doctest: +SKIP
    ('B-PER', 'I-PER', 'O', 'O', 'B-LOC', 'O')
    """
    if split not in NER_SPLITS:
        raise ValueError(f"split must be one of {sorted(NER_SPLITS)}, got {split!r}.")
    names, count = NER_SPLITS[split]
    people, places = PEOPLE[names], PLACES[names]
    rng = random.Random(f"{seed}-{split}")
    sentences = []
    for index in range(count):
        words, tags = [], []
        for token in rng.choice(TEMPLATES).split():
            if token in ("{PER}", "{LOC}"):
                kind = token[1:-1]
                name = rng.choice(people if kind == "PER" else places).split()
                words += name
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
            else:
                words.append(token)
                tags.append("O")
        sentences.append(TaggedSentence(tuple(words), tuple(tags), f"handmade {split} {index}"))
    return sentences
