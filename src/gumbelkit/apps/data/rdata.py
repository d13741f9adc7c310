r"""A small reader of R's lazy-load databases (``data/Rdata.rdb`` + ``Rdata.rdx``), without R.

R packages with ``LazyData: true`` (Debian's ``r-cran-janeaustenr``, for one) keep their data
sets in a lazy-load database: ``Rdata.rdx`` is a gzip-compressed serialized R list mapping each
variable to an ``(offset, length)`` pair in ``Rdata.rdb``, where each record is a 4-byte
big-endian uncompressed length followed by a zlib stream of one serialized R object.

This module decodes R's XDR serialization (format versions 2 and 3) for the value types data
sets are made of: NULL, logical, integer, double, character and raw vectors, lists (``VECSXP``),
pairlists, symbols and attributes. Environments, closures and byte code are refused with a clear
error (data sets do not need them).

Values map to Python as follows: character vectors -> ``list[str | None]`` (``NA`` is ``None``),
integer / logical vectors -> ``numpy`` int32 arrays (logical ``NA`` and integer ``NA`` stay
``-2**31``), doubles -> float64 arrays, lists -> :class:`RList` (a ``list`` with ``attributes``).
Every decoded vector's R attributes (``names``, ``class``, ...) are in ``attributes_of(value)``.

References:
    1. R Internals, section 1.8 "Serialization Formats" and section 1.17 "Lazy loading".
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RList", "RVector", "attributes_of", "read_lazyload_db", "read_lazyload_index", "unserialize"]

# SEXP type codes (R Internals, 1.1.1) and the special codes of the serializer.
_NILSXP, _SYMSXP, _LISTSXP, _CHARSXP = 0, 1, 2, 9
_LGLSXP, _INTSXP, _REALSXP, _CPLXSXP, _STRSXP, _VECSXP, _EXPRSXP, _RAWSXP = 10, 13, 14, 15, 16, 19, 20, 24
_REFSXP, _NILVALUE, _GLOBALENV, _EMPTYENV, _BASEENV = 255, 254, 253, 242, 241
_UNBOUNDVALUE, _MISSINGARG, _BASENAMESPACE = 252, 251, 250
_IS_OBJECT, _HAS_ATTR, _HAS_TAG = 1 << 8, 1 << 9, 1 << 10
_NA_INTEGER = -(2**31)


class RList(list):  # type: ignore[type-arg]
    """An R list (``VECSXP``) or pairlist: a Python list plus its R ``attributes``."""

    attributes: dict[str, Any]


@dataclass
class RVector:
    """An atomic R vector with attributes (what :func:`attributes_of` reads for numpy arrays)."""

    values: Any
    attributes: dict[str, Any] = field(default_factory=dict)


class _AttrList(list):  # type: ignore[type-arg]
    attributes: dict[str, Any]


def attributes_of(value: Any) -> dict[str, Any]:
    """The R attributes (``names``, ``class``, ...) of a decoded value; ``{}`` if it has none."""
    return dict(getattr(value, "attributes", {}) or {})


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.refs: list[Any] = []

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("R serialization: unexpected end of data (truncated or not XDR format)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_int(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def header(self) -> None:
        fmt = self._take(2)
        if fmt != b"X\n":
            raise ValueError(f"R serialization: only the XDR ('X') format is supported, got {fmt!r}")
        version = self.read_int()
        self.read_int()  # R version that wrote it
        self.read_int()  # minimal R version to read it
        if version == 3:
            n = self.read_int()
            self._take(n)  # native encoding name
        elif version != 2:
            raise ValueError(f"R serialization: format version must be 2 or 3, got {version}")

    def item(self) -> Any:
        flags = self.read_int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & _HAS_ATTR), bool(flags & _HAS_TAG)
        if kind in (_NILVALUE, _NILSXP, _EMPTYENV, _BASEENV, _GLOBALENV, _UNBOUNDVALUE, _MISSINGARG,
                    _BASENAMESPACE):
            return None
        if kind == _REFSXP:
            index = flags >> 8 or self.read_int()
            return self.refs[index - 1]
        if kind == _SYMSXP:
            name = self.item()  # a CHARSXP
            self.refs.append(name)
            return name
        if kind == _CHARSXP:
            n = self.read_int()
            return None if n == -1 else self._take(n).decode("utf-8", errors="replace")
        if kind == _LISTSXP:
            return self._pairlist(has_attr, has_tag)
        if kind in (_LGLSXP, _INTSXP):
            n = self._length()
            values: Any = np.frombuffer(self._take(4 * n), dtype=">i4").astype(np.int32)
        elif kind == _REALSXP:
            n = self._length()
            values = np.frombuffer(self._take(8 * n), dtype=">f8").astype(np.float64)
        elif kind == _CPLXSXP:
            n = self._length()
            pairs = np.frombuffer(self._take(16 * n), dtype=">f8").astype(np.float64)
            values = pairs[0::2] + 1j * pairs[1::2]
        elif kind == _RAWSXP:
            n = self._length()
            values = self._take(n)
        elif kind == _STRSXP:
            n = self._length()
            values = _AttrList(self.item() for _ in range(n))
        elif kind in (_VECSXP, _EXPRSXP):
            n = self._length()
            values = RList(self.item() for _ in range(n))
        else:
            raise ValueError(
                f"R serialization: SEXP type {kind} is not supported by this reader (only data: "
                "NULL, logical, integer, double, complex, character, raw vectors, lists, pairlists)"
            )
        attributes = self._attributes() if has_attr else {}
        if isinstance(values, np.ndarray | bytes):
            return RVector(values, attributes) if attributes else values
        values.attributes = attributes
        return values

    def _length(self) -> int:
        n = self.read_int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.read_int(), self.read_int()
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def _attributes(self) -> dict[str, Any]:
        pairs = self.item()  # a pairlist with tags
        return dict(zip(pairs.attributes.get("tags", []), pairs, strict=True))

    def _pairlist(self, has_attr: bool, has_tag: bool) -> RList:
        out, tags = RList(), []
        while True:
            if has_attr:
                self._attributes()
            tags.append(self.item() if has_tag else None)
            out.append(self.item())
            flags = self.read_int()
            kind = flags & 0xFF
            if kind in (_NILVALUE, _NILSXP):
                break
            if kind != _LISTSXP:
                raise ValueError(f"R serialization: a pairlist ends in SEXP type {kind}, not NULL")
            has_attr, has_tag = bool(flags & _HAS_ATTR), bool(flags & _HAS_TAG)
        out.attributes = {"tags": tags}
        return out


def unserialize(data: bytes) -> Any:
    """Decode one XDR-serialized R object (the bytes after decompression).

    Args:
        data: serialized bytes starting with ``b"X\\n"``.

    Returns:
        The decoded value (see the module docstring for the mapping).

    Raises:
        ValueError: not XDR, truncated, or a type data sets do not use (closures, environments).
    """
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_lazyload_index(rdx: str | Path) -> dict[str, tuple[int, int]]:
    """The ``variable -> (offset, length)`` table of a lazy-load database's ``.rdx`` file."""
    raw = Path(rdx).read_bytes()
    index = unserialize(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw[4:]))
    names = attributes_of(index).get("names", [])
    variables = index[names.index("variables")]
    var_names = attributes_of(variables).get("names", [])
    return {name: (int(v[0]), int(v[1])) for name, v in zip(var_names, variables, strict=True)}


def read_lazyload_db(path: str | Path, names: list[str] | None = None) -> dict[str, Any]:
    """Read variables from an R lazy-load database (``Rdata.rdb`` with its ``Rdata.rdx``).

    Args:
        path: the ``.rdb`` file, the ``.rdx`` file, or their base path without extension.
        names: variables to read (default: all).

    Returns:
        ``{name: value}``; e.g. for janeaustenr ``{"emma": [line, ...], ...}``.

    Raises:
        FileNotFoundError: the ``.rdb`` / ``.rdx`` pair is missing.
        KeyError: a requested name is not in the database (the message lists those that are).

    Example:
        >>> db = read_lazyload_db("/usr/lib/R/site-library/janeaustenr/data/Rdata")  # doctest: +SKIP
        >>> db["emma"][:2]  # doctest: +SKIP
        ['EMMA', '']
    """
    base = Path(path)
    if base.suffix in (".rdb", ".rdx"):
        base = base.with_suffix("")
    rdb, rdx = base.with_suffix(".rdb"), base.with_suffix(".rdx")
    for f in (rdb, rdx):
        if not f.exists():
            raise FileNotFoundError(f"R lazy-load database file not found: {f}")
    table = read_lazyload_index(rdx)
    wanted = list(table) if names is None else names
    unknown = [n for n in wanted if n not in table]
    if unknown:
        raise KeyError(f"{unknown} not in {rdb}; it holds: {', '.join(table)}")
    blob = rdb.read_bytes()
    out: dict[str, Any] = {}
    for name in wanted:
        offset, length = table[name]
        record = blob[offset : offset + length]
        size = struct.unpack(">I", record[:4])[0]
        if record[4:5] in (b"2", b"3"):  # bzip2 / xz records carry a type byte
            raise ValueError(f"{rdb}: variable {name!r} uses bzip2/xz compression; only zlib is supported")
        data = zlib.decompress(record[4:])
        if len(data) != size:
            raise ValueError(f"{rdb}: variable {name!r} decompressed to {len(data)} bytes, expected {size}")
        out[name] = unserialize(data)
    return out
