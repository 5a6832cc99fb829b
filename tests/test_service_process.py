"""``decayrec serve`` as a real process on loopback: SIGKILL at random moments loses no acknowledged
event and stores none twice; the store's lock is explained to the CLI; logs are JSON; no keys, no start."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from decayrec.store import EventStore
from servicekit import ADMIN, KEYS, WRITE, bearer

pytestmark = pytest.mark.slow

DECAYREC = str(Path(sys.executable).with_name("decayrec"))
USERS = [f"k{j}" for j in range(8)]
BASE = datetime(2026, 11, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, store: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = store.parent / f"serve-{self.port}.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [DECAYREC, "serve", "--store", str(store), "--port", str(self.port), "--refit-minutes", "0", *extra],
            env={**os.environ, "DECAYREC_API_KEYS": KEYS, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the server did not come up")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self._log.close()


def batch_events(ids: list[str]) -> list[dict]:
    out = []
    for event_id in ids:
        n = int(event_id.rsplit("-", 1)[1])
        out.append(
            {
                "user_id": USERS[n % len(USERS)],
                "item_id": f"i{n % 37}",
                "event": "view" if n % 5 else "purchase",
                "timestamp": (BASE + timedelta(seconds=n)).isoformat(),
                "event_id": event_id,
            }
        )
    return out


class Stream:
    """Batches of 50 new events (or unanswered ones again) posted until told to stop; acknowledged ids kept."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.unacked: list[list[str]] = []
        self.counter = 0

    def run(self, url: str, cycle: int, stop: threading.Event, first_ack: threading.Event) -> None:
        with httpx.Client(base_url=url, headers=bearer(WRITE), timeout=10) as client:
            resend = list(self.unacked)
            self.unacked.clear()
            while not stop.is_set():
                if resend:
                    ids = resend.pop()
                else:
                    ids = [f"c{cycle}-{self.counter + j}" for j in range(50)]
                    self.counter += 50
                try:
                    answer = client.post("/events", json={"events": batch_events(ids)})
                except httpx.HTTPError:
                    self.unacked.append(ids)  # no answer: not acknowledged, may or may not be stored
                    return
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["accepted"] + body["duplicates"] == len(ids) and not body["rejected"]
                self.acked.extend(ids)
                first_ack.set()


def test_sigkill_at_random_moments_loses_no_acknowledged_event_and_stores_none_twice(tmp_path):
    store = tmp_path / "store"
    rng = random.Random(7)
    stream = Stream()
    cycles = 20
    cut = 0  # kills that caught a batch in flight
    for cycle in range(cycles):
        server = Server(store)
        server.wait_up()
        stop, first_ack = threading.Event(), threading.Event()
        writer = threading.Thread(target=stream.run, args=(server.url, cycle, stop, first_ack))
        writer.start()
        assert first_ack.wait(30)
        time.sleep(rng.uniform(0.0, 0.6))
        server.kill()
        stop.set()
        writer.join(30)
        cut += bool(stream.unacked)
    acked = stream.acked

    # Restart once more: the live state is rebuilt from the store and must agree with it.
    server = Server(store)
    server.wait_up()
    live = {}
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN), timeout=10) as client:
        for user in USERS:
            answer = client.get(f"/users/{user}/profile")
            live[user] = answer.json()["live"]["events"] if answer.status_code == 200 else 0
    server.stop()

    with EventStore.open(store, read_only=True) as s:
        rows = s.scan().to_pylist()
    stored = Counter(r["event_id"] for r in rows)
    assert len(acked) >= cycles * 50 and cut >= cycles // 2, (len(acked), cut)
    assert not [i for i in set(acked) if stored[i] != 1], "an acknowledged event is missing"
    assert max(stored.values()) == 1, "an event is stored twice"
    per_user = Counter(r["user_id"] for r in rows)
    assert live == {u: per_user.get(u, 0) for u in USERS}, "the restarted live state disagrees with the store"


def test_the_cli_is_told_who_holds_the_store_and_logs_are_json(tmp_path):
    store = tmp_path / "store"
    server = Server(store, "--insecure-no-auth", env={"DECAYREC_API_KEYS": ""})
    try:
        server.wait_up()
        result = subprocess.run(
            [DECAYREC, "export", "--store", str(store), "--out", str(tmp_path / "x.csv")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "held by decayrec serve" in result.stderr and server.url in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        # Without keys configured, anyone may read: said on start.
        assert httpx.get(server.url + "/trends").status_code == 200
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert any("AUTHENTICATION IS OFF" in e for e in events) and "serving" in events
    assert all({"time", "level", "event"} <= set(line) for line in lines)
    assert not (store / "serve.json").exists()  # the lock file goes with the server


def test_serve_without_keys_refuses_to_start_in_one_line(tmp_path):
    result = subprocess.run(
        [DECAYREC, "serve", "--store", str(tmp_path / "s")],
        env={**os.environ, "DECAYREC_API_KEYS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "DECAYREC_API_KEYS" in result.stderr and "--insecure-no-auth" in result.stderr
