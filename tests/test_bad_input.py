"""Bad input never destroys, hides or silently drops data, and always exits 2 with one line.

Each test starts from a reproduction (a hand-made file run through the installed command),
then a property test per class generates the siblings: stray quotes and bad bytes at random
lines, broken compression, every command with every kind of unusable output path.
"""

from __future__ import annotations

import gzip
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

DECAYREC = str(Path(sys.executable).with_name("decayrec"))
HEADER = "user_id,item_id,event,timestamp,category_id"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DECAYREC, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def rows(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"u{rng.randrange(20)},i{rng.randrange(15)},view,2024-05-{1 + j % 28:02d}T{j % 24:02d}:00:00Z,c{j % 3}" for j in range(n)
    ]


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def balance(text: str) -> tuple[int, int, int, int]:
    """kept, quarantined, duplicates, rows read from the last balance line of a report."""
    line = [ln for ln in text.splitlines() if ln.startswith("kept ") or ": kept " in ln][-1]
    nums = [int(tok.replace(",", "")) for tok in line.replace("=", " ").split() if tok.replace(",", "").isdigit()]
    return nums[0], nums[1], nums[2], nums[3]


def one_line_exit_2(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


# -- inputs are never written over ---------------------------------------------------------------
def test_quarantine_onto_the_input_is_refused_and_the_input_kept(tmp_path):
    events = write(tmp_path / "v.csv", rows(30))
    before = events.read_bytes()
    one_line_exit_2(run("ingest", events, "--store", tmp_path / "s", "--quarantine", events), "also an input")
    assert events.read_bytes() == before
    assert not (tmp_path / "s").exists()  # refused before any work: no store made


@pytest.mark.parametrize("command", ["recommend", "churn", "trends", "fit-decay", "evaluate"])
def test_no_command_writes_over_its_events_file(tmp_path, command):
    events = write(tmp_path / "e.csv", rows(60))
    before = events.read_bytes()
    extra = ["--users", write(tmp_path / "u.txt", ["u1"], header="u2")] if command == "recommend" else []
    suffix = ".json" if command in ("fit-decay", "evaluate") else ".csv"
    target = events if suffix == ".csv" else events.with_suffix(".json")
    if suffix == ".json":  # the events file under a .json name: still an input
        shutil.copy(events, target)
        events = target
        before = events.read_bytes()
    one_line_exit_2(run(command, "--events", events, *extra, "--out", target), "also an input")
    assert events.read_bytes() == before


# -- one broken line stays one quarantined row -----------------------------------------------------
def test_a_stray_quote_quarantines_only_its_line(tmp_path):
    good = rows(1999, seed=3)
    path = write(tmp_path / "q.csv", ["u1,i1,view,2024-05-01T00:00:00Z,c1", 'u1,"i1,view,2024-05-01', *good])
    result = run("ingest", path, "--store", tmp_path / "s", "--quarantine", tmp_path / "bad.csv")
    assert result.returncode == 0, result.stderr
    kept, quarantined, duplicates, read = balance(result.stdout)
    assert read == 2001 and quarantined == 1 and kept + duplicates == 2000
    bad = (tmp_path / "bad.csv").read_text().splitlines()
    assert len(bad) == 2 and bad[1].startswith('"') and ",3," in bad[1] and "unbalanced quote" in bad[1]


@pytest.mark.parametrize("seed", range(4))
def test_stray_quotes_and_bad_bytes_anywhere_cost_only_their_lines(tmp_path, seed):
    """Generated files: random lines broken by an open quote or a Latin-1 byte; every other
    line is kept, the broken ones are quarantined at their own physical line numbers."""
    rng = random.Random(seed)
    lines = [ln.encode() for ln in rows(500, seed=seed)]
    broken = sorted(rng.sample(range(len(lines)), 12))
    for j in broken:
        user, item, rest = lines[j].split(b",", 2)
        lines[j] = rng.choice([user + b',"' + item + b"," + rest, user + b"," + item + b"\xe9," + rest, b'"' + lines[j]])
    path = tmp_path / ("f.csv.gz" if seed % 2 else "f.csv")
    data = b"\n".join([HEADER.encode(), *lines]) + b"\n"
    path.write_bytes(gzip.compress(data) if seed % 2 else data)
    result = run("ingest", path, "--store", tmp_path / "s", "--quarantine", tmp_path / "bad.csv")
    assert result.returncode == 0, result.stderr
    kept, quarantined, duplicates, read = balance(result.stdout)
    assert (read, quarantined) == (500, 12) and kept + duplicates == 488
    import csv

    with open(tmp_path / "bad.csv", newline="", encoding="utf-8") as fh:
        got = sorted(int(r["line"]) for r in csv.DictReader(fh))
    assert got == [j + 2 for j in broken]  # the header is line 1


# -- bad input is exit 2, never an internal error ------------------------------------------------
def test_broken_files_are_exit_2(tmp_path):
    text = "\n".join([HEADER, *rows(200)]) + "\n"
    (tmp_path / "plain.csv.gz").write_text(text)
    packed = gzip.compress(text.encode())
    (tmp_path / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    one_line_exit_2(run("ingest", tmp_path / "plain.csv.gz", "--store", tmp_path / "s1"), "not a readable gzip")
    one_line_exit_2(run("ingest", tmp_path / "cut.csv.gz", "--store", tmp_path / "s2"), "cut short")
    one_line_exit_2(run("trends", "--events", tmp_path / "cut.csv.gz", "--out", tmp_path / "t.csv"), "cut short")


def test_bad_paths_are_exit_2_before_any_work(tmp_path):
    events = write(tmp_path / "e.csv", rows(100))
    users = write(tmp_path / "u.txt", ["u1"], header="u2")
    folder = tmp_path / "adir"
    folder.mkdir()
    one_line_exit_2(run("recommend", "--events", events, "--users", folder, "--out", tmp_path / "r.csv"), "directory")
    one_line_exit_2(run("recommend", "--events", events, "--users", users, "--out", folder), "directory")
    one_line_exit_2(run("ingest", events, "--store", tmp_path / "s", "--quarantine", folder), "directory")
    one_line_exit_2(run("ingest", events, "--store", "/proc/decayrec-nope/s"), "store")
    one_line_exit_2(run("recommend", "--events", events, "--users", users, "--out", tmp_path / "r.xlsx"), "FILE.parquet")
    one_line_exit_2(run("churn", "--events", events, "--out", tmp_path / "r.csv", "--plan", tmp_path / "r.csv"), "same file")
    one_line_exit_2(
        run(
            "recommend",
            "--events",
            events,
            "--users",
            users,
            "--out",
            tmp_path / "r.csv",
            "--model",
            "repeat",
            "--at",
            "2020-01-01",
        ),
        "before the first event",
    )


@pytest.mark.parametrize("command", ["recommend", "churn", "trends", "fit-decay", "profile", "evaluate", "export", "ingest"])
@pytest.mark.parametrize("kind", ["directory", "unwritable", "suffix"])
def test_every_output_path_kind_is_checked_first(tmp_path, command, kind):
    """Every command, every unusable output: exit 2 in one line, nothing computed or written."""
    events = write(tmp_path / "e.csv", rows(80))
    users = write(tmp_path / "u.txt", ["u1"], header="u2")
    store = tmp_path / "s"
    if command == "export":
        assert run("ingest", events, "--store", store).returncode == 0
    target = {
        "directory": tmp_path / "adir",
        "unwritable": Path("/proc/decayrec-nope/out.csv"),
        "suffix": tmp_path / "out.weird",
    }[kind]
    if kind == "directory":
        target.mkdir()
    option = "--quarantine" if command == "ingest" else "--out"
    args = {
        "recommend": ["--events", events, "--users", users, "--model", "repeat"],
        "churn": ["--events", events],
        "trends": ["--events", events],
        "fit-decay": ["--events", events],
        "profile": ["--events", events, "--user", "u1"],
        "evaluate": ["--events", events, "--models", "repeat"],
        "export": ["--store", store],
        "ingest": [events, "--store", tmp_path / "s2"],
    }[command]
    result = run(command, *args, option, target)
    one_line_exit_2(result)
    assert not (tmp_path / "s2").exists()


# -- --events FILE reports like ingest ---------------------------------------------------------------
@pytest.mark.parametrize("command", ["trends", "recommend", "fit-decay", "evaluate", "churn"])
def test_events_file_reports_its_balance_and_quarantines_on_request(tmp_path, command):
    lines = rows(400, seed=1) + ["u1,i1,teleport,2024-05-01T00:00:00Z,c1", rows(1, seed=1)[0]]
    events = write(tmp_path / "e.csv", lines)
    extra = {
        "recommend": ["--users", write(tmp_path / "u.txt", ["u1"], header="u2"), "--model", "repeat"],
        "evaluate": ["--models", "repeat"],
        "churn": ["--model", "bgnbd", "--horizon-days", "3"],
    }.get(command, [])
    suffix = ".json" if command in ("fit-decay", "evaluate") else ".csv"
    result = run(command, "--events", events, *extra, "--out", tmp_path / f"out{suffix}", "--quarantine", tmp_path / "bad.csv")
    assert result.returncode == 0, result.stderr
    kept, quarantined, duplicates, read = balance(result.stderr)
    assert (read, quarantined) == (402, 1) and kept + duplicates == 401 and duplicates >= 1
    assert "teleport" in (tmp_path / "bad.csv").read_text()


# -- multi-file ingest: refused up front, or reported per file with the log -----------------------
def test_an_empty_file_among_several_stores_nothing(tmp_path):
    good = write(tmp_path / "good.csv", rows(50))
    (tmp_path / "empty.csv").write_text("")
    one_line_exit_2(run("ingest", good, tmp_path / "empty.csv", "--store", tmp_path / "s"), "empty.csv is empty")
    from decayrec.store import EventStore

    if (tmp_path / "s").exists() and EventStore.is_store(tmp_path / "s"):
        with EventStore.open(tmp_path / "s", read_only=True) as s:
            assert s.count() == 0


def test_a_file_with_no_rows_among_several_is_reported_and_logged(tmp_path):
    good = write(tmp_path / "good.csv", rows(50))
    header_only = write(tmp_path / "hdr.csv", [])
    result = run("ingest", good, header_only, "--store", tmp_path / "s")
    one_line_exit_2(result, "hdr.csv has no events", "are stored")
    assert "good.csv" in result.stdout and "hdr.csv" in result.stdout  # the per-file report was printed
    from decayrec.store import EventStore

    with EventStore.open(tmp_path / "s", read_only=True) as s:
        log = s.ingests()
        assert s.count() == balance(result.stdout)[0] > 0
    assert [f["source"].endswith(n) for f, n in zip(log[-1]["files"], ("good.csv", "hdr.csv"))] == [True, True]


# -- impossible values --------------------------------------------------------------------------------
@pytest.mark.parametrize("stamp", ["2024-05-01T09:00:00+25:00", "2024-05-01T09:00:00-1500", "2024-05-01T09:00:00+02:75"])
def test_impossible_offsets_are_quarantined(tmp_path, stamp):
    path = write(tmp_path / "tz.csv", [f"u1,i1,view,{stamp},c1", *rows(10)])
    result = run("ingest", path, "--store", tmp_path / "s", "--quarantine", tmp_path / "bad.csv")
    assert result.returncode == 0 and balance(result.stdout)[1] == 1
    assert "impossible UTC offset" in (tmp_path / "bad.csv").read_text()


def test_real_offsets_are_kept(tmp_path):
    stamps = ["2024-05-01T09:00:00+14:00", "2024-05-01T09:00:00-12:00", "2024-05-01T09:00:00+0530", "2024-05-01T09:00+05:45"]
    path = write(tmp_path / "tz.csv", [f"u1,i{j},view,{s},c1" for j, s in enumerate(stamps)])
    result = run("ingest", path, "--store", tmp_path / "s")
    assert result.returncode == 0 and balance(result.stdout)[:2] == (4, 0)


# -- short logs get sensible answers ----------------------------------------------------------------
def test_trends_on_one_event_do_not_extrapolate_a_flood(tmp_path):
    path = write(tmp_path / "one.csv", ["u1,i1,view,2024-05-01T00:00:00Z,c1"])
    assert run("trends", "--events", path, "--out", tmp_path / "t.csv").returncode == 0
    import csv

    with open(tmp_path / "t.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["forecast"]) < 3 and float(row["interest"]) < 3 and row["evidence"] == "too few events"


def test_profile_without_categories_lists_items(tmp_path):
    path = write(tmp_path / "noc.csv", [r.rsplit(",", 1)[0] for r in rows(200)], header="user_id,item_id,event,timestamp")
    result = run("profile", "--events", path, "--user", "u1", "--out", tmp_path / "p.json")
    assert result.returncode == 0, result.stderr
    import json

    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["items"]["n_live"] + doc["items"]["n_faded"] > 0 and doc["categories"]["n_live"] == 0
    assert "items only" in result.stderr


def test_recommendations_as_parquet_are_parquet(tmp_path):
    events = write(tmp_path / "e.csv", rows(200))
    users = write(tmp_path / "u.txt", ["u1"], header="u2")
    result = run("recommend", "--events", events, "--users", users, "--out", tmp_path / "r.parquet", "--model", "repeat")
    assert result.returncode == 0, result.stderr
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == ["user_id", "item_id", "rank", "score", "reason"]
    assert set(table["user_id"].to_pylist()) == {"u1", "u2"}


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_stray_quote_costs_one_line_whatever_the_line_ends(tmp_path, newline):
    lines = [HEADER, 'u1,"i1,view,2024-05-01T00:00:00Z,c1', *rows(40)]
    path = tmp_path / "e.csv"
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    result = run("ingest", path, "--store", tmp_path / "s", "--quarantine", tmp_path / "bad.csv")
    assert result.returncode == 0, result.stderr
    assert balance(result.stdout)[1:] == (1, 0, 41)
    assert '"e.csv",2,"unbalanced quote' in (tmp_path / "bad.csv").read_text().replace(str(tmp_path) + "/", "")


def test_a_byte_order_mark_before_a_quoted_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b'\xef\xbb\xbf"user_id","item_id","event","timestamp"\nu1,i1,view,2024-05-01T00:00:00Z\n')
    result = run("ingest", path, "--store", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    assert balance(result.stdout) == (1, 0, 0, 1)
