"""Hand-made labelled sets, built in memory: the default data of the task recipes that have no
public data set to fetch (no copy of CoNLL-2003 or SQuAD is reachable from where this package
is developed), and data for their tests. They show that a recipe trains and serves; their
scores are not comparable with published ones.

    ner_sentences(split)   English sentences from templates with PER and LOC names, IOB2
                           tags; the dev and test names never occur in training, so a tagger
                           must read the context
    squad_dataset(split)   SQuAD 2.0 JSON: paragraphs of facts about people, a question per
                           fact, one unanswerable question per paragraph
    choice_examples(split) the same questions as multiple choice among answers of one kind
"""

import random

from keras_bert_min.text.choices import ChoiceExample
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


# --- reading comprehension: SQuAD-style questions and multiple choice ----------------------------

JOBS = ["teacher", "baker", "pilot", "nurse", "carpenter", "lawyer", "farmer", "painter"]
YEARS = [str(year) for year in range(1951, 2001, 7)]
FILLER = ["The streets there are quiet in the early morning .",
          "Most of the houses in the old quarter have red roofs .",
          "A small river runs past the market and the station .",
          "Every summer the town holds a festival with music and food .",
          "The winters are long , and the days are short ."]
# A fact about a person: (sentence, question, answer slot).
FACTS = [("{PER} lives in {LOC} .", "Where does {PER} live ?", "LOC"),
         ("{PER} works as a {JOB} .", "What is the job of {PER} ?", "JOB"),
         ("{PER} was born in {YEAR} .", "When was {PER} born ?", "YEAR"),
         ("{PER} moved to {LOC} last year .", "Who moved to {LOC} last year ?", "PER")]
QA_SPLITS = {"train": (slice(0, 6), 120), "dev": (slice(6, 9), 30), "test": (slice(9, 12), 30)}


def _story(rng, people, places):
    """A paragraph of two facts about each of two or three people, between filler sentences,
    and the facts: [(sentence, question, answer slot, values)]. A place occurs in one fact of
    a paragraph at most, so every question has one answer."""
    facts, sentences = [], []
    free_places = rng.sample(places, len(places))
    for person in rng.sample(people, rng.choice((2, 3))):
        # At most one fact with a place per person: the split's places suffice.
        chosen = rng.sample(FACTS, 2)
        while sum("{LOC}" in fact[0] for fact in chosen) > 1:
            chosen = rng.sample(FACTS, 2)
        for sentence, question, slot in chosen:
            values = {"PER": person, "JOB": rng.choice(JOBS), "YEAR": rng.choice(YEARS),
                      "LOC": free_places.pop() if "{LOC}" in sentence else None}
            facts.append((sentence.format(**values), question.format(**values), slot, values))
    for fact in facts:
        sentences += rng.sample(FILLER, rng.choice((0, 1, 2))) + [fact[0]]
    return " ".join(sentences), facts


def squad_dataset(split, seed=0):
    """One split of the hand-made SQuAD 2.0 set, as the JSON `text.squad.read_squad` reads:
    paragraphs of facts about people (dev and test names never occur in training), a
    question per fact, and per paragraph one question about someone it never mentions
    (`is_impossible`). Some paragraphs are longer than a 128-piece window.

    Example:
    >>> data = squad_dataset("dev")
    >>> data["data"][0]["paragraphs"][0]["qas"][0]["question"]  # doctest: +SKIP
    'Where does Olga Ivanova live ?'
    """
    if split not in QA_SPLITS:
        raise ValueError(f"split must be one of {sorted(QA_SPLITS)}, got {split!r}.")
    names, count = QA_SPLITS[split]
    people, places = PEOPLE[names], PLACES[names]
    rng = random.Random(f"{seed}-squad-{split}")
    paragraphs = []
    for index in range(count):
        context, facts = _story(rng, people, places)
        qas, cursor = [], 0
        for number, (sentence, question, slot, values) in enumerate(facts):
            at = context.index(sentence, cursor)
            cursor = at + len(sentence)
            answer_start = at + sentence.index(values[slot]) if slot != "PER" else at
            qas.append({"id": f"{split}-{index}-{number}", "question": question,
                        "answers": [{"text": values[slot], "answer_start": answer_start}],
                        "is_impossible": False})
        absent = [person for person in people if person not in context]
        if absent:
            qas.append({"id": f"{split}-{index}-none",
                        "question": f"Where does {rng.choice(absent)} live ?", "answers": [],
                        "is_impossible": True})
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "v2.0", "data": [{"title": f"handmade {split}",
                                         "paragraphs": paragraphs}]}


def choice_examples(split, seed=0, num_choices=4):
    """One split of the hand-made multiple-choice set: the answerable questions of
    `squad_dataset(split)`, each with the right answer among `num_choices` answers of the same
    kind (places for a place, drawn from every split's), as `text.choices.ChoiceExample`s
    whose context is the paragraph and the question."""
    pools = {"LOC": PLACES, "PER": PEOPLE, "JOB": JOBS, "YEAR": YEARS}
    kinds = {fact[1].split("{")[0]: fact[2] for fact in FACTS}  # question opening -> slot
    rng = random.Random(f"{seed}-choices-{split}")
    examples = []
    for paragraph in squad_dataset(split, seed)["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            if qa["is_impossible"]:
                continue
            answer = qa["answers"][0]["text"]
            slot = next(kind for opening, kind in kinds.items()
                        if qa["question"].startswith(opening))
            wrong = rng.sample([value for value in pools[slot] if value != answer],
                               num_choices - 1)
            label = rng.randrange(num_choices)
            choices = wrong[:label] + [answer] + wrong[label:]
            examples.append(ChoiceExample(f"{paragraph['context']} {qa['question']}",
                                          tuple(choices), label, f"handmade {qa['id']}"))
    return examples
