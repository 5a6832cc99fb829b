"""Readers for ``--format``: the canonical layout and the public datasets as published.

Each reader turns its files into :class:`~decayrec.io.source.RawBatch` streams of string
columns named as in :mod:`decayrec.schema`; validation happens afterwards, in one place.
Register a reader by adding it to :data:`READERS`.
"""

from __future__ import annotations

from decayrec.errors import InputError
from decayrec.io.source import Reader


def _registry() -> dict[str, Reader]:
    from decayrec.io.formats import canonical

    readers = [canonical.READER]
    try:  # the public-dataset readers live in one module each
        from decayrec.io.formats import public

        readers += public.READERS
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    return {r.name: r for r in readers}


READERS: dict[str, Reader] = _registry()


def get_reader(name: str) -> Reader:
    try:
        return READERS[name]
    except KeyError:
        raise InputError(f"unknown --format {name!r}", f"use one of: {', '.join(sorted(READERS))}") from None


__all__ = ["READERS", "Reader", "get_reader"]
