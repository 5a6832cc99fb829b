"""Ingest end to end: counts, quarantine file, dedupe, epoch units, streaming, errors."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from decayrec.errors import InputError
from decayrec.ingest import ingest
from decayrec.store import EventStore

MIXED = [
    "u1,i1,view,2017-11-25T08:00:00Z,c1,9.5,1,s1",  # 2 good
    "u1,i1,pv,1511596800,c1,9.5,1,s1",  # 3 duplicate of line 2 once parsed
    "u2,i2,buy,2017-11-25T09:00:00+01:00,,abc,,",  # 4 bad price
    "u3,,view,2017-11-25,c2,,,",  # 5 missing item
    "u4,i4,teleport,2017-11-25,c2,,,",  # 6 unknown event
    "u5,i5,view,notatime,c2,,,",  # 7 bad time
    "u7,i7",  # 8 wrong field count
    "u8,i8,cart,2017-11-26 10:00:00,c3,1,,",  # 9 good
    "u9,i9,fav,2017-11-27T00:00:00Z,,,,",  # 10 good
]


def read_quarantine(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_mixed_file_keeps_every_good_row_and_quarantines_every_bad_one(write_csv, store, tmp_path):
    path = write_csv(MIXED)
    report = ingest([path], store, quarantine=tmp_path / "q.csv")
    assert (report.rows_read, report.kept, report.quarantined, report.duplicates) == (9, 3, 5, 1)
    assert report.kept + report.quarantined + report.duplicates == report.rows_read
    assert sorted(store.scan()["user_id"].to_pylist()) == ["u1", "u8", "u9"]
    rows = read_quarantine(report.quarantine_path)
    assert [(r["line"], r["reason"].split(":")[0]) for r in rows] == [
        ("4", "price is not a number"),
        ("5", "missing item_id"),
        ("6", "unknown event type"),
        ("7", "unparseable timestamp"),
        ("8", "wrong number of fields"),
    ]
    assert rows[0]["file"] == str(path) and rows[0]["price"] == "abc"
    assert rows[4]["raw"] == "u7,i7"


def test_line_numbers_stay_exact_across_blocks_and_rejected_rows(write_csv, store, tmp_path):
    lines, bad = [], set()
    for n in range(3000):
        line_no = n + 2
        if n % 97 == 0:
            lines.append(f"u{n},i{n}")  # wrong field count
            bad.add(line_no)
        elif n % 89 == 0:
            lines.append(f"u{n},i{n},nope,2020-01-01,,,,")
            bad.add(line_no)
        else:
            lines.append(f"u{n},i{n},view,2020-01-01T00:00:{n % 60:02d}Z,c,{n},,")
    path = write_csv(lines)
    report = ingest([path], store, quarantine=tmp_path / "q.csv", block_bytes=4096)
    rows = read_quarantine(report.quarantine_path)
    assert {int(r["line"]) for r in rows} == bad
    # every quarantined row's raw values belong to its line
    for r in rows:
        n = int(r["line"]) - 2
        assert r["user_id"] == f"u{n}" or r["raw"].startswith(f"u{n},")
    assert report.kept == 3000 - len(bad) == store.count()
    prices = dict(zip(store.scan()["user_id"].to_pylist(), store.scan()["price"].to_pylist()))
    assert prices["u1234"] == 1234.0  # values stay with their own row across blocks


def test_ingesting_twice_adds_nothing(write_csv, store):
    path = write_csv(MIXED)
    first = ingest([path], store)
    second = ingest([path], store)
    assert store.count() == first.kept == 3
    assert second.kept == 0 and second.duplicates == 4 and second.quarantined == 5
    assert second.kept + second.quarantined + second.duplicates == second.rows_read


def test_exact_duplicates_only(write_csv, store):
    path = write_csv(
        [
            "u1,i1,view,2017-11-25T08:00:00Z,c1,1,,",
            "u1,i1,view,2017-11-25T08:00:00Z,c1,1,,",  # exact duplicate
            "u1,i1,view,2017-11-25T08:00:00Z,c1,2,,",  # other price: a different row
            "u1,i1,view,2017-11-25T08:00:00Z,,1,,",  # no category: a different row
            "u1,i1,view,2017-11-25T08:00:00.001Z,c1,1,,",  # other time
        ]
    )
    report = ingest([path], store)
    assert (report.kept, report.duplicates) == (4, 1)


def test_epoch_milliseconds_detected_per_file(write_csv, store):
    ms = write_csv(["u1,i1,view,1511596800123,,,,", "u2,i1,view,1511596801000,,,,"], name="ms.csv")
    s = write_csv(["u3,i1,view,1511596800,,,,"], name="s.csv")
    report = ingest([ms, s], store)
    assert [f.epoch_unit for f in report.files] == ["ms", "s"]
    times = dict(zip(store.scan()["user_id"].to_pylist(), store.scan()["timestamp"].to_pylist()))
    assert times == {
        "u1": datetime(2017, 11, 25, 8, 0, 0, 123000),
        "u2": datetime(2017, 11, 25, 8, 0, 1),
        "u3": datetime(2017, 11, 25, 8),
    }


def test_optional_columns_may_be_absent_and_header_case_is_ignored(write_csv, store):
    path = write_csv(["a,x,view,2020-01-01"], header="User_ID, Item_Id ,EVENT,Timestamp")
    ingest([path], store)
    row = store.scan().to_pylist()[0]
    assert row["user_id"] == "a" and row["category_id"] is None


def test_gzip_and_tsv_and_parquet(tmp_path, store):
    import gzip

    gz = tmp_path / "e.csv.gz"
    gz.write_bytes(gzip.compress(b"user_id,item_id,event,timestamp\nu1,i1,view,2020-01-01\n"))
    tsv = tmp_path / "e.tsv"
    tsv.write_text("user_id\titem_id\tevent\ttimestamp\nu2\ti1\tview\t2020-01-02\n")
    report = ingest([gz, tsv], store)
    assert report.kept == 2
    out = tmp_path / "all.parquet"
    store.export(out)
    other = EventStore.open(tmp_path / "other", create=True)
    again = ingest([out], other)
    assert again.kept == 2 and other.scan().equals(store.scan())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id,event\nu,i,view\n", "has no column 'timestamp'"),
        ("", "is empty"),
        ("user_id,item_id,event,timestamp\n", "has no events"),
        ("user_id,item_id,event,timestamp\nu,i,nope,2020-01-01\nu,i,view,never\n", "none of its 2 rows is usable"),
        ("timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,view,355908,\n", "--format retailrocket"),
    ],
)
def test_unusable_files_raise_one_line_errors(tmp_path, store, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        ingest([path], store)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_missing_and_directory_paths(tmp_path, store):
    with pytest.raises(InputError, match="does not exist"):
        ingest([tmp_path / "nope.csv"], store)
    with pytest.raises(InputError, match="is a directory"):
        ingest([tmp_path], store)


def test_default_quarantine_goes_into_the_store_only_when_needed(write_csv, store):
    good = ingest([write_csv(["u,i,view,2020-01-01,,,,"], name="good.csv")], store)
    assert good.quarantine_path is None
    bad = ingest([write_csv(MIXED, name="mixed.csv")], store)
    assert Path(bad.quarantine_path).parent == store.directory / "quarantine"
    assert len(read_quarantine(bad.quarantine_path)) == bad.quarantined


def test_progress_reaches_the_total(write_csv, store):
    seen = []
    path = write_csv([f"u{n},i,view,2020-01-01T00:00:{n % 60:02d}Z,,,," for n in range(500)])
    ingest([path], store, block_bytes=2048, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 2 and seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_ingest_log_is_kept_in_the_store(write_csv, store):
    ingest([write_csv(MIXED)], store)
    (log,) = store.ingests()
    assert log["rows_read"] == 9 and log["files"][0]["reasons"]["missing item_id"] == 1


def test_a_large_file_twice_leaves_exactly_the_distinct_rows(tmp_path, store):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_ingest import make_csv

    path = tmp_path / "big.csv"
    distinct = make_csv(path, 200_000, seed=3)
    first = ingest([path], store, block_bytes=1 << 20)
    second = ingest([path], store, block_bytes=1 << 20)
    assert store.count() == first.kept == distinct < 200_000
    assert first.duplicates == 200_000 - distinct
    assert second.kept == 0 and second.duplicates == 200_000
