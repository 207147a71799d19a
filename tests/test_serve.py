"""The HTTP service: every endpoint, bad input, keys, durability across restarts, no 500s."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnelrec.pipeline import fit_funnel
from funnelrec.sequences import Sequences
from funnelrec.serve import create_app

KEY = "test-key-123"
H = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def model_dir(seqs: Sequences, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("served") / "model"
    fit_funnel(seqs, out, n_traits=4, epochs=1)
    return out


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> TestClient:
    return TestClient(create_app(model_dir, tmp_path / "events.sqlite", api_key=KEY))


def _known(client: TestClient) -> tuple[str, str, str]:
    live = client.app.state.live.state
    return live.ids[0], str(live.vocab.item_ids[5]), str(live.vocab.category_names[0])


def test_health_and_metrics(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["events_stored"] == 0 and len(h["model_version"]) == 12
    client.get("/traits")
    text = client.get("/metrics").text
    assert 'funnelrec_requests_total{route="/traits",method="GET",status="200"} 1' in text
    assert "funnelrec_request_seconds_bucket" in text and "funnelrec_model_info" in text


def test_event_updates_profile_and_recommendations(client: TestClient) -> None:
    cid, item, _ = _known(client)
    before = client.get(f"/customers/{cid}/journey").json()
    r = client.post(
        "/events", json={"customer_id": cid, "item_id": item, "action": "add_cart"}, headers=H
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    after = client.get(f"/customers/{cid}/journey").json()
    assert len(after) == min(len(before) + 1, 50)
    assert after[-1]["item_id"] == item and after[-1]["action"] == "add_cart"
    prof = client.get(f"/customers/{cid}/profile").json()
    assert not prof["cold_start"] and len(prof["traits"]) == 4
    assert all(0 <= t["value"] <= 1 for t in prof["traits"])
    assert all(0 <= v <= 1 for v in prof["behaviour"].values())
    recs = client.get(f"/customers/{cid}/recommendations?k=3&explain=true").json()
    assert len(recs["items"]) == 3 and recs["fallback"] is None
    assert recs["items"][0]["explanation"].startswith("Recommended: ")
    assert client.get("/health").json()["events_stored"] == 1


def test_batch_with_rejections(client: TestClient) -> None:
    cid, item, cat = _known(client)
    body = {
        "events": [
            {"customer_id": "new-1", "item_id": item, "action": "view", "timestamp": 1.7e9},
            {"customer_id": cid, "item_id": item, "action": "teleport"},
            {"customer_id": cid, "item_id": "never-seen-item", "action": "view"},
            {"customer_id": cid, "item_id": "new-item-2", "action": "view", "category": cat},
            {"customer_id": cid, "item_id": item, "action": "buy", "timestamp": "2024-05-01T10:00"},
        ]
    }
    res = client.post("/events", json=body, headers=H).json()
    flags = [r["accepted"] for r in res["results"]]
    assert flags == [True, False, False, True, True]
    assert "unknown action" in res["results"][1]["reason"]
    assert "unknown item" in res["results"][2]["reason"]
    assert "next model version" in res["results"][3]["note"]  # accepted, said not yet used
    assert client.get("/health").json()["new_items_stored"] == 1
    new = client.get("/customers/new-1/profile").json()
    assert not new["cold_start"]  # one event is enough for a profile


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "a", "item_id": "b"},  # missing action
        {"customer_id": 5, "item_id": "b", "action": "view"},  # wrong type
        {"customer_id": "a", "item_id": "b", "action": "view", "price": -1},
        {"customer_id": "a", "item_id": "b", "action": "view", "timestamp": "yesterday"},
        {"customer_id": "a", "item_id": "b", "action": "view", "timestamp": "1066-10-14"},
        {"customer_id": "a", "item_id": "b", "action": "view", "timestamp": "9999-12-31"},
        {"customer_id": "a", "item_id": "b", "action": "view", "timestamp": True},
        {"customer_id": "a", "item_id": "b", "action": "view", "extra": 1},
        {"customer_id": "", "item_id": "b", "action": "view"},
        {"events": []},
    ],
)
def test_bad_events_are_422(client: TestClient, body: dict) -> None:
    assert client.post("/events", json=body, headers=H).status_code == 422


def test_limits(client: TestClient) -> None:
    ev = {"customer_id": "a", "item_id": "b", "action": "view"}
    assert client.post("/events", json={"events": [ev] * 1001}, headers=H).status_code == 422
    big = json.dumps({"events": [{**ev, "customer_id": "x" * 190}] * 5000})
    r = client.post("/events", content=big, headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_keys(model_dir: Path, tmp_path: Path) -> None:
    client = TestClient(create_app(model_dir, tmp_path / "s.sqlite", api_key=KEY))
    ev = {"customer_id": "a", "item_id": "b", "action": "view"}
    assert client.post("/events", json=ev).status_code == 401
    assert client.post("/events", json=ev, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/admin/reload").status_code == 401
    assert client.get("/traits").status_code == 200  # reads open by default
    keyless = TestClient(create_app(model_dir, tmp_path / "t.sqlite", api_key=""))
    assert keyless.post("/events", json=ev, headers=H).status_code == 401
    keyed = TestClient(create_app(model_dir, tmp_path / "u.sqlite", api_key=KEY, keyed_reads=True))
    assert keyed.get("/traits").status_code == 401
    assert keyed.get("/traits", headers=H).status_code == 200


def test_reads_and_unknowns(client: TestClient) -> None:
    cid, item, _ = _known(client)
    assert len(client.get("/traits").json()) == 4
    segs = client.get("/segments").json()
    m = client.get("/segments/map").json()
    assert len(m["x"]) == len(m["y"]) == len(m["segment"]) > 10
    assert set(m["segment"]) <= {s["segment"] for s in segs}
    sim = client.get(f"/customers/{cid}/similar?k=4").json()
    assert len(sim) == 4 and cid not in {s["customer_id"] for s in sim}
    assert len(client.get(f"/items/{item}/similar?k=3").json()) == 3
    assert client.get("/items/nope/similar").status_code == 404
    assert client.get("/customers/nobody/similar").status_code == 404
    cold = client.get("/customers/nobody/profile").json()
    assert cold["cold_start"] and "largest segment" in cold["note"]
    recs = client.get("/customers/nobody/recommendations").json()
    assert recs["fallback"] == "popularity" and len(recs["items"]) == 10
    assert client.get(f"/customers/{cid}/recommendations?k=0").status_code == 422
    page = client.get("/")
    assert page.status_code == 200 and "textContent" in page.text
    assert len(client.get("/static/plotly.js").content) > 1_000_000


def test_restart_replays_the_store_and_reload_swaps(model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "events.sqlite"
    first = TestClient(create_app(model_dir, store, api_key=KEY))
    cid, item, _ = _known(first)
    for action in ("view", "add_cart", "remove_cart"):
        ev = {"customer_id": cid, "item_id": item, "action": action}
        assert first.post("/events", json=ev, headers=H).json()["accepted"] == 1
    journey = first.get(f"/customers/{cid}/journey").json()
    again = TestClient(create_app(model_dir, store, api_key=KEY))
    assert again.get(f"/customers/{cid}/journey").json() == journey
    assert again.get("/health").json()["events_stored"] == 3
    version = again.get("/health").json()["model_version"]
    assert again.post("/admin/reload", headers=H).json() == {"model_version": version}
    assert again.get(f"/customers/{cid}/journey").json() == journey


event_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)
bodies = st.one_of(
    st.dictionaries(
        st.sampled_from(
            ["customer_id", "item_id", "action", "timestamp", "price", "category", "brand", "x"]
        ),
        event_values,
    ),
    st.fixed_dictionaries(
        {
            "customer_id": st.text(min_size=1, max_size=20),
            "item_id": st.text(min_size=1, max_size=20),
            "action": st.sampled_from(["view", "add_cart", "purchase", "pv", "?"]),
            "timestamp": st.one_of(st.none(), st.floats(), st.text(max_size=25)),
        }
    ),
    st.lists(st.integers(), max_size=3),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_event_endpoint_never_500(client: TestClient, body) -> None:
    # Sent as Python writes it: NaN and Infinity become the non-JSON tokens a sloppy client
    # would send, which the server must refuse, not crash on.
    r = client.post(
        "/events", content=json.dumps(body), headers={**H, "Content-Type": "application/json"}
    )
    assert r.status_code < 500, (body, r.text)


def test_fit_reads_the_service_store(client: TestClient, tmp_path: Path) -> None:
    """`funnelrec fit STORE.sqlite` retrains on what the service stored."""
    from funnelrec.sequences import load_sequences

    _, item, _ = _known(client)
    events = [
        {"customer_id": f"s{i % 3}", "item_id": item, "action": a, "timestamp": 1.7e9 + i}
        for i, a in enumerate(["view", "add_cart", "purchase"] * 4)
    ]
    assert client.post("/events", json={"events": events}, headers=H).json()["accepted"] == 12
    store = client.app.state.live.store.path
    seqs = load_sequences(store)[0]
    assert seqs.n_events == 12 and len(seqs) == 3


def test_live_profile_after_a_write_equals_the_batch_profile(client: TestClient) -> None:
    from funnelrec.profiles import customer_profile

    cid, item, _ = _known(client)
    ev = {"customer_id": cid, "item_id": item, "action": "purchase"}
    assert client.post("/events", json=ev, headers=H).json()["accepted"] == 1
    live = client.get(f"/customers/{cid}/profile").json()
    st = client.app.state.live.state
    ref = customer_profile(st.model, st.desc, cid, st.clock)
    assert live["segment"] == ref["segment"]
    got = {t["trait"]: t["value"] for t in live["traits"]}
    got |= {f"behaviour_{k}": v for k, v in live["behaviour"].items()}
    assert got == pytest.approx(ref["profile"], abs=1e-5)


def test_far_future_event_does_not_age_everyone_else(client: TestClient) -> None:
    """The recency clock follows events but stops at tomorrow: one event dated year 4000
    must not make a customer who just came back look long gone."""
    cid, item, _ = _known(client)
    now = time.time()
    ev = {"customer_id": cid, "item_id": item, "action": "view", "timestamp": now}
    assert client.post("/events", json=ev, headers=H).json()["accepted"] == 1
    before = client.get(f"/customers/{cid}/profile").json()["behaviour"]["recency"]
    far = {"customer_id": "someone-else", "item_id": item, "action": "view", "timestamp": 6.5e10}
    assert client.post("/events", json=far, headers=H).json()["accepted"] == 1
    ev["timestamp"] = now + 1
    client.post("/events", json=ev, headers=H)
    after = client.get(f"/customers/{cid}/profile").json()["behaviour"]["recency"]
    assert before > 0.9 and after > 0.9, (before, after)


def test_reads_of_unknown_ids_are_not_kept(client: TestClient) -> None:
    """Anyone may read any id: cold-start answers are computed, not cached per id."""
    st = client.app.state.live.state
    sizes = len(st.profiles), len(st.top)
    for i in range(30):
        assert client.get(f"/customers/ghost-{i}/profile").json()["cold_start"]
        recs = client.get(f"/customers/ghost-{i}/recommendations?k=3").json()
        assert recs["fallback"] == "popularity" and len(recs["items"]) == 3
    assert (len(st.profiles), len(st.top)) == sizes


def test_ids_with_slashes_and_spaces_can_be_read_back(client: TestClient) -> None:
    _, item, _ = _known(client)
    for cid in ("shop/eu/42", "a b", "x%y"):
        r = client.post(
            "/events", json={"customer_id": cid, "item_id": item, "action": "view"}, headers=H
        )
        assert r.json()["accepted"] == 1, r.text
        path = quote(cid, safe="")
        journey = client.get(f"/customers/{path}/journey")
        assert journey.status_code == 200, (cid, journey.text)
        assert [e["item_id"] for e in journey.json()] == [item]
        assert not client.get(f"/customers/{path}/profile").json()["cold_start"]
        assert client.get(f"/customers/{path}/recommendations?k=2").json()["fallback"] is None
    # Unescaped slashes reach the same customer.
    assert client.get("/customers/shop/eu/42/journey").json()[0]["item_id"] == item
