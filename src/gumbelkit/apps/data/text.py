"""Offline English text: Jane Austen's six novels, split into tokenized sentences.

The novels come from Debian's ``r-cran-janeaustenr`` package (MIT licence; the texts are in the
public domain). They are stored in an R lazy-load database, which
:mod:`gumbelkit.apps.data.rdata` reads directly: R itself is not needed. Each novel is a
character vector of the printed lines; blank lines separate paragraphs.

Processing (:func:`austen_sentences`): paragraphs are rebuilt from the lines, headings (``CHAPTER``,
``VOLUME``, title pages) dropped, paragraphs split into sentences after ``.``, ``!`` or ``?`` (not
after the usual abbreviations ``Mr.``, ``Mrs.``, ``Dr.``, ...), lower-cased, and tokenized into
words (with inner apostrophes: ``don't``, ``emma's``; ``mr.``, ``mrs.``, ``dr.``, ``st.`` keep their
dot) and the punctuation marks ``, ; : . ! ?``.
Quotes, dashes, underscores (italics) and brackets are dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from gumbelkit.apps.data.rdata import read_lazyload_db

__all__ = [
    "AUSTEN_NOVELS",
    "JANEAUSTENR_DATA",
    "Vocabulary",
    "austen_paragraphs",
    "austen_sentences",
    "split_sentences",
    "tokenize",
]

#: Debian's r-cran-janeaustenr lazy-load database (``Rdata.rdb`` + ``Rdata.rdx``).
JANEAUSTENR_DATA = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata")
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")

_ABBREVIATIONS = ("mr", "mrs", "dr", "st", "messrs", "esq", "capt", "col", "rev")
_HEADING = re.compile(r"^(chapter|volume)\b|^(by\s+)?jane austen|^\(?\d{4}\)?$|^(the\s+)?end$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'_)]))\s+")  # after . ! ? and a closing mark
_TOKEN = re.compile(r"(?:mrs?|dr|st)\.|[a-z]+(?:'[a-z]+)*|[,;:.!?]")


def _find_db(path: str | Path | None) -> Path:
    base = Path(path) if path else JANEAUSTENR_DATA
    if base.is_dir():
        base = base / "Rdata"
    if not base.with_suffix(".rdb").is_file():
        raise FileNotFoundError(
            f"Jane Austen corpus not found at {base}.rdb; install Debian's r-cran-janeaustenr "
            "(apt-get install r-cran-janeaustenr) or pass the package's data/Rdata path"
        )
    return base


def austen_paragraphs(path: str | Path | None = None, novels: Sequence[str] = AUSTEN_NOVELS) -> list[str]:
    """The paragraphs of the novels, in order, without headings.

    Args:
        path: the lazy-load database (``.../janeaustenr/data/Rdata``, its directory, or ``None``
            for Debian's location).
        novels: which novels (names in :data:`AUSTEN_NOVELS`).
    """
    db = read_lazyload_db(_find_db(path), list(novels))
    paragraphs: list[str] = []
    for name in novels:
        current: list[str] = []
        for line in [*db[name], ""]:
            line = (line or "").strip()
            if line:
                current.append(line)
                continue
            text = " ".join(current)
            current = []
            if text and not _HEADING.search(text) and not text.isupper():
                paragraphs.append(text)
    return paragraphs


def split_sentences(paragraph: str) -> list[str]:
    """Split after ``.``, ``!``, ``?`` (and closing quotes), except after ``Mr.``, ``Mrs.``, ..."""
    pieces = _SENTENCE_END.split(paragraph)
    out: list[str] = []
    for piece in pieces:
        if out and re.search(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.$", out[-1].lower()):
            out[-1] = out[-1] + " " + piece
        else:
            out.append(piece)
    return [s.strip() for s in out if s.strip()]


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words (inner apostrophes kept) and the marks ``, ; : . ! ?``."""
    return _TOKEN.findall(sentence.lower().replace("--", " , ").replace("_", ""))


def austen_sentences(path: str | Path | None = None, novels: Sequence[str] = AUSTEN_NOVELS) -> list[list[str]]:
    """Every sentence of the novels as a token list, in order (see the module docstring)."""
    return [toks for p in austen_paragraphs(path, novels) for s in split_sentences(p) if (toks := tokenize(s))]


class Vocabulary:
    """Token <-> id maps with special tokens first (``<eos>`` = 0, ``<unk>`` = 1).

    Args:
        counts: token counts.
        max_size: the vocabulary size including the special tokens (most frequent kept; ties by
            first appearance in ``counts``).
    """

    EOS, UNK = 0, 1
    SPECIALS = ("<eos>", "<unk>")

    def __init__(self, counts: Counter[str], max_size: int) -> None:
        if max_size <= len(self.SPECIALS):
            raise ValueError(f"max_size must be > {len(self.SPECIALS)} (the special tokens), got {max_size}")
        words = [w for w, _ in counts.most_common(max_size - len(self.SPECIALS))]
        self.itos: list[str] = [*self.SPECIALS, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.UNK) for t in tokens]

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> list[str]:
        out = []
        for i in ids:
            if stop_at_eos and i == self.EOS:
                break
            out.append(self.itos[i])
        return out
