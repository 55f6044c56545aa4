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

Files are streamed (`iter_documents`): read in blocks, each line cut into pieces if it is
very long, each paragraph split into sentences as it arrives (`prose.SentenceStream`), so that
memory stays bounded whatever the size of the corpus, of a file or of a line; the documents
are exactly those of reading each file whole (tests/text/reference_corpus.py is that reader).
Two limits keep it so: a chapter of more than 100,000 sentences is cut into documents a block
of 100,000 at a time, and in Google's layout a line is kept whole (it is one sentence).
The prose rules (sentences, Gutenberg boilerplate, headings, the layout guess) are in
`text.prose`.

One deliberate difference from Google's reader: each file starts a new document. Google's
loop keeps appending to the last document across files, so a file that does not end with
a blank line silently runs into the next one.
"""

import codecs
import glob
import os
import random
import re

from keras_bert_min._checks import check_fraction, check_int
from keras_bert_min.text.prose import (_GUTENBERG_END, _GUTENBERG_START, _MIN_SECTION_SENTENCES,
                                       _SENTENCE_END, SentenceStream, _is_heading,
                                       split_sentences)

FORMATS = ("auto", "bert", "prose")

# A book without headings (or a very long chapter) is cut into documents of this many
# sentences, so that "random next" sentences can still come from elsewhere.
DEFAULT_MAX_DOCUMENT_SENTENCES = 100

# --- one file, streamed ------------------------------------------------------------------------

# A file is read in blocks of this many bytes, and a line longer than this many characters is
# passed on in pieces cut at whitespace, so that memory does not grow with the file or with
# its longest line (a book on one line). Google's format keeps a line whole: it is a sentence.
READ_BLOCK_BYTES = 1 << 20
MAX_PIECE_CHARS = 1 << 20

# A chapter (or a book without headings) longer than this many documents' worth of sentences
# is cut into documents a block at a time, so memory does not grow with it either.
MAX_SECTION_DOCUMENTS = 1000

_WHITESPACE_BYTES = b" \t\n\r\x0b\x0c"
_PARAGRAPH_BREAK = re.compile(r"[ \t\f\v]*")  # a line of only these ends a paragraph


def _line_pieces(path):
    """`(piece, ends_line)` for every line of a UTF-8 file, streamed.

    Lines end at "\n" only ("\r\n" counts as "\n", a lone "\r" stays in its line, as Google's
    `GFile.readline` reads); a line longer than `max_piece_chars` comes in several pieces, cut
    after a whitespace character where there is one, whose concatenation is the line. An
    empty or all-whitespace file and one that is not UTF-8 are errors naming the file."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    block_bytes, max_piece_chars = READ_BLOCK_BYTES, MAX_PIECE_CHARS  # read now: tests lower them
    carry, offset, blank = "", 0, True
    with open(path, "rb") as f:
        while True:
            block = f.read(block_bytes)
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                at = offset - len(pending) + e.start
                raise ValueError(
                    f"Corpus file {path!r} is not UTF-8: byte 0x{e.object[e.start]:02x} at offset "
                    f"{at} cannot be decoded. Convert it first, e.g. `iconv -f latin1 -t utf-8 "
                    f"{path} > {path}.utf8` if it is ISO-8859-1.") from None
            offset += len(block)
            blank = blank and not block.strip(_WHITESPACE_BYTES)
            lines = (carry + text).split("\n")
            carry = lines.pop() if block else None
            for line in lines:
                yield (line[:-1] if line.endswith("\r") else line), True
            if not block:
                break
            while len(carry) > max_piece_chars:
                cut = max(carry.rfind(" ", 0, max_piece_chars),
                          carry.rfind("\t", 0, max_piece_chars))
                cut = cut + 1 if cut > 0 else max_piece_chars  # no whitespace: cut anyway
                yield carry[:cut], False
                carry = carry[cut:]
    if blank:
        raise ValueError(f"Corpus file {path!r} is empty; remove it from the inputs.")


def _lines(path):
    """Whole lines (pieces of a long line joined: Google's format keeps a line whole)."""
    parts = []
    for piece, ends_line in _line_pieces(path):
        parts.append(piece)
        if ends_line:
            yield "".join(parts)
            parts = []


def survey_file(path):
    """One streamed pass over a file: `(format, first_line, end_line)`, the layout
    `detect_format` would give on the whole text, and for prose the line numbers between which
    the text lies once the Project Gutenberg header (up to the last "START OF ..." line) and
    footer (from the first "END OF ..." line after it) are stripped (None: no such line)."""
    start_line = end_line = None
    lines = one_sentence = 0
    for number, (piece, ends_line) in enumerate(_whole_or_first_pieces(path)):
        if _GUTENBERG_START.match(piece):
            start_line, end_line = number, None
        elif end_line is None and _GUTENBERG_END.match(piece):
            end_line = number
        stripped = piece.strip()
        if stripped:
            lines += 1  # a line too long for one piece is prose, not one sentence
            one_sentence += bool(ends_line and _SENTENCE_END.search(stripped)
                                 and len(split_sentences(stripped)) == 1)
    marked = start_line is not None or end_line is not None
    if marked or (lines and 2 * one_sentence < lines):
        return "prose", (0 if start_line is None else start_line + 1), end_line
    return "bert", 0, None


def _whole_or_first_pieces(path):
    """`(line, True)` for a line read whole, `(first piece, False)` for a long line."""
    first = None
    for piece, ends_line in _line_pieces(path):
        if first is None:
            first = (piece, ends_line)
        if ends_line:
            yield first
            first = None


def _bert_documents(path):
    """Google's reader: stripped lines are sentences, blank lines end documents."""
    document = []
    for line in _lines(path):
        line = line.strip()
        if line:
            document.append(line)
        elif document:
            yield document
            document = []
    if document:
        yield document


def _prose_documents(path, first_line, end_line, max_document_sentences):
    """Paragraphs -> sentences -> sections between headings -> documents of bounded size.

    A paragraph's first line is held back until the paragraph shows it is not a heading (a
    second line, or a line too long for one); from then on its lines flow into the sentence
    splitter, so no paragraph is ever held whole."""
    section, sentences = [], SentenceStream()
    held, flowing = None, False  # the paragraph's first line; whether it is known not a heading
    section_cap = max_document_sentences * MAX_SECTION_DOCUMENTS

    def end_paragraph():
        nonlocal section, held, flowing
        if held is not None and _is_heading([held]):
            # A heading right after another one ("CHAPTER 37", "Sunset.", "THE CABIN.") belongs
            # to the same chapter, so a section must have a few sentences before it can end.
            if len(section) >= _MIN_SECTION_SENTENCES:
                yield from _even_chunks(section, max_document_sentences)
                section = []
        else:
            if held is not None:
                section.extend(sentences.feed(held))
            section.extend(sentences.close())
        held, flowing = None, False

    number, at_line_start = 0, True
    for piece, ends_line in _line_pieces(path):
        if first_line <= number and (end_line is None or number < end_line):
            whole_line = at_line_start and ends_line
            if whole_line and _PARAGRAPH_BREAK.fullmatch(piece):
                yield from end_paragraph()
            elif piece.strip():
                if flowing:
                    section.extend(sentences.feed(piece))
                elif held is None and whole_line:
                    held = piece.strip()
                else:
                    flowing = True
                    if held is not None:
                        section.extend(sentences.feed(held))
                        held = None
                    section.extend(sentences.feed(piece))
            if len(section) >= section_cap + max_document_sentences:
                yield from _even_chunks(section[:section_cap], max_document_sentences)
                del section[:section_cap]
        at_line_start = ends_line
        number += ends_line
    yield from end_paragraph()
    if section:
        yield from _even_chunks(section, max_document_sentences)


def _even_chunks(sentences, max_size):
    """Cuts a list into the fewest chunks of at most `max_size`, of near-equal sizes (so no
    tiny remainder becomes a document of its own)."""
    num_chunks = -(-len(sentences) // max_size)
    bounds = [round(i * len(sentences) / num_chunks) for i in range(num_chunks + 1)]
    return [sentences[start:end] for start, end in zip(bounds, bounds[1:])]


def iter_file_documents(path, format="auto",
                        max_document_sentences=DEFAULT_MAX_DOCUMENT_SENTENCES):
    """The documents of one UTF-8 text file, streamed: memory stays bounded whatever the size
    of the file or of its lines (see `read_documents` for the formats)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    detected, first_line, end_line = survey_file(path)  # also checks UTF-8 and emptiness
    format = detected if format == "auto" else format
    if format == "bert":
        documents = _bert_documents(path)
    else:  # (a file detected as "bert" has no Gutenberg lines: prose forced reads it all)
        documents = _prose_documents(path, first_line, end_line, max_document_sentences)
    empty = True
    for document in documents:
        empty = False
        yield document
    if empty:
        raise ValueError(
            f"Corpus file {path!r} has no sentences (read as {format!r}); check that it is "
            "the file you meant, or remove it from the inputs.")


def read_file_documents(path, format="auto",
                        max_document_sentences=DEFAULT_MAX_DOCUMENT_SENTENCES):
    """Reads one UTF-8 text file into a list of documents (see `read_documents`)."""
    return list(iter_file_documents(path, format, max_document_sentences))


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
    return list(iter_documents(paths_or_globs, format, max_document_sentences))


def iter_documents(paths_or_globs, format="auto",
                   max_document_sentences=DEFAULT_MAX_DOCUMENT_SENTENCES):
    """`read_documents` as a generator: the documents one at a time, each file streamed, so
    that a corpus of any size is read in bounded memory (the size of the largest document).
    Every path is checked before the first document is read."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    check_int("max_document_sentences", max_document_sentences)
    paths = expand_paths(paths_or_globs)
    if not paths:
        raise ValueError(
            f"The corpus {paths_or_globs!r} is empty: no input files were given. Pass text "
            "files, glob patterns or directories.")
    return _documents_of(paths, format, max_document_sentences)


def _documents_of(paths, format, max_document_sentences):
    for path in paths:
        yield from iter_file_documents(path, format, max_document_sentences)


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
