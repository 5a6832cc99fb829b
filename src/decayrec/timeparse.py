"""Parsing the times users type (``--at``, ``--cutoff``): the same forms as the ``timestamp`` column."""

from __future__ import annotations

from datetime import UTC, datetime

from decayrec import schema
from decayrec.errors import InputError


def parse_time(text: str, *, option: str = "--at") -> datetime:
    """An ISO-8601 time (naive = UTC, ``Z`` or an offset) or a Unix epoch number, as aware UTC.

    The epoch unit (seconds, milliseconds, microseconds) is told from the magnitude, as for files.
    """
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        unit = schema.detect_epoch_unit(abs(number))
        micros = int(number * schema.EPOCH_UNITS[unit])
        at = datetime.fromtimestamp(0, UTC) + _micros(micros)
    else:
        try:
            at = datetime.fromisoformat(value.replace(" UTC", "+00:00"))
        except ValueError:
            raise InputError(
                f"{option} {text!r} is not a time",
                "write it as ISO-8601 (2017-11-25T08:00:00Z, 2017-11-25) or a Unix epoch number",
            ) from None
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if not (schema.EARLIEST <= at < schema.LATEST):
        raise InputError(
            f"{option} {text!r} reads as {at:%Y-%m-%d}", f"give a time between {schema.EARLIEST:%Y} and {schema.LATEST:%Y}"
        )
    return at


def _micros(n: int):
    from datetime import timedelta

    return timedelta(microseconds=n)


def iso(at: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, dropping zero microseconds."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds" if at.microsecond else "seconds") + "Z"
