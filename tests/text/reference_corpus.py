"""The whole-file corpus reader that the streamed one in `keras_bert_min.text.corpus` replaced
(commit 81d9c58), kept as the reference the streamed reader must equal document for document:
it reads a file into one string and applies the prose rules to the whole text at once.
"""

import re

from keras_bert_min.text.prose import (_is_heading, _MIN_SECTION_SENTENCES, detect_format,
                                       split_sentences, strip_gutenberg_boilerplate)

DEFAULT_MAX_DOCUMENT_SENTENCES = 100


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
