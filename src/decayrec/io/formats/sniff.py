"""Recognise a public dataset's layout from its header, to suggest the right --format."""

from __future__ import annotations

import re
from collections.abc import Sequence


def normalise(name: str) -> str:
    """Lower case, without blanks, ``_``, ``-``, ``.`` or a BOM: ``userId``, ``user_id`` and ``UserID`` match."""
    return "".join(ch for ch in name.strip().lstrip("\ufeff").lower() if ch not in " _-.")


# Normalised header columns that identify each published layout (any one signature of a
# format suffices; the main events file's signature first).
SIGNATURES: dict[str, tuple[frozenset[str], ...]] = {
    "retailrocket": (
        frozenset({"timestamp", "visitorid", "event", "itemid"}),
        frozenset({"timestamp", "itemid", "property", "value"}),
    ),
    "taobao": (frozenset({"userid", "itemid", "categoryid", "behaviortype"}),),  # a copy given a header
    "rees46": (frozenset({"eventtime", "eventtype", "productid", "userid"}),),
    "instacart": (
        frozenset({"orderid", "userid", "ordernumber"}),
        frozenset({"orderid", "productid", "addtocartorder"}),
    ),
    "movielens": (frozenset({"userid", "movieid", "rating", "timestamp"}),),
    "diginetica": (frozenset({"sessionid", "itemid", "timeframe", "eventdate"}),),
    "olist": (
        frozenset({"orderid", "customerid", "orderpurchasetimestamp"}),
        frozenset({"orderid", "orderitemid", "productid"}),
    ),
}

_INT = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(\.\d*)?")


def _headerless(line: str) -> str | None:
    """The format of a file without header, from its first line read as one field."""
    if "::" in line:
        parts = [p.strip() for p in line.split("::")]
        if len(parts) == 4 and all(_NUMBER.fullmatch(p) for p in parts):
            return "movielens"  # ratings.dat
    elif "\t" in line:
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 4 and all(_NUMBER.fullmatch(p) for p in parts):
            return "movielens"  # u.data
    else:
        parts = line.split()
        if (
            len(parts) == 4
            and _INT.fullmatch(parts[0])
            and re.fullmatch(r"(19|20)\d{6}", parts[1])
            and all(_NUMBER.fullmatch(p) for p in parts[2:])
        ):
            return "cdnow"  # CDNOW_master.txt
    return None


def guess_format(header: Sequence[str]) -> str | None:
    """The ``--format`` whose layout the first row of a file (read as comma-separated) matches, if any."""
    header = list(header)
    if len(header) == 1 and ";" in header[0]:
        header = header[0].split(";")
    names = {normalise(h) for h in header}
    for name, signatures in SIGNATURES.items():
        if any(needed <= names for needed in signatures):
            return name
    if len(header) == 5 and all(h.strip().isdigit() for h in header[:3]):
        return "taobao"
    if len(header) == 1:
        return _headerless(header[0])
    return None
