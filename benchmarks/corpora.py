"""Reproducible English corpora of several sizes, assembled offline from text already on the machine.

The word2vec benchmarks need corpora from about 0.5M to 20M+ words that nobody tuned on, with no
download. This module builds them from:

* ``embedded``: gensim's test data, the trainer's default corpus (``examples/word2vec/data.py``:
  a Wikipedia excerpt and the Lee news corpus, 547,301 words);
* ``text8``: text8 (17M words of Wikipedia), only if a copy is already on disk (``--text8 PATH``, or
  ``text8`` / ``text8.zip`` in the current directory or ``data/``); never downloaded;
* ``pydocs``: the docstrings (module, class, function; read with :mod:`ast`) and the ``.rst`` / ``.md`` /
  ``.txt`` files of the installed Python packages (the running interpreter's ``purelib`` and
  ``platlib``: the venv's site-packages);
* ``manpages``: the English manual pages (``/usr/share/man/man1`` .. ``man8``; the translations in
  ``/usr/share/man/<locale>`` are not read), roff requests and escapes stripped;
* ``sysdocs``: the documentation of the system's packages in ``/usr/share/doc`` (``.txt``, ``.md``,
  ``.rst``, ``.html`` with tags stripped, ``README`` / ``NEWS`` / ``FAQ``, plain or gzipped; ``copyright``
  files and changelogs are left out);
* ``mix``: all of the above (except text8) together, and its prefixes ``mix-2m``, ``mix-5m``,
  ``mix-10m`` and ``mix-20m`` (the first N words).

How English prose is kept: each source is cut into paragraphs (blocks between blank lines; a line of
a docstring's doctest (``>>>``, ``...``), an RST directive (``..``) or an underline (``===``) ends a
paragraph). A paragraph is kept when it has at least 8 whitespace-separated tokens, at least 75% of
them plain words (letters, an inner apostrophe or hyphen, surrounding punctuation), and at least 20% of
them among the 60 commonest English function words (``the``, ``of``, ``to``, ...: English prose has
about 40%; code, tables, option lists and other languages have few). A paragraph seen before (same
words, lowercased) is dropped, so licences and docstrings copied between packages count once. The kept
paragraphs are tokenised with the trainer's own :func:`examples.word2vec.data.tokenize` (lowercase,
runs of letters and digits) and written one paragraph per line.

Deterministic: files are read in sorted path order; the documents (one per file: a module's
docstrings, a manual page, a document) are shuffled with a fixed seed (so every part of a corpus
mixes all topics, and the linear learning-rate decay of word2vec sees no drift of topic); nothing
depends on time, locale or hash randomisation. The same installed files give the same bytes: each
built corpus is stored with a manifest (``NAME.json``: words, files read, paragraphs kept and dropped,
the output's sha256) in the cache directory. Different machines (other packages installed) give
different corpora of the same kind, which is the point: they are corpora nobody tuned on.

Usage::

    python benchmarks/corpora.py --list                  # names, sizes once built, sources
    python benchmarks/corpora.py mix-5m pydocs           # build (cached) and print the paths
    python benchmarks/corpora.py manpages --output /tmp/man.txt

From Python: ``corpus_path("mix-5m")`` builds if needed and returns the path of the text file.
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import hashlib
import html
import json
import os
import random
import re
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.word2vec import data as w2v_data  # noqa: E402

__all__ = [
    "CORPORA",
    "DEFAULT_CACHE_DIR",
    "build",
    "corpus_path",
    "docstring_text",
    "english_paragraphs",
    "is_english_prose",
    "man_page_text",
    "main",
]

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "jaxgraph", "corpora")
_SHUFFLE_SEED = 20261129
_MIN_TOKENS = 8
_MIN_WORD_FRACTION = 0.75
_MIN_FUNCTION_WORD_FRACTION = 0.20
# The 60 commonest English function words: frequent in any English prose, rare in code and tables.
_FUNCTION_WORDS = frozenset("""
the of and to a in is that for it as was with be by on not he i this are or his from at which but have an
they you were her she there been their one all we can has will if would so no when what its into than
them these may more other any some such
""".split())
_PLAIN_WORD = re.compile(r"^[(\"'`]*[A-Za-z]+(?:['-][A-Za-z]+)*[.,;:!?)\"'`]*$")
_BREAK_LINE = re.compile(r"^\s*(?:>>>|\.\.\.|\.\. |[-=~^*#+`]{3,}\s*$)")


# --------------------------------------------------------------------------------------------------
# English prose


def is_english_prose(paragraph: str) -> bool:
    """Whether a paragraph looks like English prose (see the module docstring for the rule).

    >>> is_english_prose("The function returns the sum of the elements, and it is fast for small arrays.")
    True
    >>> is_english_prose("x = np.sum(a, axis=0)  # returns the sum along an axis of the array")
    False
    >>> is_english_prose("Die Funktion gibt die Summe der Elemente zurueck, und sie ist schnell genug.")
    False
    """
    tokens = paragraph.split()
    if len(tokens) < _MIN_TOKENS:
        return False
    plain = sum(1 for t in tokens if _PLAIN_WORD.match(t))
    if plain < _MIN_WORD_FRACTION * len(tokens):
        return False
    function = sum(1 for t in tokens if t.strip("()\"'`.,;:!?").lower() in _FUNCTION_WORDS)
    return function >= _MIN_FUNCTION_WORD_FRACTION * len(tokens)


def english_paragraphs(text: str) -> list[str]:
    """The English-prose paragraphs of ``text`` (blocks between blank lines, cut at doctest lines, RST
    directives and underlines), each with its whitespace collapsed.

    >>> english_paragraphs("Title\\n=====\\n\\nThis is a sentence that is long enough to be kept by it.\\n"
    ...                    ">>> f(x)\\n\\nshort one")
    ['This is a sentence that is long enough to be kept by it.']
    """
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            paragraph = " ".join(" ".join(block).split())
            if is_english_prose(paragraph):
                out.append(paragraph)
            block.clear()

    for line in text.splitlines():
        if not line.strip() or _BREAK_LINE.match(line):
            flush()
        else:
            block.append(line)
    flush()
    return out


# --------------------------------------------------------------------------------------------------
# Sources: each yields (document id, text) in a deterministic order


def docstring_text(source: str) -> str:
    """The docstrings of a Python module (module, classes, functions, in source order), blank-line
    separated; ``""`` if it does not parse.

    >>> docstring_text("'''Module doc.'''\\ndef f():\\n    '''Function doc.'''\\n")
    'Module doc.\\n\\nFunction doc.'
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old packages
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(n, clean=True) for n in ast.walk(tree) if isinstance(n, nodes)]
    return "\n\n".join(d for d in docs if d)


_ROFF_FONT = re.compile(r"^[.'](?:[BI]|BR|BI|IB|RB|RI|IR|SM|SB)[ \t]+(.*)$", re.MULTILINE)
_ROFF_REQUEST = re.compile(r"^[.'][^\n]*$", re.MULTILINE)
_ROFF_ESCAPE = re.compile(r"\\(?:f(?:\(..|\[[^]]*]|.)|s[-+]?\d|\(..|\[[^]]*]|\*(?:\(..|\[[^]]*]|.)|[^a-zA-Z])")


def man_page_text(roff: str) -> str:
    """A manual page's running text: font requests (``.B word``) keep their words, other request lines
    (``.TH``, ``.SH``, ``.PP``, ...) become paragraph breaks, font and character escapes are removed.

    >>> man_page_text(".SH NAME\\nls \\\\- list \\\\fBdirectory\\\\fR\\n.B \\"all the\\"\\ncontents\\n.PP\\nMore text.")
    '\\nls  list directory\\nall the\\ncontents\\n\\nMore text.'
    """
    text = _ROFF_FONT.sub(lambda m: m.group(1).replace('"', ""), roff)  # .B word: the words stay in the text
    text = _ROFF_REQUEST.sub("", text)
    return _ROFF_ESCAPE.sub("", text)


def _read_text(path: str) -> str:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError):
        return ""
    if b"\x00" in raw[:4096]:
        return ""
    return raw.decode("utf-8", errors="replace")


def _walk(root: str, keep: Callable[[str], bool]) -> Iterator[str]:
    """Regular files under ``root`` accepted by ``keep``, in sorted path order (links not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if keep(path) and os.path.isfile(path) and not os.path.islink(path):
                yield path


_SYSTEM_PYTHON = "/usr/lib/python3/dist-packages"
_CLOUD_SDK = "/usr/lib/google-cloud-sdk"


def _package_dirs() -> list[str]:
    """The running interpreter's package directories (the venv's site-packages), its standard library
    (without its own site-packages) and the system Python's packages."""
    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(paths[k]) for k in ("purelib", "platlib", "stdlib") if os.path.isdir(paths[k])}
    if os.path.isdir(_SYSTEM_PYTHON):
        dirs.add(_SYSTEM_PYTHON)
    return sorted(dirs)


def _python_files(suffixes: tuple[str, ...]) -> Iterator[str]:
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for root in _package_dirs():
        # The standard library's own site-packages is another interpreter's packages: not read.
        skip = os.path.join(stdlib, "site-packages") + os.sep
        for path in _walk(root, lambda p: p.endswith(suffixes)):
            real = os.path.realpath(path)
            if real not in seen and not (real + os.sep).startswith(skip):
                seen.add(real)
                yield path


def _pydocs() -> Iterator[tuple[str, str]]:
    for path in _python_files((".py", ".rst", ".md", ".txt")):
        text = _read_text(path)
        yield path, docstring_text(text) if path.endswith(".py") else text


def _cloudsdk() -> Iterator[tuple[str, str]]:
    for path in _walk(_CLOUD_SDK, lambda p: p.endswith(".py")):
        text = _read_text(path)
        yield path, docstring_text(text) + "\n\n" + comment_text(text, "py")


def _manpages() -> Iterator[tuple[str, str]]:
    for section in range(1, 9):
        for path in _walk(f"/usr/share/man/man{section}", lambda p: True):
            yield path, man_page_text(_read_text(path))


_DOC_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm")
_DOC_NAMES = re.compile(r"^(?:readme|news|faq|todo|authors|thanks)(?:\.\w+)?$", re.IGNORECASE)
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1>", re.DOTALL | re.IGNORECASE)
_HTML_BLOCK = re.compile(r"</?(?:p|div|h\d|li|ul|ol|pre|table|tr|td|th|br|dt|dd|dl|section|blockquote)\b[^>]*>",
                         re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]+>")


def _sysdoc_wanted(path: str) -> bool:
    name = os.path.basename(path).lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.startswith(("copyright", "changelog", "changes")):
        return False
    return base.endswith(_DOC_SUFFIXES) or bool(_DOC_NAMES.match(base))


def _sysdocs() -> Iterator[tuple[str, str]]:
    for path in _walk("/usr/share/doc", _sysdoc_wanted):
        text = _read_text(path)
        if path.removesuffix(".gz").endswith((".html", ".htm")):
            text = _HTML_DROP.sub(" ", text)
            text = _HTML_BLOCK.sub("\n\n", text)
            text = html.unescape(_HTML_TAG.sub(" ", text))
        yield path, text


_C_COMMENT = re.compile(r"/\*(.*?)\*/|//([^\n]*)", re.DOTALL)
_PY_COMMENT = re.compile(r"^[ \t]*#(?!!)[ \t]?(.*)$")


def comment_text(source: str, language: str) -> str:
    """The comments of a C/C++ (``"c"``) or Python (``"py"``) source: a block comment is a paragraph,
    consecutive line comments are one.

    >>> comment_text("int x;  // the first\\n// and second\\n/* a\\n * block */ y;", "c")
    ' the first\\n and second\\n\\n a\\n block \\n'
    >>> comment_text("x = 1  # a trailing comment\\n# one\\n# two\\ny = 2", "py")
    '\\na trailing comment\\n\\none\\ntwo\\n\\n'
    """
    out: list[str] = []
    if language == "c":
        last_end = -1
        for m in _C_COMMENT.finditer(source):
            if m.group(1) is not None:
                out.append("\n" + re.sub(r"^[ \t]*\*+", "", m.group(1), flags=re.MULTILINE) + "\n")
            else:  # a line comment continues the previous one when only whitespace separates them
                if source[last_end:m.start()].strip() and out:
                    out.append("\n")
                out.append(m.group(2) + "\n")
            last_end = m.end()
        return "".join(out)
    for line in source.splitlines():
        m = _PY_COMMENT.match(line)
        if m:
            out.append(m.group(1) + "\n")
        elif "#" in line and not line.lstrip().startswith(("'", '"')):
            code, _, comment = line.partition("#")
            if code.count('"') % 2 == 0 and code.count("'") % 2 == 0:  # not inside a string
                out.append("\n" + comment.strip() + "\n\n")  # a trailing comment stands alone
        elif out and out[-1] != "\n":
            out.append("\n")
    return "".join(out)


def _comments() -> Iterator[tuple[str, str]]:
    for path in _walk("/usr/include", lambda p: p.endswith((".h", ".hpp"))):
        yield path, comment_text(_read_text(path), "c")
    for path in _python_files((".h", ".hpp", ".py")):
        yield path, comment_text(_read_text(path), "py" if path.endswith(".py") else "c")


_POD_COMMAND = re.compile(r"^=\w+.*$", re.MULTILINE)
_POD_CODE = re.compile(r"^=(?:cut|begin|end).*?(?=^=\w|\Z)", re.MULTILINE | re.DOTALL)
_POD_FORMAT = re.compile(r"[BICLFSXEZ]<+([^<>]*)>+")


def _pod_text(source: str) -> str:
    """The POD documentation of a Perl file: the text between ``=pod``/``=head``/``=item``... and ``=cut``,
    formatting codes unwrapped."""
    if "\n=" not in source and not source.startswith("="):
        return ""
    pod = _POD_CODE.sub("\n", "\n" + source)
    return _POD_FORMAT.sub(r"\1", _POD_COMMAND.sub("\n", pod))


def _info_text(source: str) -> str:
    return source.replace("\x1f", "\n\n").replace("\x7f", " ")


def _manuals() -> Iterator[tuple[str, str]]:
    for path in sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt")):
        yield path, _read_text(path)
    for root in ("/usr/share/perl", "/usr/share/perl5", "/usr/lib/x86_64-linux-gnu/perl",
                 "/usr/lib/x86_64-linux-gnu/perl-base", "/usr/lib/x86_64-linux-gnu/perl5"):
        for path in _walk(root, lambda p: p.endswith((".pm", ".pod"))):
            yield path, _pod_text(_read_text(path))
    for path in _walk("/usr/share/info", lambda p: ".info" in os.path.basename(p)):
        yield path, _info_text(_read_text(path))
    for path in sorted(glob.glob("/usr/share/cmake-*/Help")):
        for doc in _walk(path, lambda p: p.endswith(".rst")):
            yield doc, _read_text(doc)
    for doc in _walk("/usr/lib/node_modules", lambda p: p.endswith(".md")):
        yield doc, _read_text(doc)


def _embedded() -> Iterator[tuple[str, str]]:
    words, _ = w2v_data.default_corpus()
    # One document of running text: its paragraph structure is gone, and it is English already.
    yield "gensim test data", " ".join(words)


_SOURCES: dict[str, Callable[[], Iterator[tuple[str, str]]]] = {
    "pydocs": _pydocs, "manpages": _manpages, "sysdocs": _sysdocs, "manuals": _manuals, "comments": _comments,
    "cloudsdk": _cloudsdk, "embedded": _embedded,
}
# The embedded corpus is taken as it is; every other source is filtered for English prose.
_FILTERED = ("pydocs", "manpages", "sysdocs", "manuals", "comments", "cloudsdk")

_MIX = ("embedded", "pydocs", "manpages", "sysdocs", "manuals", "comments", "cloudsdk")
#: name -> (sources, word limit or None)
CORPORA: dict[str, tuple[tuple[str, ...], int | None]] = {
    "embedded": (("embedded",), None),
    "text8": (("text8",), None),
    "pydocs": (("pydocs",), None),
    "manpages": (("manpages",), None),
    "sysdocs": (("sysdocs",), None),
    "manuals": (("manuals",), None),
    "comments": (("comments",), None),
    "cloudsdk": (("cloudsdk",), None),
    "mix": (_MIX, None),
    "mix-2m": (_MIX, 2_000_000),
    "mix-5m": (_MIX, 5_000_000),
    "mix-10m": (_MIX, 10_000_000),
    "mix-20m": (_MIX, 20_000_000),
}


def _documents(sources: Iterable[str], stats: dict) -> list[list[str]]:
    """Every source's documents as lists of tokenised paragraphs, duplicates across all of them dropped."""
    seen: set[bytes] = set()
    documents: list[list[str]] = []
    for source in sources:
        s = stats.setdefault(source, {"files": 0, "paragraphs_kept": 0, "paragraphs_duplicate": 0})
        for _doc_id, text in _SOURCES[source]():
            s["files"] += 1
            paragraphs = english_paragraphs(text) if source in _FILTERED else [text]
            doc = []
            for paragraph in paragraphs:
                line = " ".join(w2v_data.tokenize(paragraph))
                digest = hashlib.sha1(line.encode()).digest()
                if digest in seen:
                    s["paragraphs_duplicate"] += 1
                    continue
                seen.add(digest)
                s["paragraphs_kept"] += 1
                doc.append(line)
            if doc:
                documents.append(doc)
    return documents


def _find_text8(explicit: str | None) -> str:
    candidates = [explicit] if explicit else ["text8", "text8.zip", "data/text8", "data/text8.zip"]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    raise FileNotFoundError(
        "text8 is not on disk (looked for " + ", ".join(candidates) + "): this module never downloads it; "
        "get it with `python -m examples.word2vec.train --download-text8` and pass --text8 PATH")


def build(name: str, output: str, *, cache_dir: str = DEFAULT_CACHE_DIR, text8: str | None = None) -> dict:
    """Write corpus ``name`` to ``output`` (one paragraph per line, tokens space-separated) and return its
    manifest (also written next to it as ``<output without .txt>.json``)."""
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    sources, limit = CORPORA[name]
    stats: dict = {}
    if limit is not None:  # the first words of the whole corpus of the same sources
        full = next(n for n, (s, cap) in CORPORA.items() if s == sources and cap is None)
        with open(corpus_path(full, cache_dir, text8=text8), encoding="utf-8") as f:
            documents = [[line.rstrip("\n") for line in f]]
        stats[full] = {"prefix_of": full}
    elif sources == ("text8",):
        path = _find_text8(text8)
        documents = [[" ".join(w2v_data.read_words(path))]]
        stats["text8"] = {"path": os.path.abspath(path)}
    else:
        documents = _documents(sources, stats)
        random.Random(_SHUFFLE_SEED).shuffle(documents)
    words = 0
    h = hashlib.sha256()
    tmp = output + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in documents:
            for line in doc:
                tokens = line.split()
                if limit is not None and words + len(tokens) > limit:
                    tokens = tokens[: limit - words]
                if tokens:
                    text = " ".join(tokens) + "\n"
                    f.write(text)
                    h.update(text.encode())
                    words += len(tokens)
                if limit is not None and words >= limit:
                    break
            if limit is not None and words >= limit:
                break
    os.replace(tmp, output)
    manifest = {"name": name, "words": words, "sha256": h.hexdigest(), "sources": stats,
                "limit": limit, "shuffle_seed": _SHUFFLE_SEED, "python": sys.version.split()[0],
                "package_dirs": _package_dirs() if "pydocs" in sources else None}
    if limit is not None and words < limit:
        manifest["note"] = f"only {words:,} words available, fewer than the limit {limit:,}"
    with open(os.path.splitext(output)[0] + ".json", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return manifest


def corpus_path(name: str, cache_dir: str = DEFAULT_CACHE_DIR, *, text8: str | None = None) -> str:
    """The path of corpus ``name``'s text file in ``cache_dir``, built first if it is not there."""
    path = os.path.join(cache_dir, f"{name}.txt")
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(cache_dir, f"{name}.json"))):
        build(name, path, cache_dir=cache_dir, text8=text8)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"corpora to build: {', '.join(CORPORA)}")
    p.add_argument("--list", action="store_true", help="list the corpora (with sizes where built)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    p.add_argument("--output", help="with one name: write the corpus here instead of the cache")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    p.add_argument("--text8", help="path of an existing text8 (or text8.zip) for the text8 corpus")
    args = p.parse_args(argv)
    if args.list or not args.names:
        for name, (sources, limit) in CORPORA.items():
            manifest = os.path.join(args.cache_dir, f"{name}.json")
            size = "not built"
            if os.path.isfile(manifest):
                with open(manifest) as f:
                    size = f"{json.load(f)['words']:,} words"
            cap = f", first {limit:,} words" if limit else ""
            print(f"{name:10s} {size:>18s}  ({' + '.join(sources)}{cap})")
        return 0
    if args.output and len(args.names) != 1:
        p.error("--output takes exactly one corpus name")
    for name in args.names:
        if name not in CORPORA:
            p.error(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    for name in args.names:
        try:
            if args.output:
                path = args.output
                m = build(name, path, cache_dir=args.cache_dir, text8=args.text8)
            else:
                path = os.path.join(args.cache_dir, f"{name}.txt")
                if args.rebuild and os.path.exists(path):
                    os.remove(path)
                path = corpus_path(name, args.cache_dir, text8=args.text8)
                with open(os.path.splitext(path)[0] + ".json") as f:
                    m = json.load(f)
        except (FileNotFoundError, w2v_data.CorpusError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{name}: {m['words']:,} words, sha256 {m['sha256'][:16]}..., {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
