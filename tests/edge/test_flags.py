"""Runtime flags (edge/flags.py, FAILURE_MODES F-40): the heartbeat sample rate set in the flags
hash changes what a running BFF records, without a restart, and removing it restores the
environment's default; malformed values never replace a good one."""

from __future__ import annotations

import itertools

import redis

from edge.flags import Flags, decode_flags
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import wait_until
from tests.support.sim import SimHandle

DEFAULT = Flags(app_version_floor=None, heartbeat_sample_rate=0.05)


def test_flags_fall_back_to_the_defaults_and_ignore_malformed_values() -> None:
    assert decode_flags({}, DEFAULT, DEFAULT) == DEFAULT
    good = decode_flags(
        {b"heartbeatSampleRate": b"0.5", b"appVersionFloor": b"1.2.3"}, DEFAULT, DEFAULT
    )
    assert good == Flags(app_version_floor=(1, 2, 3), heartbeat_sample_rate=0.5)
    for rate in (b"2", b"-0.1", b"nan", b"half"):
        bad = {b"heartbeatSampleRate": rate, b"appVersionFloor": b"v1"}
        assert decode_flags(bad, good, DEFAULT) == good  # the last good values stay


def test_the_heartbeat_sample_rate_flag_applies_without_a_restart(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str, redis_prefix: str
) -> None:
    bff = start_bff(
        SIM_URL=sim.url, BFF_HEARTBEAT_SAMPLE_RATE="0", BFF_VERSION_FLOOR_REFRESH_S="0.2"
    )
    desk = Desktop(bff.url, sim.url)
    path = f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat"
    keys = (f"hb-{n}" for n in itertools.count())

    def beat() -> str:
        key = next(keys)
        answer = desk.post(path, json={"appVersion": APP_VERSION}, headers={"Idempotency-Key": key})
        assert answer.status_code == 200, answer.text
        return key

    def recorded() -> set[str]:
        trail = ledger_subjects(database_url, f"device:{desk.device_id}")
        return {p["commandId"] for s, p in trail if s.endswith("device.heartbeat.v1")}

    before = [beat() for _ in range(3)]
    assert not recorded() & set(before)  # the environment says 0: nothing sampled

    flags = redis.Redis.from_url(REDIS_URL)
    try:
        flags.hset(f"{redis_prefix}:_global:flags", "heartbeatSampleRate", "1")
        wait_until(lambda: beat() in recorded(), 10, "a heartbeat recorded after the flag")
        sampled = [beat() for _ in range(3)]
        assert set(sampled) <= recorded()  # every one, now

        flags.hdel(f"{redis_prefix}:_global:flags", "heartbeatSampleRate")
        wait_until(lambda: beat() not in recorded(), 10, "the environment's rate again")
        after = [beat() for _ in range(3)]
        assert not recorded() & set(after)
    finally:
        flags.close()
