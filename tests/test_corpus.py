"""The sentence corpus (golden/corpus.py): the rules that make a docstring line a
sentence, determinism of the extraction and of every split, the record a report keeps,
and the one-line refusal when an interpreter yields too few sentences."""

import platform
import textwrap

import pytest

from golden import GoldenError, corpus
from golden.corpus import is_sentence, sentences_of


@pytest.mark.parametrize("text", [
    "Return the number of seconds since the epoch as a floating point number.",
    "If the value given is less than zero, ValueError is raised.",
    "A mutable set is a finite, iterable container of distinct elements.",
    "Write out HTML documentation for all modules in a directory tree.",
])
def test_prose_is_a_sentence(text):
    assert is_sentence(text)


@pytest.mark.parametrize("text, why", [
    ("Return the value.", "fewer than 8 words"),
    (" ".join(["word"] * 41) + ".", "more than 40 words"),
    ("return the number of seconds since the epoch as a float.", "lower-case start"),
    ("Call os.path.join on the parts to build the full path name.", "dotted name"),
    ("Set x = 3 before calling the function again with new values.", "operator"),
    ("The function foo_bar returns the number of items in the list.", "underscore"),
    ("Call the method with f(x) to get the value back from the cache.", "brackets"),
    ("The content of SOURCE is packed into an archive in the target folder.", "placeholder"),
    ("Open the file in 'rb' mode before reading any of the bytes from it.", "quoted literal"),
    ("Return the number of seconds since the epoch as a floating point number", "no full stop"),
    ("Retourne le nombre de secondes écoulées depuis le début de l'époque.", "not ASCII"),
])
def test_code_and_fragments_are_not_sentences(text, why):
    assert not is_sentence(text), why


def test_docstring_paragraphs_code_blocks_and_abbreviations():
    doc = textwrap.dedent("""\
        Compute the checksum of every block in the file and return them as a list.

        The blocks are read in order, e.g. the first block comes first in the list. Each
        checksum is an integer between zero and the largest value the hash allows.

        Example::

            Then this literal block is skipped even though it reads like prose text.

        >>> checksums(open("data.bin", "rb"))
        :param path: the file whose blocks are summed by this helpful function here.
        """)
    assert sentences_of(doc) == [
        "Compute the checksum of every block in the file and return them as a list.",
        "The blocks are read in order, e.g. the first block comes first in the list.",
        "Each checksum is an integer between zero and the largest value the hash allows.",
    ]


def _fake_stdlib(root, modules):
    for rel, doc in modules.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""{doc}"""\n\ndef f():\n    """{doc} Again, for the function itself."""\n')
    return root


def test_extraction_skips_tests_and_dedups(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    line = "This module keeps a small table of names for the tests below."
    root = _fake_stdlib(tmp_path / "lib", {
        "alpha.py": line, "pkg/beta.py": line,                       # the same sentence twice
        "test/test_alpha.py": "Every test here is skipped by the corpus extraction rules.",
        "broken.py": "Not closed",
    })
    (root / "broken.py").write_text('"""Not closed\n')                 # does not parse: skipped
    found = corpus.extract(root)
    assert found == (line,)       # "Again, for the function itself." has too few words
    with pytest.raises(GoldenError, match=r"yields only 1 usable sentences .* at least 2000 are needed"):
        corpus.load(0, root)
    with pytest.raises(GoldenError, match="no standard library folder"):
        corpus.extract(tmp_path / "missing")


def test_the_standard_library_corpus_is_deterministic_and_recorded(tmp_path, monkeypatch):
    a, b, other = corpus.load(0), corpus.load(0), corpus.load(1)
    assert len(a.sentences) >= corpus.MIN_SENTENCES
    assert a.sentences == tuple(sorted(set(a.sentences))) and all(map(is_sentence, a.sentences[:500]))
    assert a.test == b.test and a.sha256 == other.sha256 and a.test != other.test
    parts = [set(a.train), set(a.calibration), set(a.test)]
    assert sum(map(len, parts)) == len(a.sentences) and set().union(*parts) == set(a.sentences)
    assert len(a.test) == len(a.calibration) == int(0.1 * len(a.sentences))
    info = a.describe()
    assert info["python"] == platform.python_version() and info["sha256"] == a.sha256
    assert info["split"] == {"train": len(a.train), "calibration": len(a.calibration), "test": len(a.test)}
    assert f"Python {platform.python_version()}" in a.line() and a.sha256[:16] in a.line()
    # Extracted again from scratch (an empty cache), the sentences are the same.
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    corpus.extract.cache_clear()
    try:
        assert corpus.extract() == a.sentences
    finally:
        corpus.extract.cache_clear()


def test_too_few_sentences_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    """An interpreter whose standard library yields too few sentences: the command that
    needs them stops with one line that says how many there are."""
    from tessera.cli import main

    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    root = _fake_stdlib(tmp_path / "lib", {"alpha.py": "This tiny library has exactly one sentence of prose."})
    monkeypatch.setattr(corpus, "_stdlib", lambda: root)
    corpus.load.cache_clear()
    try:
        assert main(["train-nm", "--model", "minilm", "-o", str(tmp_path / "out")]) == 1
    finally:
        corpus.load.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "yields only 1 usable sentences" in err
    assert not (tmp_path / "out").exists()
