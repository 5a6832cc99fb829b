"""The HTTP API in process (CONTRACT.md section 4): keys and scopes, validation, live state, idempotency,
impressions, refits and their swap, erasure, pseudonymisation, metrics and errors."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from decayrec.errors import InputError
from decayrec.service.app import create_app
from decayrec.service.auth import Keys
from decayrec.service.config import ServiceConfig
from decayrec.service.pseudonym import Pseudonymiser
from decayrec.service.runtime import Service
from servicekit import ADMIN, KEYS, READ, WRITE, Clock, bearer, shop_store, wait_until


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    last = shop_store(root)
    return root / "store", last


@pytest.fixture
def make(prepared, tmp_path):
    """Build a service and its client over a fresh copy of the shop; closes them after the test."""
    made = []

    def build(keys: str | None = KEYS, pseudonymiser=None, **settings):
        source, last = prepared
        directory = tmp_path / f"store{len(made)}"
        shutil.copytree(source, directory)
        clock = Clock(last + timedelta(minutes=1))
        service = Service(ServiceConfig(store=directory, refit_seconds=0, **settings), pseudonymiser, clock=clock)
        client = TestClient(create_app(service, Keys.parse(keys, insecure=keys is None)))
        client.__enter__()
        made.append(client)
        wait_until(lambda: service.ready)
        return client, service, clock

    yield build
    for client in made:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make):
    return make()


def view(user: str, item: str, at, **extra) -> dict:
    return {"user_id": user, "item_id": item, "event": "view", "timestamp": at.isoformat(), **extra}


# -- keys and scopes -----------------------------------------------------------------------------
def test_keys_parse_scopes_and_refuse_to_start_without_keys():
    keys = Keys.parse(KEYS)
    assert keys.scopes_of(f"Bearer {READ}") == {"read"}
    assert keys.scopes_of(f"Bearer {WRITE}") == {"read", "write"}
    assert keys.scopes_of(f"Bearer {ADMIN}") == {"read", "write", "admin"}
    assert keys.scopes_of(None) is None and keys.scopes_of("Bearer nope") is None and keys.scopes_of(READ) is None
    with pytest.raises(InputError, match="--insecure-no-auth"):
        Keys.parse("")
    assert Keys.parse(None, insecure=True).scopes_of(None) == {"read", "write", "admin"}
    with pytest.raises(InputError, match="entry 2 has no scope") as info:
        Keys.parse(f"{READ}:read,secret-secret-secret-1:owner")
    assert "secret-secret" not in str(info.value)  # a bad entry is never echoed: it may be a key
    with pytest.raises(InputError, match="at least 16"):
        Keys.parse("short:read")


def test_missing_or_wrong_key_is_401_and_a_missing_scope_403_naming_it(api):
    client, _, _ = api
    assert client.get("/users/u00001/recommendations").status_code == 401
    wrong = client.get("/users/u00001/recommendations", headers=bearer("not-a-key-at-all-000"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get("/users/u00001/recommendations", headers=bearer(READ)).status_code == 200
    denied = client.post("/events", headers=bearer(READ), json={"events": []})
    assert denied.status_code == 403 and "'write'" in denied.json()["detail"]
    assert client.post("/events", headers=bearer(WRITE), json={"events": []}).status_code == 200
    assert client.delete("/users/u00001", headers=bearer(WRITE)).status_code == 403
    assert client.post("/admin/refit", headers=bearer(WRITE)).status_code == 403
    assert client.get("/metrics").status_code == 401
    for open_path in ("/healthz", "/readyz"):
        assert client.get(open_path).status_code == 200


# -- POST /events ----------------------------------------------------------------------------------
def test_each_bad_event_is_rejected_with_its_index_and_reason_and_the_rest_stored(api):
    client, service, clock = api
    now = clock()
    batch = [
        view("u00001", "i0001", now),
        {"user_id": "u00001", "event": "view", "timestamp": now.isoformat()},
        view("u00001", "i0002", now) | {"event": "teleport"},
        view("u00001", "i0003", now) | {"colour": "red"},
        view("u00001", "i0004", now) | {"item_id": {"nested": 1}},
        view("u00001", "x" * 300, now),
        view("u00001", "i0005", now + timedelta(days=3)),
        "not an object",
        view("u00001", "i0006", now) | {"timestamp": "yesterday"},
        view("u00002", "i0007", now, price=3.5, category_id="c01"),
    ]
    before = service.store.count()
    answer = client.post("/events", headers=bearer(WRITE), json={"events": batch})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1] == "missing item_id"
    assert reasons[2].startswith("unknown event type: 'teleport'")
    assert reasons[3].startswith("unknown field 'colour'")
    assert reasons[4] == "item_id must be a string or a number"
    assert reasons[5] == "item_id is longer than 256 characters"
    assert "after the server's clock" in reasons[6] and "epoch unit" in reasons[6]
    assert reasons[7].startswith("an event must be an object")
    assert reasons[8].startswith("unparseable timestamp: 'yesterday'")
    assert service.store.count() == before + 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", 'an object {"events"'),
        (b'{"events": {"user_id": "u"}}', 'an object {"events"'),
        (b'{"rows": []}', 'an object {"events"'),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"events": [' + b"9" * 5000 + b"]}", "not JSON"),
    ],
)
def test_a_malformed_body_is_422_with_a_reason(api, body, fragment):
    client, _, _ = api
    answer = client.post("/events", headers=bearer(WRITE) | {"content-type": "application/json"}, content=body)
    assert answer.status_code == 422 and fragment in answer.json()["detail"]


def test_batch_and_body_limits(make):
    client, _, clock = make(max_body_bytes=4096, max_batch=3)
    now = clock()
    over = client.post("/events", headers=bearer(WRITE), json={"events": [view("u", f"i{j}", now) for j in range(4)]})
    assert over.status_code == 422 and "at most 3" in over.json()["detail"]
    big = client.post("/events", headers=bearer(WRITE), json={"events": [view("u" * 200, "i" * 200, now)] * 3, "pad": "x" * 5000})
    assert big.status_code == 413 and "at most 4,096" in big.json()["detail"]
    assert client.get("/users/u/recommendations?k=0", headers=bearer(READ)).status_code == 422
    assert client.get("/users/u/recommendations?k=100000", headers=bearer(READ)).status_code == 422
    assert client.get("/trends?level=galaxy", headers=bearer(READ)).status_code == 422


def test_the_contract_limit_is_ten_thousand_events_a_batch(api):
    client, service, clock = api
    assert service.config.max_batch == 10_000
    event = view("u", "i", clock())
    over = client.post("/events", headers=bearer(WRITE), json={"events": [event] * 10_001})
    assert over.status_code == 422 and "at most 10,000" in over.json()["detail"]
    at_limit = client.post("/events", headers=bearer(WRITE), json={"events": [event] * 10_000})
    assert at_limit.status_code == 200 and at_limit.json()["accepted"] + at_limit.json()["duplicates"] == 10_000


def test_not_ready_until_the_first_fit_but_lists_are_served(prepared, tmp_path, monkeypatch):
    import threading

    import decayrec.service.runtime as runtime

    gate = threading.Event()
    real = runtime.fit_snapshot
    monkeypatch.setattr(runtime, "fit_snapshot", lambda *a, **k: (gate.wait(30), real(*a, **k))[1])
    source, last = prepared
    shutil.copytree(source, tmp_path / "s")
    service = Service(ServiceConfig(store=tmp_path / "s", refit_seconds=0), clock=Clock(last))
    with TestClient(create_app(service, Keys.parse(KEYS))) as client:
        assert client.get("/healthz").status_code == 200
        starting = client.get("/readyz")
        assert starting.status_code == 503 and starting.json()["status"] == "starting"
        cold = client.get("/users/u00010/recommendations?k=3", headers=bearer(READ)).json()
        assert [r["reason"] for r in cold["items"]] == ["popular this week"] * 3  # live popularity, before any model
        gate.set()
        wait_until(lambda: service.ready)
        assert client.get("/readyz").json()["status"] == "ready"


def test_a_resent_event_id_is_a_duplicate_and_changes_nothing(api):
    client, service, clock = api
    now = clock()
    batch = [view("u00003", "i0010", now, event_id="e-1"), view("u00003", "i0011", now, event_id="e-2")]
    first = client.post("/events", headers=bearer(WRITE), json={"events": batch}).json()
    assert (first["accepted"], first["duplicates"]) == (2, 0)
    count, live = service.store.count(), service.live.events
    # The same ids again, one with another item: still the same events.
    again = [batch[0], batch[1] | {"item_id": "i0099"}, view("u00003", "i0012", now, event_id="e-3"), batch[0]]
    second = client.post("/events", headers=bearer(WRITE), json={"events": again}).json()
    assert (second["accepted"], second["duplicates"]) == (1, 3)
    assert service.store.count() == count + 1 and service.live.events == live + 1
    stored = service.store.scan()
    ids = [i for i in stored["event_id"].to_pylist() if i]
    assert sorted(ids) == ["e-1", "e-2", "e-3"]


def test_concurrent_batches_are_all_stored_once(api):
    from concurrent.futures import ThreadPoolExecutor

    client, service, clock = api
    now = clock()
    before = service.store.count()

    def post(b: int) -> dict:
        events = [view(f"c{b}", f"i{j:04d}", now, event_id=f"cc-{b}-{j}", timestamp=1_700_000_000 + j) for j in range(40)]
        return client.post("/events", headers=bearer(WRITE), json={"events": events}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(16)))
    assert all(a["accepted"] == 40 and not a["rejected"] for a in answers)
    assert service.store.count() == before + 16 * 40 and len(service.writer.seen_ids) >= 16 * 40


def test_batches_committed_together_each_get_their_own_counts(api):
    from decayrec.service.ingestion import _Ticket

    _, service, clock = api
    writer, now = service.writer, clock()
    first = [view("g1", "i0001", now, event_id="g-1"), view("g1", "i0002", now)]
    second = [
        view("g2", "i0003", now, event_id="g-1"),
        view("g1", "i0002", now),
        view("g2", "i0004", now, event_id="g-2"),
        {"user_id": "g2"},
    ]
    tickets = [_Ticket(*writer._shaped(batch), False, now) for batch in (first, second)]
    before = service.store.count()
    with writer.lock:
        writer._commit(tickets)
    a, b = (t.result for t in tickets)
    assert (a.accepted, a.duplicates, a.rejected) == (2, 0, [])
    assert (b.accepted, b.duplicates, [r["index"] for r in b.rejected]) == (1, 2, [3])
    assert service.store.count() == before + 3


# -- live state --------------------------------------------------------------------------------------
def test_a_posted_view_shows_in_the_next_profile_and_recommendations(api):
    client, service, clock = api
    user = "u00005"
    before = client.get(f"/users/{user}/profile", headers=bearer(READ)).json()
    recs_before = client.get(f"/users/{user}/recommendations?k=10", headers=bearer(READ)).json()
    # An item the user never touched, with neighbours in the fitted co-visitation model.
    touched = set(service.reader().user_events(user)["item_id"].to_pylist())
    item = next(
        i
        for i in service.models.current.covisit.items_.ids.to_pylist()
        if i not in touched and service.models.current.similar(i, 5)
    )
    clock.advance(minutes=5)
    answer = client.post("/events", headers=bearer(WRITE), json={"events": [view(user, item, clock()) | {"event": "purchase"}]})
    assert answer.json()["accepted"] == 1
    after = client.get(f"/users/{user}/profile", headers=bearer(READ)).json()
    assert after["live"]["events"] == before["live"]["events"] + 1
    assert after["live"]["items"][0]["item_id"] == item  # the strongest interest now
    assert after["live"]["last_event"].startswith(clock().strftime("%Y-%m-%dT%H:%M:%S"))
    assert after["profile"]["n_events"] == before["profile"]["n_events"] + 1
    recs = client.get(f"/users/{user}/recommendations?k=10", headers=bearer(READ)).json()
    assert [r["item_id"] for r in recs["items"]] != [r["item_id"] for r in recs_before["items"]]
    assert any(item in r["reason"] for r in recs["items"])
    assert recs["list_id"] != recs_before["list_id"]


def test_ids_with_slashes_are_addressable_and_erasable(api):
    client, service, clock = api
    client.post("/events", headers=bearer(WRITE), json={"events": [view("shop/alice", "cat/i1", clock())]})
    assert client.get("/users/shop/alice/profile", headers=bearer(READ)).json()["live"]["events"] == 1
    assert client.get("/users/shop%2Falice/recommendations", headers=bearer(READ)).json()["user_id"] == "shop/alice"
    assert client.delete("/users/shop/alice", headers=bearer(ADMIN)).json()["events_erased"] == 1
    assert service.store.user_events("shop/alice").num_rows == 0
    assert client.delete("/users/never-was", headers=bearer(ADMIN)).json() == {
        "user_id": "never-was",
        "events_erased": 0,
        "refit": "none",
    }


def test_unknown_users_get_the_popular_list_and_filters_hold(api):
    client, service, _ = api
    cold = client.get("/users/nobody-at-all/recommendations?k=5", headers=bearer(READ)).json()
    assert len(cold["items"]) == 5 and all(r["reason"] == "popular this week" for r in cold["items"])
    assert [r["rank"] for r in cold["items"]] == [1, 2, 3, 4, 5]
    top = [r["item_id"] for r in cold["items"]]
    fewer = client.get(f"/users/nobody-at-all/recommendations?k=5&exclude={top[0]},{top[1]}", headers=bearer(READ)).json()
    assert [r["item_id"] for r in fewer["items"]][:3] == top[2:]
    category = service.live.item_category[service.live.items.code[top[0]]]
    for user in ("nobody-at-all", "u00001"):
        only = client.get(f"/users/{user}/recommendations?k=10&category={category}", headers=bearer(READ)).json()
        assert only["items"]
        assert {service.live.item_category[service.live.items.code[r["item_id"]]] for r in only["items"]} == {category}
    assert client.get("/users/nobody-at-all/profile", headers=bearer(READ)).status_code == 404
    assert client.get("/users/nobody-at-all/risk", headers=bearer(READ)).status_code == 404


def test_lists_are_recorded_as_impressions_and_responses_keep_their_rec_id(api):
    client, service, clock = api
    recs = client.get("/users/u00002/recommendations?k=3", headers=bearer(READ)).json()
    service.flush_impressions()
    stored = service.store.impressions("u00002").to_pylist()
    assert [(r["list_id"], r["items"]) for r in stored] == [(recs["list_id"], [r["item_id"] for r in recs["items"]])]
    clicked = recs["items"][0]["item_id"]
    client.post(
        "/events",
        headers=bearer(WRITE),
        json={"events": [view("u00002", clicked, clock(), rec_id=recs["list_id"]) | {"event": "click"}]},
    )
    rows = service.store.user_events("u00002").to_pylist()
    assert [r["rec_id"] for r in rows if r["item_id"] == clicked and r["event"] == "click"] == [recs["list_id"]]


def test_risk_trends_and_similar_items(api):
    client, service, _ = api
    user = min(service.models.current.risk.rows)
    risk = client.get(f"/users/{user}/risk", headers=bearer(READ)).json()
    assert 0 <= risk["p_active"] <= 1 and risk["risk_rank"] >= 1 and risk["horizon_days"] == 30
    trends = client.get("/trends?level=category&limit=3", headers=bearer(READ)).json()
    assert len(trends["trends"]) == 3 and {t["trend"] for t in trends["trends"]} <= {"rising", "steady", "fading"}
    item = service.models.current.covisit.items_.ids[0].as_py()
    similar = client.get(f"/items/{item}/similar?k=4", headers=bearer(READ)).json()
    scores = [s["score"] for s in similar["items"]]
    assert (
        0 < len(scores) <= 4 and scores == sorted(scores, reverse=True) and item not in [s["item_id"] for s in similar["items"]]
    )
    assert client.get("/items/no-such-item/similar", headers=bearer(READ)).status_code == 404
    assert client.get("/experiments/anything", headers=bearer(READ)).status_code == 404


# -- refits ------------------------------------------------------------------------------------------
def test_a_refit_swaps_in_new_models_and_a_failed_one_keeps_the_old(api, monkeypatch):
    client, service, clock = api
    old = service.models.current
    clock.advance(days=1)
    client.post("/events", headers=bearer(WRITE), json={"events": [view("u00009", "i0001", clock())]})
    assert client.post("/admin/refit", headers=bearer(ADMIN)).status_code == 202
    wait_until(lambda: service.models.current is not old and not service.models.running)
    new = service.models.current
    assert new.fitted_at == clock() and new.events == old.events + 1

    import decayrec.service.runtime as runtime

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runtime, "fit_snapshot", broken)
    assert client.post("/admin/refit", headers=bearer(ADMIN)).json()["started"] is True
    wait_until(lambda: not service.models.running)
    assert service.models.current is new  # the last good models keep serving
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and "disk on fire" in ready["last_refit_error"]
    assert client.get("/users/u00001/recommendations", headers=bearer(READ)).status_code == 200
    text = client.get("/metrics", headers=bearer(READ)).text
    assert 'decayrec_refits_total{outcome="failed"} 1.0' in text


def test_readers_are_answered_from_the_old_models_while_a_refit_runs(api, monkeypatch):
    import threading

    import decayrec.service.runtime as runtime

    client, service, _ = api
    old = service.models.current
    gate = threading.Event()
    real = runtime.fit_snapshot

    def slow(*args, **kwargs):
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "fit_snapshot", slow)
    client.post("/admin/refit", headers=bearer(ADMIN))
    assert service.models.running
    user = min(old.risk.rows)
    answers = [client.get(f"/users/{user}/risk", headers=bearer(READ)) for _ in range(5)]
    assert all(a.status_code == 200 and a.json()["as_of"] == old.fitted_at.isoformat() for a in answers)
    assert client.post("/admin/refit", headers=bearer(ADMIN)).json()["started"] is False  # one at a time
    gate.set()
    wait_until(lambda: service.models.current is not old)


# -- erasure -----------------------------------------------------------------------------------------
def test_erasing_a_user_leaves_nothing_about_them(make):
    client, service, clock = make()
    user = "u00007"
    client.post("/events", headers=bearer(WRITE), json={"events": [view(user, "i0001", clock(), event_id="mine-1")]})
    client.get(f"/users/{user}/recommendations", headers=bearer(READ))
    client.get(f"/users/{user}/recommendations", headers=bearer(READ))
    service.flush_impressions()
    client.get(f"/users/{user}/recommendations", headers=bearer(READ))  # one still buffered
    assert service.models.current.risk.rows.get(user) is not None
    fitted = service.models.current

    answer = client.delete(f"/users/{user}", headers=bearer(ADMIN))
    assert answer.status_code == 200 and answer.json()["events_erased"] > 0
    service.flush_impressions()
    assert service.store.user_events(user).num_rows == 0
    assert service.store.impressions(user).num_rows == 0
    assert user not in service.live.users.code and service.live.user(user, 0.0) is None
    assert "mine-1" not in service.writer.seen_ids
    assert user not in service.models.current.risk.rows and user not in service.models.current.decay.user_scale
    assert client.get(f"/users/{user}/profile", headers=bearer(READ)).status_code == 404
    assert client.get(f"/users/{user}/risk", headers=bearer(READ)).status_code == 404
    # Shop-wide models are refitted without the user.
    wait_until(lambda: service.models.current is not fitted and not service.models.running)
    snap = service.models.current
    assert user not in snap.risk.rows and snap.events == service.store.count() < fitted.events
    assert user not in set(service.store.scan()["user_id"].to_pylist())
    # The popularity they contributed is gone too: the live state equals one rebuilt from the store.
    from decayrec.service.live import LiveState, days

    rebuilt = LiveState.from_events(service.store.scan())
    t = days(clock())
    import numpy as np

    mine = np.array([service.live.items.code[i] for i in rebuilt.items.names])
    assert np.allclose(service.live.popularity(t)[mine], rebuilt.popularity(t))
    # A re-sent event of theirs is new data now, accepted again.
    again = client.post("/events", headers=bearer(WRITE), json={"events": [view(user, "i0001", clock(), event_id="mine-1")]})
    assert again.json()["accepted"] == 1


def test_pseudonymised_ids_never_reach_the_store(make):
    client, service, clock = make(pseudonymiser=Pseudonymiser(b"k" * 32))
    client.post(
        "/events", headers=bearer(WRITE), json={"events": [view("alice@example.com", "i0001", clock(), category_id="c01")]}
    )
    assert client.get("/users/alice@example.com/profile", headers=bearer(READ)).json()["live"]["events"] == 1
    recs = client.get("/users/alice@example.com/recommendations", headers=bearer(READ)).json()
    assert recs["user_id"] == "alice@example.com"
    service.flush_impressions()
    with_store = service.store
    ids = set(with_store.scan()["user_id"].to_pylist()) | set(with_store.impressions()["user_id"].to_pylist())
    assert "alice@example.com" not in ids
    hashed = Pseudonymiser(b"k" * 32)("alice@example.com")
    assert hashed in ids and hashed != Pseudonymiser(b"j" * 32)("alice@example.com")
    assert client.delete("/users/alice@example.com", headers=bearer(ADMIN)).json()["events_erased"] == 1
    assert hashed not in set(with_store.scan()["user_id"].to_pylist())
    with pytest.raises(InputError, match="fewer than 16"):
        Pseudonymiser(b"short")


# -- observability and errors ----------------------------------------------------------------------------
def test_metrics_use_conventional_names(api):
    client, _, clock = api
    client.get("/users/u00001/recommendations", headers=bearer(READ))
    client.post("/events", headers=bearer(WRITE), json={"events": [view("u00001", "i0001", clock()), {"user_id": "x"}]})
    answer = client.get("/metrics", headers=bearer(READ))
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for line in (
        'decayrec_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"} 1.0',
        'decayrec_events_total{outcome="accepted"} 1.0',
        'decayrec_events_total{outcome="rejected"} 1.0',
        'decayrec_refits_total{outcome="ok"} 1.0',
    ):
        assert line in text
    for name in (
        "decayrec_http_request_duration_seconds_bucket",
        "decayrec_live_users ",
        "decayrec_live_state_bytes ",
        "decayrec_model_age_seconds ",
        "decayrec_refit_duration_seconds_count ",
        "decayrec_event_batch_duration_seconds_count ",
    ):
        assert name in text


def test_an_internal_failure_answers_500_without_internals(make, monkeypatch):
    client, service, _ = make()

    def broken(*args, **kwargs):
        raise KeyError("/secret/path/in/a/stack")

    monkeypatch.setattr(service, "recommend", broken)
    client_raising = TestClient(client.app, raise_server_exceptions=False)
    answer = client_raising.get("/users/u00001/recommendations", headers=bearer(READ))
    assert answer.status_code == 500
    assert "reference" in answer.json()["detail"] and "secret" not in answer.text and "Traceback" not in answer.text


def test_dashboard_and_openapi_are_served(api):
    client, _, _ = api
    page = client.get("/")
    assert page.status_code == 200 and "/docs" in page.text
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/events",
        "/users/{user_id}/recommendations",
        "/users/{user_id}/profile",
        "/users/{user_id}/risk",
        "/trends",
        "/items/{item_id}/similar",
        "/experiments/{name}",
        "/users/{user_id}",
        "/admin/refit",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
    events = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert events["properties"]["events"]["maxItems"] == 10_000
