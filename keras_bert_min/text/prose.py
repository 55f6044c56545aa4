"""The rules that turn prose into sentences and documents: sentence boundaries, Project
Gutenberg's licence header and footer, chapter headings, and the guess between Google's
one-sentence-per-line layout and prose. `text.corpus` applies them to files, streamed.
"""

import re

# --- sentences ---------------------------------------------------------------------------

# Sentence-final punctuation, any closing quotes or brackets after it, then whitespace and
# the capital letter (possibly after opening quotes) that starts the next sentence. A
# lowercase letter after "!" or "?" ('"Oh!" said Alice') continues the sentence.
_BOUNDARY = re.compile(r"""[.!?]+["'\u201d\u2019)\]]*(?=\s+["'\u201c\u2018(\[]*[A-Z])""")

# Words that end with a period without ending a sentence ("Mr. Darcy", "St. Paul").
_ABBREVIATIONS = frozenset("""
    mr mrs ms messrs mme mlle dr st jr sr prof rev hon gen col capt lt sgt maj gov sen rep
    mt ft vs viz cf esq e.g i.e
""".split())
# Initials ("G. K. Chesterton") and dotted initialisms ("U.S.", "A.M.").
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
_OPENING_PUNCTUATION = "\"'\u201c\u2018(["


def split_sentences(paragraph):
    """Splits one paragraph of prose into sentences with a punctuation rule.

    A sentence ends at ".", "!" or "?" (and any closing quotes or brackets) followed by
    whitespace and a capital letter, except after a known abbreviation (Mr., Mrs., Dr.,
    St., ...) or an initial (G. K. Chesterton). Whitespace, including line breaks, is
    collapsed to single spaces.

    Args:
        paragraph: a string.

    Returns:
        A list of sentence strings, without empty ones.

    Example:
    >>> split_sentences('Mr. Brown left.  "Why?" asked Dr. Watson. He sighed.')
    ['Mr. Brown left.', '"Why?" asked Dr. Watson.', 'He sighed.']
    """
    text = " ".join(paragraph.split())
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        if match.group() == "." and _is_abbreviation(text, start, match.start()):
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _is_abbreviation(text, sentence_start, period):
    """Whether the word that ends just before `text[period] == "."` is an abbreviation."""
    word_start = text.rfind(" ", sentence_start, period) + 1
    word = text[word_start:period].lstrip(_OPENING_PUNCTUATION)
    return word.lower() in _ABBREVIATIONS or bool(_INITIALS.fullmatch(word))


# --- Project Gutenberg boilerplate ------------------------------------------------------

# The licence header ends, and the footer begins, at lines spelled many ways over the
# years: "*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "***START OF THE PROJECT
# GUTENBERG EBOOK", "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*", "*** END OF THE
# PROJECT GUTENBERG EBOOK", "End of the Project Gutenberg EBook of X", "End of Project
# Gutenberg's Etext of X".
_GUTENBERG_START = re.compile(
    r"^\s*(?:\*+\s*START OF (?:THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT).*$",
    re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\s*(?:\*+\s*END OF (?:THE|THIS) PROJECT GUTENBERG"
    r"|END OF (?:THE )?PROJECT GUTENBERG(?:'S)? (?:E-?BOOK|E-?TEXT|WORK)).*$",
    re.IGNORECASE | re.MULTILINE)


def strip_gutenberg_boilerplate(text):
    """Removes a Project Gutenberg licence header and footer, if present.

    Everything up to and including the last "START OF ... PROJECT GUTENBERG" (or "*END*THE
    SMALL PRINT") line goes, and everything from the first "END OF ... PROJECT GUTENBERG"
    line on. Text without those lines is returned unchanged.

    Args:
        text: the whole book as one string with "\\n" line endings.

    Example:
    >>> strip_gutenberg_boilerplate("licence\\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\\n"
    ...                             "Body.\\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\\nlicence")
    '\\nBody.\\n'
    """
    starts = list(_GUTENBERG_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text


# --- chapters ------------------------------------------------------------------------------

# A well-formed Roman numeral, so that words such as "mild" or "did" are not numbers. The
# lookbehind makes it match at least one character.
_ROMAN = r"M{0,4}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})(?<=[MDCLXVImdclxvi])"
_NUMBER = (rf"(?:{_ROMAN}|\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
           r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last"
           r"|primus|secundus|tertius|quartus|quintus)")
# A heading is a paragraph of one short line that is one of:
#   a keyword and a number   "CHAPTER I", "Chapter 12. The Ball", "Book IV", "Actus Primus."
#   a Roman numeral alone or before a title after a period   "IV", "I. The Absence of Mr Glass"
#   a title in capitals      "THE LITTLE YELLOW TULIP", "ETYMOLOGY."
#   an NLTK title line in brackets   "[Emma by Jane Austen 1816]"
_HEADING = re.compile(
    rf"(?i:(?:chapter|book|part|volume|act|actus|scene|stave|canto|section)\s+{_NUMBER}\b.*)"
    rf"|{_ROMAN}(?:\.\s+.+|\.?)"
    r"|[^a-z]*[A-Z][^a-z]*[A-Z][^a-z]*"
    r"|\[.*\]")
_MAX_HEADING_LENGTH = 80
_MIN_SECTION_SENTENCES = 3


def _is_heading(paragraph_lines):
    if len(paragraph_lines) != 1 or len(paragraph_lines[0]) > _MAX_HEADING_LENGTH:
        return False
    return bool(_HEADING.fullmatch(paragraph_lines[0]))


# --- one file --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"""[.!?]["'\u201d\u2019)\]]*$""")


def detect_format(text):
    """Guesses whether `text` is in Google's "bert" layout or is "prose".

    The rule: a file with a Project Gutenberg header or footer is prose. Otherwise it is
    "bert" when at least half of its non-blank lines are each exactly one sentence (they end
    with sentence punctuation and `split_sentences` finds no boundary inside them). Prose
    wrapped at a fixed width ends few lines with a period; a file of whole paragraphs per
    line has many sentences per line.

    Args:
        text: the file's contents with "\\n" line endings.

    Example:
    >>> detect_format("It rained.\\nThe dog slept.\\n\\nA new story starts here.\\n")
    'bert'
    """
    if _GUTENBERG_START.search(text) or _GUTENBERG_END.search(text):
        return "prose"
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return "bert"
    one_sentence = sum(1 for line in lines
                       if _SENTENCE_END.search(line) and len(split_sentences(line)) == 1)
    return "bert" if 2 * one_sentence >= len(lines) else "prose"


class SentenceStream:
    """`split_sentences` over a paragraph that arrives in pieces, so that a paragraph of any
    length (a book on one line) is split in bounded memory, with exactly the sentences that
    `split_sentences` gives on the whole paragraph.

    Only the unfinished sentence is kept between pieces. A boundary is reported only once the
    text after it shows the next sentence's capital letter, so a piece that ends inside the
    punctuation or the whitespace of a boundary changes nothing. Pieces must be cut at
    whitespace (a word cut in two would be read as two words).

    Example:
    >>> stream = SentenceStream()
    >>> stream.feed("Mr. Brown left. He")
    ['Mr. Brown left.']
    >>> stream.feed("sighed.  Dr.") + stream.feed("Watson came.")
    ['He sighed.']
    >>> stream.close()
    ['Dr. Watson came.']
    """

    def __init__(self):
        self._text = ""  # the unfinished sentence, whitespace collapsed as split_sentences does
        self._scan = 0  # where the boundary search resumes (after a skipped abbreviation)

    def feed(self, piece):
        """Adds a piece of the paragraph; returns the sentences it completed."""
        words = " ".join(piece.split())
        if not words:
            return []
        text = f"{self._text} {words}" if self._text else words
        sentences, start = [], 0
        for match in _BOUNDARY.finditer(text, self._scan):
            self._scan = match.end()
            if match.group() == "." and _is_abbreviation(text, start, match.start()):
                continue
            sentences.append(text[start:match.end()].strip())
            start = match.end()
        self._text, self._scan = text[start:], self._scan - start
        return [s for s in sentences if s]

    def close(self):
        """The last sentence of the paragraph (if any); the stream is then empty again."""
        last, self._text, self._scan = self._text.strip(), "", 0
        return [last] if last else []
