"""Real English sentences from the running interpreter's standard library docstrings.

No data set can be downloaded, but every Python installation carries thousands of
sentences written by people: the docstrings of its standard library. This module ships
the *extraction rules*, not the text: at run time it parses every ``.py`` file under
``sysconfig.get_paths()["stdlib"]`` with :mod:`ast` (nothing is imported or executed),
takes the docstrings of modules, classes and functions, and keeps the sentences that
pass :func:`is_sentence`.

Rules (all deterministic, so the corpus is a function of the standard library's files):

* files: every ``*.py`` below the standard library, sorted by path, except third-party
  and test folders and the two that hold tables rather than prose
  (:data:`SKIPPED_FOLDERS`); a file that does not parse is skipped;
* paragraphs: a docstring (cleaned as :func:`inspect.cleandoc` does) splits at blank
  lines; a paragraph with an indented line, a ``>>>`` prompt, a reST field or directive,
  or one that follows a ``::`` (a literal block) is code or markup and is dropped;
* sentences: a paragraph's lines are joined and split after ``.``, ``!`` or ``?`` that is
  followed by white space and a capital letter, except after the abbreviations of
  :data:`ABBREVIATIONS`;
* a sentence is kept (:func:`is_sentence`) when it has 8 to 40 words, is in sentence case
  (a capitalised first word, no all-capital word of five letters or more: those are
  placeholders such as ``SOURCE``; acronyms such as ``HTML`` pass), ends with ``.``, ``!``
  or ``?``, is plain ASCII and holds no code fragment (no brackets, operators,
  underscores, backquotes, quoted literals, dotted names, ``::`` or ``--``; class names
  in prose, such as ``ValueError``, are words);
* distinct sentences (white space normalised), sorted.

:func:`load` splits them into train / calibration / test with a seed
(:data:`SPLIT`: 80 / 10 / 10 %) and gives a :class:`Corpus` whose
:meth:`Corpus.describe` (Python version, sentence count, SHA-256 of the sorted sentences,
seed, split sizes) every report that uses it records. For a given Python version (the
same standard-library files) the sentences, the hash and every split are identical.

The extraction takes a few seconds; its result is cached in :func:`golden.cache.cache_dir`
under a key made of the Python version, the list of files with their sizes and
modification times, and this module's own source (a rule change invalidates it).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import GoldenError
from .cache import cache_dir

__all__ = ["Corpus", "load", "extract", "sentences_of", "is_sentence", "MIN_SENTENCES", "SPLIT"]

#: Folders (any path component) whose files are not read: third-party packages, test
#: suites, codec tables (``encodings``) and pydoc's pre-rendered topics.
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                             "encodings", "pydoc_data", "__pycache__"})
#: A full stop after these does not end a sentence.
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "mr.", "dr.", "no.", "approx."})
#: Fewer distinct sentences than this and :func:`load` refuses (the language-model
#: figures need a test split of a few hundred and a train split of thousands).
MIN_SENTENCES = 2000
#: Fractions of the corpus in the train, calibration and test splits.
SPLIT = {"train": 0.8, "calibration": 0.1, "test": 0.1}
MIN_WORDS, MAX_WORDS = 8, 40

_END = re.compile(r"[.!?]\s+(?=[A-Z])")
_CODE = re.compile(r"[()\[\]{}<>=*_`|\\#@$%^~+/&]|::|--|>>>"
                   r"|\s'\w|\w'\s|\s\"")   # quoted literals: 'r', "utf-8"
_DOTTED = re.compile(r"\w\.\w")             # dotted names (os.path, 3.11), once e.g./i.e. are out
_FIRST_WORD = re.compile(r"[A-Z][a-z]*,?$")
_SHOUTED = re.compile(r"\b[A-Z]{5,}\b")     # placeholders (SOURCE, ARGS...); acronyms pass
_MARKUP = re.compile(r"^\s|^>>>|^\.\. |^:\w[^:]*:|^[-*] |^\d+\. ")


def is_sentence(text: str) -> bool:
    """Whether ``text`` is a plain prose sentence by this module's rules (see above)."""
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not text.isascii() or text[-1] not in ".!?" or _CODE.search(text):
        return False
    if _DOTTED.search(text.replace("e.g.", "").replace("i.e.", "")):
        return False
    return bool(_FIRST_WORD.match(words[0])) and not _SHOUTED.search(text)


def _paragraphs(doc: str):
    literal = False
    for block in re.split(r"\n\s*\n", doc):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        follows_literal, literal = literal, lines[-1].rstrip().endswith("::")
        if follows_literal or any(_MARKUP.match(line) for line in lines):
            continue
        yield " ".join(line.strip() for line in lines)


def sentences_of(doc: str) -> list[str]:
    """The sentences of one (cleaned) docstring that pass :func:`is_sentence`."""
    out = []
    for paragraph in _paragraphs(doc):
        start = 0
        for match in _END.finditer(paragraph):
            head = paragraph[start:match.start() + 1]
            last = head.rsplit(None, 1)[-1].lower() if head.strip() else ""
            if last in ABBREVIATIONS:
                continue
            out.append(head)
            start = match.end()
        out.append(paragraph[start:])
    return [s for s in (" ".join(s.split()) for s in out) if s and is_sentence(s)]


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if not SKIPPED_FOLDERS & set(p.relative_to(root).parts[:-1]))


def _docstrings(path: Path):
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _cache_key(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(f"{platform.python_implementation()} {platform.python_version()} {root}\n".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


@functools.lru_cache(maxsize=4)
def extract(root: Path | None = None) -> tuple[str, ...]:
    """Every distinct sentence of the docstrings below ``root`` (default: this
    interpreter's standard library), sorted. Cached on disk (see the module docstring)."""
    root = Path(root) if root is not None else _stdlib()
    if not root.is_dir():
        raise GoldenError(f"no standard library folder at {str(root)!r}")
    files = _files(root)
    cached = cache_dir() / f"corpus-{_cache_key(root, files)}.json"
    if cached.is_file():
        try:
            return tuple(json.loads(cached.read_text()))
        except (OSError, ValueError):
            pass                                     # unreadable: extract again
    found = set()
    for path in files:
        for doc in _docstrings(path):
            found.update(sentences_of(doc))
    sentences = tuple(sorted(found))
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sentences))
    tmp.replace(cached)
    return sentences


@dataclass(frozen=True)
class Corpus:
    """The extracted sentences and their seeded split (see :func:`load`)."""

    sentences: tuple[str, ...]
    seed: int
    train: tuple[str, ...]
    calibration: tuple[str, ...]
    test: tuple[str, ...]
    python: str
    root: str

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the sorted sentences joined by newlines (independent of the seed)."""
        return hashlib.sha256("\n".join(self.sentences).encode()).hexdigest()

    def split(self, name: str) -> tuple[str, ...]:
        if name not in SPLIT:
            raise GoldenError(f"unknown split {name!r}; splits: {', '.join(SPLIT)}")
        return getattr(self, name)

    def describe(self) -> dict:
        """What a report records about the text it used."""
        return {"source": "docstrings of the Python standard library", "python": self.python,
                "stdlib": self.root, "sentences": len(self.sentences), "sha256": self.sha256,
                "seed": self.seed, "split": {name: len(self.split(name)) for name in SPLIT}}

    def line(self) -> str:
        """One line for a printed report."""
        return (f"corpus: {len(self.sentences)} sentences from the Python {self.python} standard "
                f"library's docstrings, sha256 {self.sha256[:16]}, split seed {self.seed} "
                f"(train {len(self.train)} / calibration {len(self.calibration)} / test {len(self.test)})")


@functools.lru_cache(maxsize=8)
def load(seed: int = 0, root: Path | None = None, minimum: int = MIN_SENTENCES) -> Corpus:
    """The corpus split with ``seed``: a permutation of the sorted sentences from
    ``numpy.random.default_rng(seed)``; the first 10 % are the test split, the next 10 %
    calibration, the rest train. Raises GoldenError when fewer than ``minimum`` distinct
    sentences are found (saying how many)."""
    root = Path(root) if root is not None else _stdlib()
    sentences = extract(root)
    if len(sentences) < minimum:
        raise GoldenError(f"the standard library at {str(root)!r} yields only {len(sentences)} usable "
                          f"sentences (8-40 words, sentence case, no code); at least {minimum} are needed")
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_test = int(len(sentences) * SPLIT["test"])
    n_calib = int(len(sentences) * SPLIT["calibration"])
    pick = lambda idx: tuple(sentences[i] for i in idx)   # noqa: E731
    return Corpus(sentences, seed, train=pick(order[n_test + n_calib:]),
                  calibration=pick(order[n_test:n_test + n_calib]), test=pick(order[:n_test]),
                  python=platform.python_version(), root=str(root))
