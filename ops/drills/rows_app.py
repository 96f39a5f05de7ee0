"""Drills for the application-layer rows of the failure catalogue (FAILURE_MODES §1.4): F-27
lock-audit gap, F-28 DPoP replay, F-29 MFA replay, F-30 cross-tenant probe, F-31 force-logout
lag, F-32 idempotency bypass, F-35 sync cursor divergence, F-36 preferences write-through.

These rows are about guarantees rather than outages: each drill attempts the bypass an attacker,
a flaky network or a drifting copy would cause, and shows the guarantee holding in what the
operator can see — the answer's code, the counter that is supposed to rise, the upstream's own
record of what it applied (``/_sim/calls``), the ledger's audit rows, the copies in the cache
tier and the Postgres mirror.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ops.drills.app_probes import (
    BASE,
    PROPERTY,
    TENANT,
    Dashboard,
    Meter,
    answer_of,
    applied_calls,
    cache_client,
    desktop,
    in_house_guest,
    lock_audit,
    lock_outcomes,
    mirrored_preferences,
    new_key,
    prefix,
    settled,
    upstream_items,
)
from ops.drills.framework import DASHBOARD, DrillDesktop, Evidence, Stack, drill, wait_until
from ops.drills.state_probes import LiveStream, wait_for_event

RECOVER_S = 20.0  # a fault's circuit (open 5 s) and a few polls
FORCE_LOGOUT_TARGET_S = 5.0  # FAILURE_MODES §4: force-logout end to end < 5 s p95
FORCE_LOGOUT_DEVICES = 5
CONCURRENT_COPIES = 6


# -- F-27 lock audit ----------------------------------------------------------------------------


def _lock(desk: DrillDesktop, guest: str, action: str, key: str, **headers: str) -> str:
    answer = desk.post(
        f"{BASE}/locks/{guest}/{action}",
        json={"propertyId": PROPERTY},
        headers={"Idempotency-Key": key, **headers},
    )
    return answer_of(answer)


@drill("F-27", "lock audit: every key action, failed or refused, has its outcome row", ci=True)
def lock_audit_complete(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        guest = in_house_guest(stack)["id"]
        tried: list[tuple[str, str, str]] = []  # (key, what, answer)
        key = new_key()
        tried.append((key, "issue-key", _lock(desk, guest, "issue-key", key)))
        with stack.upstream_fault("lock", "error"):
            key = new_key()
            tried.append((key, "issue-key, lock down", _lock(desk, guest, "issue-key", key)))
        with stack.upstream_fault("lock", "hang"):
            key = new_key()
            tried.append((key, "issue-key, lock hangs", _lock(desk, guest, "issue-key", key)))
        key = new_key()
        tried.append((key, "revoke-key without MFA", _lock(desk, guest, "revoke-key", key)))
        expected = ["success", "failure", "unknown", "refused"]
        for (key, what, answer), outcome in zip(tried, expected, strict=True):
            rows = lock_outcomes(stack, guest, key)
            ev.check(rows == [outcome], f"{what}: answered {answer}, audit outcome {rows}")
        audit = lock_audit(stack)
        ev.check(
            audit.unfinished == 0,
            f"ledger verify: {audit.attempts} lock attempts, {audit.unfinished} without an "
            f"outcome (completeness {audit.completeness:.2%})",
        )


# -- F-28 DPoP replay -------------------------------------------------------------------------


@drill("F-28", "DPoP proof replayed: refused 401 DPOP_INVALID on any instance, counted", ci=True)
def dpop_replay(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        path = f"{DASHBOARD}?propertyId={PROPERTY}"
        headers = desk.headers("GET", path)  # one proof, sent three times
        blocked = Meter(stack, "bff_dpop_replay_blocked_total")
        first = desk.http.get(path, headers=headers)
        ev.check(first.status_code == 200, f"first use of the proof: {answer_of(first)}")
        replays = [desk.http.get(path, headers=headers) for _ in range(2)]
        answers = [answer_of(r) for r in replays]
        ev.check(
            answers == ["401 DPOP_INVALID"] * 2,
            f"the same proof again (x2, through the load balancer): {answers}",
        )
        challenge = replays[0].headers.get("WWW-Authenticate", "")
        ev.check("invalid_dpop_proof" in challenge, f"WWW-Authenticate: {challenge}")
        ev.check(blocked.rise() == 2, blocked.shown())
        ev.check(Dashboard(desk).response.status_code == 200, "a fresh proof works: 200")


# -- F-29 MFA replay ---------------------------------------------------------------------------


@drill("F-29", "MFA attestation reused: refused 401 MFA_INVALID_OR_USED, counted, lock untouched")
def mfa_replay(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        guest = in_house_guest(stack)["id"]
        issued = _lock(desk, guest, "issue-key", new_key())
        ev.check(issued == "200", f"a key issued to {guest}: {issued}")
        attestation = desk.device.step_up("lock.revoke").attestation_token
        blocked = Meter(stack, "bff_mfa_replay_blocked_total")
        mfa = {"X-MFA-Attestation": attestation}
        first_key, second_key = new_key(), new_key()
        first = _lock(desk, guest, "revoke-key", first_key, **mfa)
        ev.check(first == "200", f"revoke-key with a fresh attestation: {first}")
        again = _lock(desk, guest, "revoke-key", second_key, **mfa)
        ev.check(
            again == "401 MFA_INVALID_OR_USED", f"the same attestation, another request: {again}"
        )
        ev.check(blocked.rise() == 1, blocked.shown())
        reached = len(applied_calls(stack, "lock", second_key))
        ev.check(reached == 0, f"lock-integration received the replayed revoke {reached}x")
        rows = lock_outcomes(stack, guest, second_key)
        ev.check(rows == ["refused"], f"the replay is audited: {rows}")


# -- F-30 cross-tenant probe ----------------------------------------------------------------


def _probes(demo_device: str, folio: str, alert: str | None) -> list[tuple[str, str, Any]]:
    """(method, path, body) a tnt-other desktop sends to reach tnt-demo's data by guessing."""
    probes: list[tuple[str, str, Any]] = [
        ("GET", f"{DASHBOARD}?propertyId={PROPERTY}", None),
        ("GET", f"{BASE}/arrivals?propertyId={PROPERTY}", None),
        ("GET", f"{BASE}/housekeeping/board?propertyId={PROPERTY}", None),
        ("GET", f"{BASE}/alerts?propertyId={PROPERTY}", None),
        ("GET", f"{BASE}/ai/suggestions?propertyId={PROPERTY}", None),
        ("GET", f"{BASE}/sync/cursor?deviceId={demo_device}", None),
        (
            "POST",
            f"{BASE}/folios/{folio}/charges",
            {"propertyId": PROPERTY, "amountMinor": 1, "currency": "EUR", "description": "x"},
        ),
        (
            "POST",
            f"{BASE}/folios/{folio}/charges",
            {"propertyId": "prop-other-1", "amountMinor": 1, "currency": "EUR", "description": "x"},
        ),
    ]
    if alert is not None:
        path = f"{BASE}/alerts/{alert}/acknowledge"
        probes.append(("POST", path, {"propertyId": "prop-other-1"}))
    return probes


@drill("F-30", "cross-tenant probe: tnt-other guessing tnt-demo ids gets 403/404, never data")
def cross_tenant_probe(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as demo, desktop(stack, "fd.other", "tnt-other") as other:
        warm = Dashboard(demo)  # tnt-demo's dashboard is in the cache tier now
        ev.check(warm.response.status_code == 200, "tnt-demo's front-desk dashboard cached")
        folio = in_house_guest(stack)["folioId"]
        alerts = demo.get(f"{BASE}/alerts?propertyId={PROPERTY}").json().get("items", [])
        alert = alerts[0]["alertId"] if alerts else None
        answers: Counter[str] = Counter()
        for method, path, body in _probes(demo.device.device_id, folio, alert):
            headers = {"Idempotency-Key": new_key()} if method == "POST" else {}
            answer = other.request(method, path, json=body, headers=headers)
            answers[answer_of(answer)] += 1
            ev.check(
                answer.status_code in (403, 404) and "prop-demo" not in _data(answer),
                f"{method} {path.split('?')[0].removeprefix(BASE)}: {answer_of(answer)}",
            )
        applied = [c for c in stack.sim("GET", "/_sim/calls").json()["items"] if folio in c["path"]]
        ev.check(
            not [c for c in applied if c.get("status", 0) < 300 and "tnt-other" in c["path"]],
            "no tnt-other call reached tnt-demo's folio",
        )
        own = Dashboard(other, "prop-other-1")
        leaked = [i for i, w in own.widgets.items() if "prop-demo" in json.dumps(w)]
        ev.check(
            own.response.status_code == 200 and not leaked,
            f"tnt-other's own dashboard {answer_of(own.response)}: no tnt-demo data in it",
        )
        ev.note(
            f"{sum(answers.values())} probes: " + ", ".join(f"{n}x {a}" for a, n in answers.items())
        )


def _data(answer: httpx.Response) -> str:
    """The body of a successful answer (what could leak); an error's message may echo ids."""
    return answer.text if answer.status_code < 300 else ""


# -- F-31 force-logout ------------------------------------------------------------------------


def _force_logout_seconds(stack: Stack, ev: Evidence, desk: DrillDesktop) -> float:
    """Open the device's stream, revoke its session at iam, time the ``force_logout`` event."""
    stream = LiveStream(desk, channels="session")
    try:
        ev.check(stream.status == 200, f"stream opened: {stream.status}")
        session = desk.device.tokens.session_id if desk.device.tokens else ""
        start = time.monotonic()
        stack.sim("POST", f"/_sim/iam/sessions/{session}/revoke", json={"reason": "security"})
        event = wait_for_event(
            stream,
            lambda e: e.event == "session" and e.data.get("kind") == "force_logout",
            FORCE_LOGOUT_TARGET_S * 3,
        )
        took = time.monotonic() - start
        ev.check(event is not None, f"force_logout on the stream after {took:.2f}s")
        return took
    finally:
        stream.close()


@drill("F-31", "force-logout: revoked sessions get the SSE event within 5 s, then 401")
def force_logout(stack: Stack, ev: Evidence) -> None:
    timings = []
    for _ in range(FORCE_LOGOUT_DEVICES):
        with settled(stack, ev) as desk:
            timings.append(_force_logout_seconds(stack, ev, desk))
            after = Dashboard(desk).response
            ev.check(
                answer_of(after) == "401 SESSION_EXPIRED",
                f"the revoked session's next call: {answer_of(after)}",
            )
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    ev.check(
        p95 < FORCE_LOGOUT_TARGET_S,
        f"force-logout over {len(timings)} devices: median {ordered[len(ordered) // 2]:.2f}s, "
        f"p95 {p95:.2f}s, max {ordered[-1]:.2f}s (target < {FORCE_LOGOUT_TARGET_S:.0f}s p95)",
    )


# -- F-32 idempotency ---------------------------------------------------------------------------


@drill(
    "F-32", "same Idempotency-Key twice and concurrently: applied once, replays flagged", ci=True
)
def idempotency_holds(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        folio = in_house_guest(stack)["folioId"]
        [held] = upstream_items(stack, "billing", f"/folios/{folio}")
        path = f"{BASE}/folios/{folio}/charges"
        body = {
            "propertyId": PROPERTY,
            "amountMinor": 100,
            "currency": held["currency"],
            "description": "Drill F-32",
            "code": "MINIBAR",
        }

        def charge(key: str) -> httpx.Response:
            return desk.post(path, json=body, headers={"Idempotency-Key": key})

        key = new_key()
        first, second = charge(key), charge(key)
        ev.check(
            first.status_code == 200
            and second.status_code == 200
            and second.headers.get("Idempotent-Replayed") == "true"
            and second.content == first.content,
            f"sequential: {answer_of(first)}, then {answer_of(second)} "
            f"Idempotent-Replayed: {second.headers.get('Idempotent-Replayed')}, same body",
        )
        ev.check(len(applied_calls(stack, "billing", key)) == 1, "billing applied it once")
        _concurrent(stack, ev, charge)


def _concurrent(stack: Stack, ev: Evidence, charge: Any) -> None:
    key = new_key()
    with ThreadPoolExecutor(CONCURRENT_COPIES) as pool:
        answers = list(pool.map(lambda _: charge(key), range(CONCURRENT_COPIES)))
    seen = Counter(
        answer_of(a) + (" replayed" if a.headers.get("Idempotent-Replayed") else "")
        for a in answers
    )
    shown = ", ".join(f"{n}x {a}" for a, n in seen.items())
    ran = seen["200"]
    ev.check(
        ran == 1 and set(seen) <= {"200", "200 replayed", "409 IDEMPOTENCY_IN_FLIGHT"},
        f"{CONCURRENT_COPIES} copies at once: {shown}",
    )
    wait_until(
        "a later copy is replayed",
        lambda: charge(key).headers.get("Idempotent-Replayed") == "true",
        RECOVER_S,
        ev,
    )
    applied = len(applied_calls(stack, "billing", key))
    ev.check(applied == 1, f"billing applied the concurrent charge {applied}x")


# -- F-35 cursor divergence -----------------------------------------------------------------


def _cursor_key(stack: Stack, device: str) -> str:
    return f"{prefix(stack)}:{TENANT}:device:{device}:sync:cursor"


def _cached_copy(stack: Stack, device: str) -> dict[str, str]:
    client = cache_client(stack)
    try:
        raw: dict[bytes, bytes] = client.hgetall(_cursor_key(stack, device))  # type: ignore[assignment]
    finally:
        client.close()
    return {k.decode(): v.decode() for k, v in raw.items()}


def _corrupt_copy(stack: Stack, device: str, cursor: int) -> None:
    """Write another cursor into the cache tier's copy at its current revision (what a lost or
    misordered copy looks like): the next change's higher revision must replace it."""
    client = cache_client(stack)
    try:
        client.hset(_cursor_key(stack, device), "cursor", str(cursor))
    finally:
        client.close()


@drill("F-35", "sync cursor diverged (cache copy and sync-service): the handshake resets it")
def cursor_divergence(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        device = desk.device.device_id
        advanced = desk.post(f"{BASE}/sync/cursor", json={"deviceId": device, "cursor": "100"})
        ev.check(advanced.status_code == 200, f"cursor advanced to 100: {answer_of(advanced)}")
        wait_until(
            "the cache tier's copy holds 100",
            lambda: _cached_copy(stack, device).get("cursor") == "100",
            10,
            ev,
        )
        _corrupt_copy(stack, device, 777)
        authority = 5000
        stack.sim(
            "POST",
            f"/sync/v1/tenants/{TENANT}/devices/{device}/cursor",
            json={"cursorVersion": authority},
        )
        ev.note(f"diverged: copy 777, BFF 100, sync-service {authority}")
        behind = Meter(stack, "bff_sync_cursor_divergences_total", direction="behind")
        shake = desk.post(f"{BASE}/sync/handshake", json={"deviceId": device})
        body = shake.json() if shake.status_code == 200 else {}
        ev.check(
            body.get("cursor") == str(authority) and body.get("cursorReset") is True,
            f"handshake {answer_of(shake)}: cursor {body.get('cursor')}, "
            f"cursorReset={body.get('cursorReset')}",
        )
        ev.check(behind.rise() == 1, behind.shown())
        read = desk.get(f"{BASE}/sync/cursor?deviceId={device}").json()
        ev.check(read.get("cursor") == str(authority), f"GET /sync/cursor: {read.get('cursor')}")
        wait_until(
            f"the cache tier's copy reset to {authority}",
            lambda: _cached_copy(stack, device).get("cursor") == str(authority),
            10,
            ev,
        )
        again = desk.post(f"{BASE}/sync/handshake", json={"deviceId": device}).json()
        ev.check(again.get("cursorReset") is False, "the next handshake agrees: nothing to reset")


# -- F-36 preferences write-through --------------------------------------------------------


def _copies(stack: Stack, operator: str) -> dict[str, Any]:
    """(layout, density, version) of each copy: tenant-service, cache tier, Postgres mirror."""
    path = f"/tenant/v1/tenants/{TENANT}/operators/{operator}/preferences"
    authority = stack.sim("GET", path).json()
    client = cache_client(stack)
    try:
        raw = client.get(f"{prefix(stack)}:{TENANT}:operator:{operator}:preferences")
    finally:
        client.close()
    cached = json.loads(raw) if raw else None
    mirror = mirrored_preferences(stack, operator)

    def fields(copy: dict[str, Any] | None) -> Any:
        return None if copy is None else (copy["layout"], copy["density"], copy["version"])

    return {"tenant-service": fields(authority), "cache": fields(cached), "mirror": fields(mirror)}


@drill("F-36", "preferences write with tenant-service down: 503, no copy changed, then applies")
def preferences_write_through(stack: Stack, ev: Evidence) -> None:
    with settled(stack, ev) as desk:
        current = desk.get(f"{BASE}/preferences").json()
        operator = current["operatorId"]
        first = desk.request(
            "PUT", f"{BASE}/preferences", json={"layout": current["layout"], "density": "compact"}
        )
        ev.check(first.status_code == 200, f"a first write (every copy exists): {answer_of(first)}")
        before = _copies(stack, operator)
        ev.note(f"copies (layout, density, version) before: {before}")
        held = before["tenant-service"][1]
        change = {"density": "spacious" if held != "spacious" else "comfortable"}
        key = new_key()
        failed_writes = Meter(stack, "bff_preferences_writes_total", outcome="upstream_failed")
        with stack.upstream_fault("tenant", "error"):
            refused = desk.request(
                "PUT", f"{BASE}/preferences", json=change, headers={"Idempotency-Key": key}
            )
            ev.check(
                answer_of(refused) == "503 SERVICE_UNAVAILABLE",
                f"PUT /preferences answered {answer_of(refused)}",
            )
        ev.check(failed_writes.rise() >= 1, failed_writes.shown())
        during = _copies(stack, operator)
        ev.check(during == before, f"no copy changed: {during}")
        wait_until(
            "tenant-service back: the same write (same key) 200",
            lambda: (
                desk.request(
                    "PUT", f"{BASE}/preferences", json=change, headers={"Idempotency-Key": key}
                ).status_code
                == 200
            ),
            RECOVER_S,
            ev,
        )
        after = _copies(stack, operator)
        ev.check(
            {copy[1] for copy in after.values()} == {change["density"]},
            f"all three copies hold density={change['density']} now: {after}",
        )
        if len({copy[2] for copy in after.values()}) > 1:
            ev.note(
                "versions differ: tenant-service's went backwards (a restarted simulator), the "
                "BFF's copies keep the newest they saw (the mirror never moves back)"
            )
