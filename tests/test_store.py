"""The embedded store: as-of scans, export format and order, schema version, deletion."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq
import pytest

from decayrec.errors import InputError, StoreError
from decayrec.ingest import ingest
from decayrec.store import DB_FILE, EventStore

ROWS = [
    "b,i2,view,2020-01-02T00:00:00Z,c,,,",
    "a,i9,cart,2020-01-01T00:00:00.250Z,c,2.5,3,s1",
    "a,i1,view,2020-01-02T00:00:00Z,,,,",
    "c,i1,purchase,2020-01-03T12:00:00+02:00,c,10,1,",
]


@pytest.fixture
def filled(write_csv, store):
    ingest([write_csv(ROWS)], store)
    return store


def test_as_of_scan_never_reads_past_the_time(filled):
    at = datetime(2020, 1, 2, tzinfo=UTC)
    assert filled.count(at) == 3
    assert max(filled.scan(at)["timestamp"].to_pylist()) <= datetime(2020, 1, 2)
    assert filled.count(datetime(2019, 12, 31, tzinfo=UTC)) == 0
    assert filled.last_time() == datetime(2020, 1, 3, 10)


def test_export_csv_is_canonical_and_sorted(filled, tmp_path):
    out = tmp_path / "out.csv"
    assert filled.export(out) == 4
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [
        "user_id",
        "item_id",
        "event",
        "timestamp",
        "category_id",
        "price",
        "quantity",
        "session_id",
        "event_id",
        "rec_id",
    ]
    assert rows[1:] == [
        ["a", "i9", "cart", "2020-01-01T00:00:00.250000Z", "c", "2.5", "3.0", "s1", "", ""],
        ["a", "i1", "view", "2020-01-02T00:00:00Z", "", "", "", "", "", ""],
        ["b", "i2", "view", "2020-01-02T00:00:00Z", "c", "", "", "", "", ""],
        ["c", "i1", "purchase", "2020-01-03T10:00:00Z", "c", "10.0", "1.0", "", "", ""],
    ]


def test_export_as_of_and_parquet(filled, tmp_path):
    out = tmp_path / "out.parquet"
    assert filled.export(out, datetime(2020, 1, 2, tzinfo=UTC)) == 3
    table = pq.read_table(out)
    assert table.column_names[:4] == ["user_id", "item_id", "event", "timestamp"]
    assert table.num_rows == 3 and str(table.schema.field("timestamp").type.tz) in ("UTC", "Etc/UTC")


def test_export_rejects_unknown_suffix(filled, tmp_path):
    with pytest.raises(InputError, match=r"FILE\.csv"):
        filled.export(tmp_path / "out.json")


def test_exported_csv_reingests_to_the_same_events(filled, tmp_path):
    out = tmp_path / "out.csv"
    filled.export(out)
    other = EventStore.open(tmp_path / "other", create=True)
    assert ingest([out], other).kept == 4
    assert other.scan().equals(filled.scan())


def test_open_missing_store_says_how_to_create_one(tmp_path):
    with pytest.raises(InputError, match="decayrec ingest"):
        EventStore.open(tmp_path / "none")


def test_schema_version_is_checked(tmp_path):
    EventStore.open(tmp_path / "s", create=True).close()
    con = duckdb.connect(str(tmp_path / "s" / DB_FILE))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        EventStore.open(tmp_path / "s")


def test_store_held_by_another_process_gives_a_clear_error(tmp_path):
    EventStore.open(tmp_path / "s", create=True).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys,time; c=duckdb.connect({str(tmp_path / 's' / DB_FILE)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match="another decayrec process"):
            EventStore.open(tmp_path / "s")
    finally:
        holder.kill()
        holder.wait()


def test_delete_user_erases_only_that_user(filled):
    assert filled.delete_user("a") == 2
    assert sorted(filled.scan()["user_id"].to_pylist()) == ["b", "c"]


def test_summary(filled):
    s = filled.summary()
    assert (s["users"], s["items"], s["events"]) == (3, 3, 4)
    assert s["events_by_type"] == {"view": 2, "click": 0, "cart": 1, "fav": 0, "purchase": 1}


EVENT_ID_HEADER = "user_id,item_id,event,timestamp,event_id,rec_id"


def test_an_event_id_makes_a_resend_a_duplicate_whatever_else_differs(write_csv, store):
    first = write_csv(["a,i1,view,2020-01-01T00:00:00Z,e1,", "a,i2,view,2020-01-01T00:00:00Z,,L1"], header=EVENT_ID_HEADER)
    report = ingest([first], store)
    assert (report.kept, report.duplicates) == (2, 0)
    # e1 again with another item and time, e2 twice in one file, the id-less row again.
    again = write_csv(
        [
            "a,i9,cart,2020-02-01T00:00:00Z,e1,",
            "b,i3,view,2020-01-05T00:00:00Z,e2,",
            "b,i4,view,2020-01-06T00:00:00Z,e2,",
            "a,i2,view,2020-01-01T00:00:00Z,,L1",
        ],
        name="again.csv",
        header=EVENT_ID_HEADER,
    )
    report = ingest([again], store)
    assert (report.kept, report.duplicates) == (1, 3)
    rows = store.scan().to_pylist()
    assert sorted((r["event_id"], r["item_id"]) for r in rows if r["event_id"]) == [("e1", "i1"), ("e2", "i3")]
    assert [r["rec_id"] for r in rows if r["item_id"] == "i2"] == ["L1"]
    assert store.event_ids() == {"e1", "e2"}


def test_a_version_1_store_is_upgraded_when_opened_for_writing(tmp_path):
    con = duckdb.connect(str(tmp_path / DB_FILE))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("CREATE TYPE event_type AS ENUM ('view', 'click', 'cart', 'fav', 'purchase')")
    con.execute(
        "CREATE TABLE events (user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL, event event_type NOT NULL, "
        "ts TIMESTAMP NOT NULL, category_id VARCHAR, price DOUBLE, quantity DOUBLE, session_id VARCHAR)"
    )
    con.execute("CREATE TABLE ingests (id INTEGER PRIMARY KEY, report JSON NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO events VALUES ('a', 'i1', 'view', TIMESTAMP '2020-01-01', NULL, NULL, NULL, NULL)")
    con.close()
    with pytest.raises(StoreError, match="upgrades when it opens"):
        EventStore.open(tmp_path, read_only=True)
    with EventStore.open(tmp_path) as s:
        assert s.schema_version == 2
        assert s.scan().to_pylist()[0]["event_id"] is None
    with EventStore.open(tmp_path, read_only=True) as s:
        assert s.count() == 1


def test_user_events_reads_one_user_as_of_a_time(filled):
    rows = filled.user_events("a", datetime(2020, 1, 1, 12, tzinfo=UTC)).to_pylist()
    assert [r["item_id"] for r in rows] == ["i9"]
    assert filled.user_events("nobody").num_rows == 0
