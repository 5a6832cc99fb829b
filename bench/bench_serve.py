"""Service load benchmark: ``decayrec serve`` on loopback under a bounded mixed load.

Builds a store from the simulator, starts the server in a child process (the store's one
writer, real keys, no scheduled refits), waits until its first models are fitted, warms it
up, then runs, with the load generator on the same machine:

1. **mixed**: open-loop arrivals for ``--seconds`` on at most ``--clients`` connections:
   recommendations at ``--rec-rps``, profiles at ``--profile-rps`` and event batches of
   ``--batch`` events at ``--batch-rps`` (durable acknowledgements);
2. **ingest**: ``--writers`` clients posting batches of 1,000 events back to back for
   ``--ingest-seconds``: the most events per second acknowledged durably;
3. **visibility**: an event for a new user, then at once that user's profile and list.

Latency is measured from each request's scheduled start, so a server (or a client) that falls
behind pays for its queue; throughput is what was answered. Results per route (count, rate,
p50/p95/p99, errors) go to ``--out`` (JSON) and a Markdown table beside it.

    python bench/bench_serve.py --out bench/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import numpy as np

KEY = "bench-admin-key-0123456789abcdef"


def build_store(directory: Path, users: int, seed: int) -> dict:
    from decayrec.ingest import ingest
    from decayrec.simulate import SimConfig, simulate
    from decayrec.store import EventStore

    # The shop's history ends now: the server decays to its wall clock, and posted events are stamped with it.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)
    events, _ = simulate(SimConfig(n_users=users, n_items=2_000, n_categories=20, days=60, seed=seed, start=start)).write(
        directory / "sim"
    )
    with EventStore.open(directory / "store", create=True) as store:
        ingest([events], store)
        summary = store.summary()
        ids = sorted(set(store.scan()["user_id"].to_pylist()))
    return {"users": ids, "events": summary["events"], "items": summary["items"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, port: int, log: Path) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("decayrec"))
    return subprocess.Popen(
        [exe, "serve", "--store", str(store), "--port", str(port), "--refit-minutes", "0"],
        env={**os.environ, "DECAYREC_API_KEYS": f"{KEY}:admin"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready in time")


class Route:
    def __init__(self, name: str):
        self.name = name
        self.latency: list[float] = []
        self.errors = 0
        self.events = 0

    def summary(self, seconds: float) -> dict:
        lat = np.array(self.latency) * 1000
        q = np.percentile(lat, [50, 95, 99]) if lat.size else [float("nan")] * 3
        out = {
            "route": self.name,
            "requests": int(lat.size),
            "errors": self.errors,
            "per_second": lat.size / seconds,
            "p50_ms": float(q[0]),
            "p95_ms": float(q[1]),
            "p99_ms": float(q[2]),
        }
        if self.events:
            out["events_per_second"] = self.events / seconds
        return out


def event_batch(rng: random.Random, users: list[str], n: int, items: int) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "user_id": rng.choice(users),
            "item_id": f"i{rng.randrange(items):04d}",
            "event": "view" if rng.random() < 0.8 else "cart",
            "timestamp": now,
            "event_id": f"b{rng.getrandbits(64):x}",
        }
        for _ in range(n)
    ]


async def fetch(client: aiohttp.ClientSession, method: str, path: str, body) -> tuple[int, dict | None]:
    """One request; (status, parsed body), status 0 when the connection failed."""
    try:
        async with client.request(method, path, json=body) as answer:
            data = await answer.json() if answer.content_type == "application/json" else None
            return answer.status, data
    except aiohttp.ClientError:
        return 0, None


async def open_loop(
    client: aiohttp.ClientSession, route: Route, rate: float, seconds: float, make, gate: asyncio.Semaphore
) -> None:
    """Requests at fixed intervals; latency from each one's scheduled time."""
    start = time.perf_counter()
    tasks = []
    n = int(rate * seconds)

    async def one(scheduled: float) -> None:
        method, path, body, events = make()
        async with gate:
            status, _ = await fetch(client, method, path, body)
            ok = status == 200
        route.latency.append(time.perf_counter() - scheduled)
        if ok:
            route.events += events
        else:
            route.errors += 1

    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)


def _makers(rng: random.Random, data: dict, batch: int):
    users = data["users"]

    def rec():
        user = rng.choice(users) if rng.random() < 0.9 else f"new-{rng.randrange(10**6)}"
        return "GET", f"/users/{user}/recommendations?k=20", None, 0

    def prof():
        return "GET", f"/users/{rng.choice(users)}/profile", None, 0

    def post():
        return "POST", "/events", {"events": event_batch(rng, users, batch, data["items"])}, batch

    return {"GET /users/{id}/recommendations": rec, "GET /users/{id}/profile": prof, "POST /events": post}


def _client(url: str, clients: int) -> aiohttp.ClientSession:
    # aiohttp's C parser keeps the load generator's own cost per request small on a shared 2-core machine.
    return aiohttp.ClientSession(
        base_url=url,
        headers={"Authorization": f"Bearer {KEY}"},
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def warm_up(url: str, data: dict, seed: int) -> None:
    makers = _makers(random.Random(seed + 9), data, 100)
    async with _client(url, 4) as client:
        for _ in range(100):
            for make in makers.values():
                method, path, body, _ = make()
                await fetch(client, method, path, body)


async def rates(url: str, data: dict, args, seed: int) -> dict:
    """Open-loop arrivals per route at the given rates (the recommendations phase)."""
    rng = random.Random(seed)
    gate = asyncio.Semaphore(args.clients)
    makers = _makers(rng, data, args.batch)
    targets = {
        "GET /users/{id}/recommendations": args.rec_rps,
        "GET /users/{id}/profile": args.profile_rps,
        "POST /events": args.batch_rps,
    }
    routes = {name: Route(name) for name in makers}
    async with _client(url, args.clients) as client:
        await asyncio.gather(
            *(open_loop(client, routes[n], targets[n], args.seconds, makers[n], gate) for n in makers if targets[n] > 0)
        )
    return {name: r.summary(args.seconds) for name, r in routes.items() if targets[name] > 0}


async def mixed(url: str, data: dict, args, seed: int) -> dict:
    """``--clients`` closed-loop clients for ``--seconds``, each request drawn from the mix."""
    rng = random.Random(seed + 2)
    makers = _makers(rng, data, args.mixed_batch)
    names, weights = list(makers), [0.85, 0.10, 0.05]
    routes = {name: Route(name) for name in makers}

    async def client_loop(client: aiohttp.ClientSession, deadline: float) -> None:
        while time.perf_counter() < deadline:
            name = rng.choices(names, weights)[0]
            method, path, body, events = makers[name]()
            t = time.perf_counter()
            status, _ = await fetch(client, method, path, body)
            ok = status == 200
            routes[name].latency.append(time.perf_counter() - t)
            if ok:
                routes[name].events += events
            else:
                routes[name].errors += 1

    async with _client(url, args.clients) as client:
        deadline = time.perf_counter() + args.seconds
        await asyncio.gather(*(client_loop(client, deadline) for _ in range(args.clients)))
    return {name: r.summary(args.seconds) for name, r in routes.items()}


async def during_refit(url: str, data: dict, args, seed: int) -> dict:
    """Recommendations at ``--rec-rps`` for ``--seconds`` right after ``POST /admin/refit``: the fit shares the process."""
    rng = random.Random(seed + 3)
    makers = _makers(rng, data, args.batch)
    route = Route("GET /users/{id}/recommendations")
    gate = asyncio.Semaphore(args.clients)
    async with _client(url, args.clients) as client:
        status, _ = await fetch(client, "POST", "/admin/refit", None)
        assert status == 202, status
        await open_loop(client, route, args.rec_rps, args.seconds, makers["GET /users/{id}/recommendations"], gate)
        _, ready = await fetch(client, "GET", "/readyz", None)
    out = route.summary(args.seconds)
    out["refit_still_running"] = bool(ready and ready["refit_running"])
    return out


async def ingest_max(url: str, data: dict, args, seed: int) -> dict:
    rng = random.Random(seed + 1)
    route = Route("POST /events (1,000 per batch, back to back)")
    batches = [event_batch(rng, data["users"], 1000, data["items"]) for _ in range(args.writers * 4)]

    async def writer(client: aiohttp.ClientSession, w: int, deadline: float) -> None:
        i = w
        while time.perf_counter() < deadline:
            body = [dict(e, event_id=f"{e['event_id']}-{i}") for e in batches[i % len(batches)]]
            t = time.perf_counter()
            status, answer = await fetch(client, "POST", "/events", {"events": body})
            route.latency.append(time.perf_counter() - t)
            if status == 200 and answer is not None:
                route.events += answer["accepted"]
            else:
                route.errors += 1
            i += args.writers

    async with _client(url, args.writers) as client:
        deadline = time.perf_counter() + args.ingest_seconds
        await asyncio.gather(*(writer(client, w, deadline) for w in range(args.writers)))
    return route.summary(args.ingest_seconds)


def visibility(url: str) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    user = f"visibility-{random.getrandbits(32):x}"
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        t = time.perf_counter()
        ack = client.post(
            "/events",
            json={"events": [{"user_id": user, "item_id": "i0001", "event": "view", "timestamp": datetime.now(UTC).isoformat()}]},
        )
        profile = client.get(f"/users/{user}/profile")
        elapsed = time.perf_counter() - t
    seen = ack.status_code == 200 and profile.status_code == 200 and profile.json()["live"]["events"] == 1
    return {"visible_in_next_read": bool(seen), "post_then_read_ms": elapsed * 1000}


def _table(rows: dict, targets: dict | None) -> list[str]:
    head = (
        "| route | target /s | answered /s | events /s | p50 ms | p95 ms | p99 ms | errors |"
        if targets
        else "| route | answered /s | events /s | p50 ms | p95 ms | p99 ms | errors |"
    )
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for name, r in rows.items():
        ev = f"{r['events_per_second']:,.0f}" if "events_per_second" in r else ""
        target = f" {targets[name]:g} |" if targets else ""
        lines.append(
            f"| {name} |{target} {r['per_second']:.1f} | {ev} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    return lines


def markdown(result: dict) -> str:
    st = result["settings"]
    lines = [
        f"# decayrec serve under load ({result['machine']['cpus']} CPUs, the load generator on the same machine)",
        "",
        (
            f"Store: {result['store']['events']:,} simulated events, {result['store']['users']:,} users, {result['store']['items']:,} items; "
            f"the first models were fitted {result['ready_seconds']:.0f} s after the server started."
        ),
        "",
        (
            f"**Recommendations phase**: open-loop arrivals for {st['seconds']:g} s on at most {st['clients']} connections; "
            "latency from each request's scheduled time (a queue, in the server or the client, counts)."
        ),
        "",
        *_table(
            result["rates"],
            {
                "GET /users/{id}/recommendations": st["rec_rps"],
                "GET /users/{id}/profile": st["profile_rps"],
                "POST /events": st["batch_rps"],
            },
        ),
        "",
        (
            f"**Ingest phase**: {st['writers']} writers posting batches of 1,000 back to back for {st['ingest_seconds']:g} s, durable acknowledgements: "
            f"**{result['ingest']['events_per_second']:,.0f} events/s** (batch p50 {result['ingest']['p50_ms']:.0f} ms, p99 {result['ingest']['p99_ms']:.0f} ms, "
            f"{result['ingest']['errors']} errors)."
        ),
        "",
        (
            f"**Mixed phase**: {st['clients']} closed-loop clients for {st['seconds']:g} s, each request drawn as 85% recommendations, "
            f"10% profiles, 5% batches of {st['mixed_batch']} events:"
        ),
        "",
        *_table(result["mixed"], None),
        "",
        (
            f"**During a refit** (`POST /admin/refit`, then recommendations at {st['rec_rps']:g}/s for {st['seconds']:g} s; "
            f"the refit {'was still running at the end' if result['during_refit']['refit_still_running'] else 'finished within the phase'}): "
            f"answered {result['during_refit']['per_second']:.1f}/s, p50 {result['during_refit']['p50_ms']:.1f} ms, "
            f"p95 {result['during_refit']['p95_ms']:.1f} ms, p99 {result['during_refit']['p99_ms']:.1f} ms, {result['during_refit']['errors']} errors."
        ),
        "",
        (
            f"A posted event visible in the next read: **{'yes' if result['visibility']['visible_in_next_read'] else 'NO'}** "
            f"(post + read {result['visibility']['post_then_read_ms']:.1f} ms)."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rec-rps", type=float, default=500.0)
    parser.add_argument("--profile-rps", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100, help="Events per batch in the recommendations phase.")
    parser.add_argument("--batch-rps", type=float, default=2.0)
    parser.add_argument("--mixed-batch", type=int, default=200)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--ingest-seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/decayrec-bench-serve"))
    args = parser.parse_args()

    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    data = build_store(args.workdir, args.users, args.seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.workdir / "store", port, args.workdir / "serve.log")
    try:
        ready = wait_ready(url, proc)
        print(f"ready after {ready:.1f} s; warming up", file=sys.stderr)
        asyncio.run(warm_up(url, data, args.seed))
        print("recommendations phase", file=sys.stderr)
        rates_result = asyncio.run(rates(url, data, args, args.seed))
        print("ingest phase", file=sys.stderr)
        ingest_result = asyncio.run(ingest_max(url, data, args, args.seed))
        print("mixed phase", file=sys.stderr)
        mixed_result = asyncio.run(mixed(url, data, args, args.seed))
        vis = visibility(url)
        print("recommendations during a refit", file=sys.stderr)
        refit_result = asyncio.run(during_refit(url, data, args, args.seed))
        deadline = time.monotonic() + 600  # let the refit finish, so the server stops cleanly
        while time.monotonic() < deadline and httpx.get(url + "/readyz", timeout=5).json()["refit_running"]:
            time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "store": {"events": data["events"], "users": len(data["users"]), "items": data["items"]},
        "ready_seconds": ready,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "workdir")},
        "rates": rates_result,
        "ingest": ingest_result,
        "mixed": mixed_result,
        "visibility": vis,
        "during_refit": refit_result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
