"""Tests for keras_bert_min.text.corpus: expected documents and sentences are written by hand."""

import subprocess
import sys

import pytest

from keras_bert_min.text.corpus import expand_paths, read_documents, split_documents
from keras_bert_min.text.prose import detect_format, split_sentences, strip_gutenberg_boilerplate


def write(path, text, encoding="utf-8", newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return str(path)


# --- BERT format -----------------------------------------------------------------------

# The opening of Google's sample_text.txt (public domain), byte for byte.
GOOGLE_SAMPLE = (
    "This text is included to make sure Unicode is handled properly: 力加勝北区ᴵᴺᵀᵃছজটডণত\n"
    "Text should be one-sentence-per-line, with empty lines between documents.\n"
    "This sample text is public domain and was randomly selected from Project Guttenberg.\n"
    "\n"
    "\n"
    "The rain had only ceased with the gray streaks of morning at Blazing Star.\n"
    "\"Cass\" Beard had risen early that morning, but not with a view to discovery.\n"
    "A leak in his cabin roof,--quite consistent with his careless, improvident habits,--had "
    "roused him at 4 A. M., with a flooded \"bunk\" and wet blankets.\n"
    "This was nearly opposite.\n"
    "Mr. Cassius crossed the highway, and stopped suddenly.\n"
    "Gold, surely!\n"
    "\n"
    "The fountain of classic wisdom, Hypatia herself.\n"
    "At last they reached the quay at the opposite end of the street;\n"
    "and there burst on Philammon's astonished eyes a vast semicircle of blue sea.\n"
)


def test_google_sample_is_detected_and_read_as_bert_format(tmp_path):
    path = write(tmp_path / "sample_text.txt", GOOGLE_SAMPLE)
    assert detect_format(GOOGLE_SAMPLE) == "bert"
    documents = read_documents(path)
    assert [len(d) for d in documents] == [3, 6, 3]
    assert documents[0][0].endswith("力加勝北区ᴵᴺᵀᵃছজটডণত")
    assert documents[1][5] == "Gold, surely!"
    # Lines are kept whole even where they are not one sentence.
    assert documents[2][1] == "At last they reached the quay at the opposite end of the street;"


def test_bert_format_strips_lines_and_treats_whitespace_lines_as_breaks(tmp_path):
    text = ("\n\n  First doc, one.  \nFirst doc, two.\n \t \n\n\nSecond doc.\n"
            "Still second!\n\nThird.")
    path = write(tmp_path / "c.txt", text, newline="\r\n")
    assert read_documents(path, format="bert") == [
        ["First doc, one.", "First doc, two."],
        ["Second doc.", "Still second!"],
        ["Third."],
    ]


def google_reader_lines(data):
    """create_pretraining_data.py's loop: `reader.readline()` (GFile: lines end at "\n" only),
    `line.strip()`, an empty line ends a document."""
    documents = [[]]
    for line in data.decode("utf-8").split("\n"):
        line = line.strip()
        if not line:
            documents.append([])
        else:
            documents[-1].append(line)
    return [d for d in documents if d]


def test_a_lone_carriage_return_stays_inside_its_line_as_googles_reader_keeps_it(tmp_path):
    data = b"One line\rwith a lone CR.\r\nSecond line.\n\nNext\r\rdocument.\r\n"
    path = tmp_path / "cr.txt"
    path.write_bytes(data)
    assert read_documents(str(path), format="bert") == google_reader_lines(data) == [
        ["One line\rwith a lone CR.", "Second line."], ["Next\r\rdocument."]]


def test_each_file_starts_a_new_document(tmp_path):
    write(tmp_path / "a.txt", "One.\nTwo.")  # no trailing blank line
    write(tmp_path / "b.txt", "Three.\nFour.\n")
    assert read_documents(str(tmp_path), format="bert") == [["One.", "Two."], ["Three.", "Four."]]


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello there.\nBye now.\n")
    assert read_documents(str(path), format="bert") == [["Hello there.", "Bye now."]]


# --- sentences --------------------------------------------------------------------------

@pytest.mark.parametrize("paragraph, expected", [
    ("Mr. and Mrs. Smith went to St. Paul's. They prayed.",
     ["Mr. and Mrs. Smith went to St. Paul's.", "They prayed."]),
    ("G. K. Chesterton wrote it. Dr. Watson agreed!",
     ["G. K. Chesterton wrote it.", "Dr. Watson agreed!"]),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("'Oh!' said Alice. 'Why?'", ["'Oh!' said Alice.", "'Why?'"]),
    ("\u201cCome in.\u201d She did.", ["\u201cCome in.\u201d", "She did."]),
    ("(He left.) She stayed.", ["(He left.)", "She stayed."]),
    ("What? No! Yes.", ["What?", "No!", "Yes."]),
    ("Wait... Are you sure?", ["Wait...", "Are you sure?"]),
    ("It cost 4.50 dollars. He paid.", ["It cost 4.50 dollars.", "He paid."]),
    ("He moved to the U.S. in May. It rained.", ["He moved to the U.S. in May.", "It rained."]),
    ("She was\nhappy.   He was\nnot.", ["She was happy.", "He was not."]),
    ("no final punctuation", ["no final punctuation"]),
    ("   ", []),
])
def test_split_sentences(paragraph, expected):
    assert split_sentences(paragraph) == expected


# --- prose ------------------------------------------------------------------------------

BOOK = """The Project Gutenberg EBook of Test, by Nobody.
This eBook is for the use of anyone anywhere. You may copy it.

*** START OF THIS PROJECT GUTENBERG EBOOK TEST ***

Produced by volunteers.

CHAPTER I

THE BEGINNING.

Mr. Bennet was
among the earliest. He had
always intended to visit Mr. Bingley!

"Is he married?" asked Mrs. Bennet. "Oh, single."

CHAPTER II

Mr. Bennet was
not at home. Nobody came.
They waited. And waited.

*** END OF THIS PROJECT GUTENBERG EBOOK TEST ***

This file should be named test.txt. Donations are welcome.
"""

BOOK_DOCUMENTS = [
    ["Produced by volunteers.",
     "Mr. Bennet was among the earliest.",
     "He had always intended to visit Mr. Bingley!",
     '"Is he married?" asked Mrs. Bennet.',
     '"Oh, single."'],
    ["Mr. Bennet was not at home.", "Nobody came.", "They waited.", "And waited."],
]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_prose_book_strips_boilerplate_joins_lines_and_splits_at_chapters(tmp_path, newline):
    path = write(tmp_path / "book.txt", BOOK, newline=newline)
    assert detect_format(BOOK) == "prose"
    # "Produced by volunteers." is too short a section to end at CHAPTER I, and the
    # chapter title THE BEGINNING follows a heading, so neither cuts a document there.
    assert read_documents(path) == BOOK_DOCUMENTS
    assert read_documents(path, format="prose") == BOOK_DOCUMENTS


@pytest.mark.parametrize("header, footer", [
    ("*** START OF THE PROJECT GUTENBERG EBOOK MOBY DICK ***",
     "*** END OF THE PROJECT GUTENBERG EBOOK MOBY DICK ***"),
    ("***START OF THE PROJECT GUTENBERG EBOOK EMMA***",
     "***END OF THE PROJECT GUTENBERG EBOOK EMMA***"),
    ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
     "End of the Project Gutenberg EBook of Emma, by Jane Austen"),
    ("*** START OF THIS PROJECT GUTENBERG EBOOK X ***",
     "End of Project Gutenberg's Etext of Hamlet"),
])
def test_gutenberg_header_and_footer_spellings(header, footer):
    text = f"Licence text.\nMore licence.\n{header}\nBody one.\n\nBody two.\n{footer}\nLegal.\n"
    assert strip_gutenberg_boilerplate(text) == "\nBody one.\n\nBody two.\n"


def test_text_without_gutenberg_markers_is_unchanged():
    assert strip_gutenberg_boilerplate("Just a story.\nThe end.\n") == "Just a story.\nThe end.\n"


def test_heading_styles_each_start_a_document(tmp_path):
    body = "One went. Two went. Three went."
    headings = ["Chapter 2", "BOOK IV", "IV.", "I. The Absence of Mr Glass",
                "THE LITTLE YELLOW TULIP", "Actus Secundus. Scoena Prima.", "CHAPTER XII. THE END"]
    text = body + "".join(f"\n\n{h}\n\n{body}" for h in headings)
    path = write(tmp_path / "book.txt", text)
    assert read_documents(path, format="prose") == [split_sentences(body)] * (len(headings) + 1)


def test_lines_that_merely_start_like_headings_are_text(tmp_path):
    text = ("Book it, she said. Part of him agreed.\n\nI think so.\n\nPart mild, part wet.\n\n"
            "Chapter and verse were quoted. Nobody listened. It was late.\n")
    path = write(tmp_path / "book.txt", text)
    assert read_documents(path, format="prose") == [[
        "Book it, she said.", "Part of him agreed.", "I think so.", "Part mild, part wet.",
        "Chapter and verse were quoted.", "Nobody listened.", "It was late."]]


def test_book_without_headings_is_cut_into_even_chunks(tmp_path):
    sentences = [f"Sentence number {word}." for word in
                 "one two three four five six seven eight nine ten".split()]
    path = write(tmp_path / "book.txt", "\n\n".join(sentences))
    documents = read_documents(path, format="prose", max_document_sentences=4)
    # Ten sentences, at most four per document: three documents of 3, 4 and 3.
    assert documents == [sentences[0:3], sentences[3:7], sentences[7:10]]
    assert read_documents(path, format="prose", max_document_sentences=10) == [sentences]


def test_auto_decides_per_file(tmp_path):
    write(tmp_path / "a_bert.txt", "It rained all day.\nThe dog slept.\n\nA new story starts.\n")
    write(tmp_path / "b_prose.txt", "It rained all\nday. The dog\nslept soundly.\n")
    assert read_documents(str(tmp_path)) == [
        ["It rained all day.", "The dog slept."],
        ["A new story starts."],
        ["It rained all day.", "The dog slept soundly."],
    ]


def test_one_paragraph_per_line_is_prose():
    text = "It rained. The dog slept. Nobody came.\nThen the sun came out. Birds sang.\n"
    assert detect_format(text) == "prose"


# --- paths ------------------------------------------------------------------------------

def test_globs_are_sorted_and_directories_mean_their_txt_files(tmp_path):
    for name in ["b.txt", "a.txt", "c.text", "notes.md"]:
        write(tmp_path / name, f"File {name}.\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "z.txt", "Z.\n")
    assert expand_paths(str(tmp_path)) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert expand_paths([str(tmp_path / "*.t*t"), str(tmp_path / "sub" / "z.txt")]) == [
        str(tmp_path / n) for n in ["a.txt", "b.txt", "c.text", "sub/z.txt"]]
    assert expand_paths(tmp_path / "a.txt") == [str(tmp_path / "a.txt")]


# --- errors -----------------------------------------------------------------------------

def test_glob_matching_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No file matches the pattern .*\*\.txt"):
        read_documents(str(tmp_path / "*.txt"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.txt' does not exist"):
        read_documents(str(tmp_path / "missing.txt"))


def test_directory_without_txt_files(tmp_path):
    write(tmp_path / "notes.md", "Hi.\n")
    with pytest.raises(FileNotFoundError, match="has no \\*.txt files"):
        read_documents(str(tmp_path))


@pytest.mark.parametrize("content", [b"", b" \n\r\n\t\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"empty\.txt' is empty"):
        read_documents(str(path))


def test_file_with_no_sentences(tmp_path):
    path = write(tmp_path / "headings.txt", "CHAPTER I\n\nCHAPTER II\n\nTHE END\n")
    with pytest.raises(ValueError, match=r"headings\.txt' has no sentences"):
        read_documents(path, format="prose")
    only_boilerplate = ("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
                        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\n")
    path = write(tmp_path / "licence.txt", only_boilerplate)
    with pytest.raises(ValueError, match=r"licence\.txt' has no sentences"):
        read_documents(path)


def test_non_utf8_file_names_the_byte_and_the_fix(tmp_path):
    path = write(tmp_path / "caesar.txt", "Ant. C\u00e6sar, my Lord.\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"caesar\.txt' is not UTF-8: byte 0xe6 at offset 6"
                                         r".*iconv -f latin1 -t utf-8"):
        read_documents(path)


def test_empty_corpus():
    with pytest.raises(ValueError, match="is empty: no input files"):
        read_documents([])


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "a.txt", "Hi there.\n")
    with pytest.raises(ValueError, match="format must be one of"):
        read_documents(path, format="wiki")
    with pytest.raises(ValueError, match="max_document_sentences must be an integer of at least 1"):
        read_documents(path, max_document_sentences=0)


# --- split_documents ------------------------------------------------------------------------

DOCUMENTS = [[f"Document {i}."] for i in range(50)]


def test_split_is_deterministic_disjoint_complete_and_ordered():
    train, heldout = split_documents(DOCUMENTS, 0.1, seed=7)
    assert (train, heldout) == split_documents(DOCUMENTS, 0.1, seed=7)
    assert len(heldout) == 5 and len(train) == 45
    assert sorted(train + heldout) == sorted(DOCUMENTS)
    assert train == [d for d in DOCUMENTS if d not in heldout]  # input order kept
    assert heldout == [d for d in DOCUMENTS if d in heldout]
    assert split_documents(DOCUMENTS, 0.1, seed=8)[1] != heldout


def test_split_edge_cases():
    assert split_documents(DOCUMENTS, 0.0, seed=0) == (DOCUMENTS, [])
    assert len(split_documents(DOCUMENTS[:3], 0.01, seed=0)[1]) == 1  # at least one
    with pytest.raises(ValueError, match="Cannot hold out 50% of 1 document"):
        split_documents(DOCUMENTS[:1], 0.5, seed=0)
    with pytest.raises(ValueError, match="holdout_fraction must be in"):
        split_documents(DOCUMENTS, 1.0, seed=0)


# --- streamed reading: the whole-file reader's documents, in bounded memory -------------------

from keras_bert_min.text import corpus  # noqa: E402
from tests.text import reference_corpus  # noqa: E402

TRICKY_TEXTS = {
    "google_sample": GOOGLE_SAMPLE,
    "crlf_and_lone_cr": "One line.\r\nTwo\rlines?\r\n\r\nNext doc.\r\r\nEnd.\r\n",
    "bom_and_multibyte": "\ufeffÉcole d\u2019été. Ça va?\n力加勝北区 ᴵᴺᵀᵃ. Très bien.\n\nNouveau doc.\n",
    "gutenberg": ("Licence blah.\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\nCHAPTER I\n\n"
                  "It was a dark night. Mr. Brown\nwalked home. \"Why?\" said he.\n\n"
                  "CHAPTER II\n\nThe Sun rose.  It shone! All was well.\nThe end came.\n\n"
                  "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nMore licence.\n"),
    "two_starts": ("*** START OF THE PROJECT GUTENBERG EBOOK A ***\nFront matter.\n"
                   "*** START OF THE PROJECT GUTENBERG EBOOK A ***\nBody text. More body.\n"
                   "End of the Project Gutenberg EBook of A\nTail.\n"),
    "headings_and_blank_kinds": ("THE CABIN.\n\nSunset.\n\nA first sentence. A second one. A third."
                                 "\n \t\n\x0b\nIV\n\nI. The Absence of Mr Glass\n\nHe came. He "
                                 "went. He stayed.\n\u3000\nStill the same paragraph.\n"),
    "one_long_line": " ".join(f"Sentence number {i} is here, Dr. Who said." for i in range(300)),
    "no_final_newline": "First.\nSecond.\n\nThird.",
}


@pytest.mark.parametrize("name", sorted(TRICKY_TEXTS))
@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1 << 20])
def test_streamed_reader_equals_the_whole_file_reader_at_any_block_size(
        tmp_path, monkeypatch, name, block_bytes):
    # Tiny blocks cut multi-byte characters, "\r\n" and sentence boundaries at every place.
    path = write(tmp_path / f"{name}.txt", TRICKY_TEXTS[name])
    monkeypatch.setattr(corpus, "READ_BLOCK_BYTES", block_bytes)
    for format in ("auto", "bert", "prose"):
        expected = reference_corpus.read_file_documents(path, format)
        assert corpus.read_file_documents(path, format) == expected, format


@pytest.mark.parametrize("name", sorted(TRICKY_TEXTS))
def test_long_lines_in_pieces_give_the_same_documents(tmp_path, monkeypatch, name):
    # Lines longer than a piece are passed on in pieces cut at whitespace: prose joins them
    # into the same paragraph and Google's format keeps the line whole. (Pieces of 100
    # characters keep every heading, at most 80, in one piece.)
    path = write(tmp_path / f"{name}.txt", TRICKY_TEXTS[name])
    monkeypatch.setattr(corpus, "READ_BLOCK_BYTES", 16)
    monkeypatch.setattr(corpus, "MAX_PIECE_CHARS", 100)
    for format in ("bert", "prose"):
        expected = reference_corpus.read_file_documents(path, format)
        assert corpus.read_file_documents(path, format) == expected, format


def test_a_long_section_is_cut_a_block_at_a_time(tmp_path, monkeypatch):
    # A book without headings: with a cap of 2 documents' worth of sentences per block, 5
    # sentences of documents of at most 2 make [2], [2] (the first block of 4) and [1].
    path = write(tmp_path / "book.txt", "Aa one. Bb two. Cc three. Dd four. Ee five.\n" * 2
                 + "\n\nFf six.")
    monkeypatch.setattr(corpus, "MAX_SECTION_DOCUMENTS", 2)
    documents = corpus.read_file_documents(path, "prose", max_document_sentences=2)
    assert [len(d) for d in documents] == [2, 2, 2, 2, 2, 1]
    assert sum(documents, []) == sum(reference_corpus.read_file_documents(
        path, "prose", max_document_sentences=2), [])


def test_streamed_errors_name_the_file_and_the_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "READ_BLOCK_BYTES", 3)
    bad = tmp_path / "latin1.txt"
    # 10 bytes ("é" is two), 9 bytes ("ç" is two), then "na": the bad byte is at offset 21.
    bad.write_bytes("Caf\u00e9 ok.\nFa\u00e7ade.\n".encode("utf-8") + b"na\xefve.\n")
    with pytest.raises(ValueError, match=r"latin1\.txt.*byte 0xef at offset 21"):
        corpus.read_file_documents(str(bad))
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b" \r\n\t\n")
    with pytest.raises(ValueError, match="blank.txt.*is empty"):
        corpus.read_file_documents(str(blank))


def test_iter_documents_checks_every_path_before_reading(tmp_path):
    good = write(tmp_path / "good.txt", "One.\n")
    # The error comes at the call, before the first file's documents are used.
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        corpus.iter_documents([good, str(tmp_path / "missing.txt")])


MEMORY_PROBE = """
import resource, sys
from keras_bert_min.text import corpus
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak_mib()
documents = sentences = 0
for document in corpus.iter_documents(sys.argv[1]):
    documents += 1
    sentences += len(document)
print(documents, sentences, peak_mib() - base)
"""


def test_a_book_on_one_line_is_read_in_bounded_memory(tmp_path):
    # 24 MB of prose on a single line, no headings: the whole-file reader held the text, its
    # words and its sentences at once (about 20 bytes per byte of text, 4.1 GB for 200 MB).
    sentence = "The quick brown fox, said Mr. Smith, jumps over the lazy dog again. "
    count = 24 * 2**20 // len(sentence)
    path = tmp_path / "one_line.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(count // 1000):
            f.write(sentence * 1000)
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True,
                         text=True, check=True)
    documents, sentences, growth_mib = out.stdout.split()
    assert int(sentences) == count // 1000 * 1000
    assert int(documents) == -(-int(sentences) // 100)  # documents of at most 100 sentences
    # Bounded by one block of sentences (100,000 of them here), not by the 24 MB of text.
    assert float(growth_mib) < 60, growth_mib
