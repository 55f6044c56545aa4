"""Text files -> documents of sentences, the input of BERT pretraining.

A document is a list of sentence strings. Pretraining pairs consecutive sentences of one
document as "is next" examples and draws "random next" sentences from other documents
(Google's `create_pretraining_data.py`), so both sentence and document boundaries matter.
Two file layouts are read:

    bert    Google's input format: one sentence per line, a blank line between documents.
    prose   plain text such as a Project Gutenberg book: the Gutenberg header and footer
            are stripped, wrapped lines are joined into paragraphs, paragraphs are split
            into sentences, and the book is cut into documents at chapter headings.

`format="auto"` picks one per file (see `detect_format`). Files must be UTF-8.

One deliberate difference from Google's reader: each file starts a new document. Google's
loop keeps appending to the last document across files, so a file that does not end with
a blank line silently runs into the next one.
"""

import glob
import os
import random
import re

from keras_bert_min._checks import check_fraction, check_int

FORMATS = ("auto", "bert", "prose")

# A book without headings (or a very long chapter) is cut into documents of this many
# sentences, so that "random next" sentences can still come from elsewhere.
DEFAULT_MAX_DOCUMENT_SENTENCES = 100

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


def _bert_documents(text):
    """Google's reader: stripped lines are sentences, blank lines end documents."""
    documents = [[]]
    for line in text.split("\n"):
        line = line.strip()
        if line:
            documents[-1].append(line)
        else:
            documents.append([])
    return [d for d in documents if d]


def _prose_documents(text, max_document_sentences):
    """Paragraphs -> sentences -> sections between headings -> documents of bounded size."""
    sections = [[]]
    for paragraph in re.split(r"\n[ \t\f\v]*\n", strip_gutenberg_boilerplate(text)):
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        if not lines:
            continue
        # A heading right after another one ("CHAPTER 37", "Sunset.", "THE CABIN.") belongs
        # to the same chapter, so a section must have a few sentences before it can end.
        if _is_heading(lines):
            if len(sections[-1]) >= _MIN_SECTION_SENTENCES:
                sections.append([])
            continue
        sections[-1].extend(split_sentences(" ".join(lines)))
    return [chunk for section in sections if section
            for chunk in _even_chunks(section, max_document_sentences)]


def _even_chunks(sentences, max_size):
    """Cuts a list into the fewest chunks of at most `max_size`, of near-equal sizes (so no
    tiny remainder becomes a document of its own)."""
    num_chunks = -(-len(sentences) // max_size)
    bounds = [round(i * len(sentences) / num_chunks) for i in range(num_chunks + 1)]
    return [sentences[start:end] for start, end in zip(bounds, bounds[1:])]


def _read_utf8(path):
    with open(path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise ValueError(f"Corpus file {path!r} is empty; remove it from the inputs.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"Corpus file {path!r} is not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"cannot be decoded. Convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > "
            f"{path}.utf8` if it is ISO-8859-1.") from None
    # Google's reader (GFile.readline) splits on "\n" only and strips each line, so "\r\n" is a
    # line end and a lone "\r" stays inside its line, where the tokenizer reads it as a space.
    return text.replace("\r\n", "\n")


def read_file_documents(path, format="auto",
                        max_document_sentences=DEFAULT_MAX_DOCUMENT_SENTENCES):
    """Reads one UTF-8 text file into documents of sentences (see `read_documents`)."""
    text = _read_utf8(path)
    if format == "auto":
        format = detect_format(text)
    if format == "bert":
        documents = _bert_documents(text)
    else:
        documents = _prose_documents(text, max_document_sentences)
    if not documents:
        raise ValueError(
            f"Corpus file {path!r} has no sentences (read as {format!r}); check that it is "
            "the file you meant, or remove it from the inputs.")
    return documents


# --- many files ------------------------------------------------------------------------------

def expand_paths(paths_or_globs):
    """Expands file paths, glob patterns and directories into a sorted list of files.

    A directory stands for all `*.txt` files directly inside it. Each glob's matches are
    sorted, and the inputs keep their order, so the result is deterministic.

    Args:
        paths_or_globs: a path or pattern, or a list of them.

    Example:
    >>> expand_paths(["data/wiki_*.txt", "data/books"])  # doctest: +SKIP
    ['data/wiki_00.txt', 'data/wiki_01.txt', 'data/books/alice.txt']
    """
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    files = []
    for pattern in map(os.fspath, paths_or_globs):
        if os.path.isdir(pattern):
            matches = sorted(glob.glob(os.path.join(glob.escape(pattern), "*.txt")))
            if not matches:
                raise FileNotFoundError(
                    f"Directory {pattern!r} has no *.txt files; pass the text files or a glob "
                    "such as 'dir/*.text' instead.")
        elif glob.has_magic(pattern):
            matches = sorted(m for m in glob.glob(pattern) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(
                    f"No file matches the pattern {pattern!r}; check the path and the "
                    f"wildcards (the current directory is {os.getcwd()!r}).")
        elif os.path.isfile(pattern):
            matches = [pattern]
        else:
            raise FileNotFoundError(
                f"Corpus file {pattern!r} does not exist; check the path (relative paths start "
                f"at {os.getcwd()!r}).")
        files.extend(matches)
    return files


def read_documents(paths_or_globs, format="auto",
                   max_document_sentences=DEFAULT_MAX_DOCUMENT_SENTENCES):
    """Reads text files into documents, each a list of sentence strings.

    Args:
        paths_or_globs: a file, glob pattern or directory (all its `*.txt`), or a list of
            them; expanded by `expand_paths`.
        format: "bert" (one sentence per line, blank line between documents, as Google's
            `create_pretraining_data.py` reads), "prose" (plain text such as a Gutenberg
            book) or "auto" (decided per file by `detect_format`).
        max_document_sentences: prose only; a chapter longer than this (or a whole book
            without chapter headings) is cut into the fewest documents of at most this
            many sentences, of near-equal sizes.

    Returns:
        A list of documents in file order; each file starts a new document.

    Raises:
        FileNotFoundError: a path or directory is missing, or a glob matches nothing.
        ValueError: a file is empty, has no sentences or is not UTF-8, or there are no inputs.

    Example:
    >>> documents = read_documents("corpus/*.txt")  # doctest: +SKIP
    >>> documents[0][:2]  # doctest: +SKIP
    ['The rain had only ceased ...', 'Indeed, it was recorded ...']
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    check_int("max_document_sentences", max_document_sentences)
    documents = []
    for path in expand_paths(paths_or_globs):
        documents.extend(read_file_documents(path, format, max_document_sentences))
    if not documents:
        raise ValueError(
            f"The corpus {paths_or_globs!r} is empty: no input files were given. Pass text "
            "files, glob patterns or directories.")
    return documents


def split_documents(documents, holdout_fraction, seed):
    """Splits documents into a training and a held-out set, deterministically.

    Whole documents are held out, so no held-out sentence has its neighbours in training.
    The same documents, fraction and seed always give the same split; both parts keep the
    input order.

    Args:
        documents: a list of documents.
        holdout_fraction: in [0, 1); the held-out share, rounded, and at least one document
            when positive (and at least one document is left for training).
        seed: an int for the shuffle that picks the held-out documents.

    Returns:
        `(train, heldout)`, two lists of documents.

    Example:
    >>> train, heldout = split_documents([["a."], ["b."], ["c."], ["d."]], 0.25, seed=0)
    >>> len(train), len(heldout)
    (3, 1)
    """
    check_fraction("holdout_fraction", holdout_fraction, high_open=True)
    count = len(documents)
    num_heldout = round(holdout_fraction * count)
    if holdout_fraction > 0:
        num_heldout = max(1, num_heldout)
    if num_heldout and num_heldout >= count:
        raise ValueError(
            f"Cannot hold out {holdout_fraction:.0%} of {count} document(s) and still train on "
            "one; use more documents or holdout_fraction=0.")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    heldout_indices = set(order[:num_heldout])
    train = [d for i, d in enumerate(documents) if i not in heldout_indices]
    heldout = [d for i, d in enumerate(documents) if i in heldout_indices]
    return train, heldout
