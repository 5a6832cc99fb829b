"""Malformed input thrown at the readers: no crash, and nothing unaccounted for."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decayrec.errors import InputError
from decayrec.ingest import ingest
from decayrec.store import EventStore

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

GOOD = ["u1", "i1", "view", "2020-01-01T00:00:00Z", "c", "1.5", "1", "s"]
field = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "view",
            "PV",
            "buy",
            "x",
            "2020-01-01",
            "1577836800",
            "1577836800000",
            "-1",
            "nan",
            "1e400",
            "0",
            '"',
            "a,b",
            "é",
            "\t",
            "2020-13-01",
            "NULL",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12),
)
row = st.one_of(
    st.lists(field, min_size=8, max_size=8),
    st.lists(field, min_size=0, max_size=11),
    st.just(GOOD),
)


def to_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["user_id", "item_id", "event", "timestamp", "category_id", "price", "quantity", "session_id"])
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=25))
def test_every_row_is_kept_quarantined_or_a_duplicate(rows):
    work = Path(tempfile.mkdtemp())
    try:
        path = work / "fuzz.csv"
        path.write_text(to_csv(rows), encoding="utf-8")
        quarantine = work / "q.csv"
        with EventStore.open(work / "store", create=True) as store:
            try:
                report = ingest([path], store, quarantine=quarantine)
            except InputError as exc:  # a file with no usable row: one line, and still accounted for
                assert "\n" not in str(exc)  # noqa: PT017 - a generated file may fail or pass: both are checked
                (log,) = store.ingests()
                assert log["kept"] == 0 and log["quarantined"] + log["duplicates"] == log["rows_read"]
                return
            assert report.kept + report.quarantined + report.duplicates == report.rows_read
            assert store.count() == report.kept
            with open(quarantine, newline="") as fh:
                assert len(list(csv.DictReader(fh))) == report.quarantined
    finally:
        shutil.rmtree(work)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    work = Path(tempfile.mkdtemp())
    try:
        path = work / "junk.csv"
        path.write_bytes(data)
        with EventStore.open(work / "store", create=True) as store:
            try:
                report = ingest([path], store)
            except InputError as exc:
                assert "\n" not in str(exc)  # noqa: PT017 - arbitrary bytes may fail or pass: both are checked
                return
            assert report.kept + report.quarantined + report.duplicates == report.rows_read
    finally:
        shutil.rmtree(work)
