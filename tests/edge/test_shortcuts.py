"""Keyboard shortcuts: the static catalogue is itself valid, chords are parsed and normalised,
a set of overrides is refused naming the offending chord (malformed, reserved, unknown action,
a chord or an action twice, a chord still another action's), rendering merges overrides over
the defaults and sets aside the ones it cannot honour; and the rendered-map cache (real Redis)
goes stale on a theme (tenant-wide) or a preferences version change, never across tenants."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from actors.dispatch import route_domain_event
from actors.ports import InboundEvent
from edge.metrics import Metrics
from edge.preferences_cache import PreferencesCache
from edge.redis_tier import RedisTier
from edge.shortcuts import ACTIONS, BadShortcut, check_overrides, normalise, render
from schemas.preferences import THEME_PUBLISHED, MirroredPreferences, RenderedShortcuts
from tests.support.actor_world import running_world

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def chords(overrides: dict[str, str]) -> dict[str, str | None]:
    """action → chord in the rendered map."""
    rendered = render("op-1", overrides, rendered_at=NOW, version=1)
    return {b.action: b.chord for b in rendered.bindings}


def refused(overrides: dict[str, str]) -> str:
    with pytest.raises(BadShortcut) as caught:
        check_overrides(overrides)
    return str(caught.value)


# --- the catalogue and chords ------------------------------------------------------------------


def test_the_defaults_are_well_formed_distinct_and_not_reserved() -> None:
    defaults = [a.default for a in ACTIONS if a.default is not None]
    assert [normalise(c) for c in defaults] == defaults
    assert len(set(defaults)) == len(defaults)
    assert len({a.name for a in ACTIONS}) == len(ACTIONS)
    assert check_overrides({}) == {}


def test_the_simulators_stored_overrides_are_valid() -> None:
    # tenant-service's seed (ops/sim/generate.py): the defaults, written as overrides
    assert check_overrides({"ctrl+k": "search", "ctrl+i": "check-in"}) == {
        "ctrl+k": "search",
        "ctrl+i": "check-in",
    }


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Ctrl+K", "ctrl+k"),
        ("shift+ctrl+j", "ctrl+shift+j"),
        ("Cmd+Option+P", "alt+meta+p"),
        (" control + / ", "ctrl+/"),
        ("F7", "f7"),
        ("alt+pagedown", "alt+pagedown"),
    ],
)
def test_chords_are_normalised(written: str, canonical: str) -> None:
    assert normalise(written) == canonical


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("k", "needs ctrl, alt or meta"),
        ("shift+k", "needs ctrl, alt or meta"),
        ("ctrl+shift", "exactly one key"),
        ("ctrl+k+j", "exactly one key"),
        ("ctrl+ctrl+k", "given twice"),
        ("ctrl+hyper+k", "unknown key"),
        ("ctrl++", "empty part"),
        ("", "empty part"),
        ("ctrl+v", "reserved"),
        ("Meta+Q", "reserved"),
    ],
)
def test_malformed_or_reserved_chords_are_refused(written: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise(written)
    assert refused({written: "search"}).startswith(f"shortcuts.{written}: ")


# --- a set of overrides ------------------------------------------------------------------------


def test_a_valid_set_comes_back_canonical() -> None:
    assert check_overrides({"Shift+Ctrl+J": "search", "ctrl+k": "help"}) == {
        "ctrl+shift+j": "search",
        "ctrl+k": "help",  # free: search moved away from it
    }


def test_an_unknown_action_is_refused_naming_the_chord() -> None:
    assert refused({"ctrl+j": "launch-rockets"}) == (
        "shortcuts.ctrl+j: unknown action 'launch-rockets'"
    )


def test_the_same_chord_twice_is_refused_even_spelled_differently() -> None:
    message = refused({"ctrl+shift+j": "search", "Shift+Ctrl+J": "help"})
    assert message == "shortcuts.Shift+Ctrl+J: the same chord as 'ctrl+shift+j'"


def test_one_action_on_two_chords_is_refused() -> None:
    assert refused({"ctrl+j": "search", "ctrl+m": "search"}) == (
        "shortcuts.ctrl+m: search is bound to ctrl+j"
    )


def test_a_chord_still_bound_by_default_to_another_action_is_refused() -> None:
    message = refused({"ctrl+i": "search"})  # ctrl+i is check-in's default
    assert message == "shortcuts.ctrl+i: already bound to check-in; rebind check-in too"


def test_swapping_two_actions_needs_both_rebound() -> None:
    swapped = check_overrides({"ctrl+i": "search", "ctrl+k": "check-in"})
    assert chords(swapped)["search"] == "ctrl+i"
    assert chords(swapped)["check-in"] == "ctrl+k"


# --- rendering ---------------------------------------------------------------------------------


def test_render_merges_overrides_over_the_defaults() -> None:
    rendered = render(
        "op-1", {"ctrl+shift+j": "search", "f2": "toggle-density"}, rendered_at=NOW, version=4
    )
    by_action = {b.action: b for b in rendered.bindings}
    assert [b.action for b in rendered.bindings] == [a.name for a in ACTIONS]
    assert by_action["search"].chord == "ctrl+shift+j"
    assert by_action["search"].source == "override"
    assert by_action["toggle-density"].chord == "f2"  # unbound by default
    assert by_action["help"].chord == "f1" and by_action["help"].source == "default"
    assert by_action["accept-suggestion"].chord is None
    assert rendered.preferences_version == 4 and not rendered.ignored
    assert rendered.operator_id == "op-1" and not rendered.degraded
    bound = [b.chord for b in rendered.bindings if b.chord is not None]
    assert len(bound) == len(set(bound))


def test_render_sets_aside_what_it_cannot_honour() -> None:
    stored = {
        "ctrl+i": "search",  # check-in's chord, check-in not rebound
        "x": "help",  # malformed
        "ctrl+j": "retired-action",
        "ctrl+shift+u": "go-alerts",  # fine
    }
    rendered = render("op-1", stored, rendered_at=NOW, version=2)
    assert {(i.chord, i.action) for i in rendered.ignored} == {
        ("ctrl+i", "search"),
        ("x", "help"),
        ("ctrl+j", "retired-action"),
    }
    mapped = {b.action: b.chord for b in rendered.bindings}
    assert mapped["search"] == "ctrl+k" and mapped["check-in"] == "ctrl+i"
    assert mapped["help"] == "f1" and mapped["go-alerts"] == "ctrl+shift+u"


def test_dropping_an_override_can_cascade() -> None:
    # search takes go-alerts' chord; go-alerts' override is refused (reserved), so go-alerts
    # keeps ctrl+shift+a and search's override must go too.
    stored = {"ctrl+shift+a": "search", "ctrl+c": "go-alerts", "ctrl+k": "help"}
    rendered = render("op-1", stored, rendered_at=NOW, version=1)
    mapped = {b.action: b.chord for b in rendered.bindings}
    assert mapped["go-alerts"] == "ctrl+shift+a" and mapped["search"] == "ctrl+k"
    assert mapped["help"] == "f1"  # ctrl+k is search's again
    assert len([c for c in mapped.values() if c]) == len({c for c in mapped.values() if c})
    assert {i.action for i in rendered.ignored} == {"search", "go-alerts", "help"}


def test_without_preferences_the_map_is_the_defaults_marked_degraded() -> None:
    rendered = render("op-1", None, rendered_at=NOW, version=None)
    assert rendered.degraded and rendered.preferences_version is None
    assert all(b.source == "default" for b in rendered.bindings)


# --- the rendered-map cache (real Redis) --------------------------------------------------------


def mirrored(version: int, tenant: str = "tnt-a") -> MirroredPreferences:
    return MirroredPreferences(
        tenant=tenant,
        operator_id="op-1",
        layout="default",
        density="compact",
        columns={},
        shortcuts={"ctrl+shift+j": "search"},
        version=version,
        updated_at=NOW,
        synced_at=NOW,
    )


async def cache_map(cache: PreferencesCache, prefs: MirroredPreferences) -> None:
    seen = await cache.shortcuts(prefs.tenant, "op-1")
    rendered = render("op-1", prefs.shortcuts, rendered_at=NOW, version=prefs.version)
    await cache.put(prefs)
    stamped = RenderedShortcuts(generation=seen.generation, map=rendered)
    await cache.put_shortcuts(prefs.tenant, "op-1", stamped)


async def test_a_theme_makes_the_tenants_maps_stale_and_only_theirs(tier: RedisTier) -> None:
    cache = PreferencesCache(tier, Metrics(), ttl_s=60, shortcuts_ttl_s=60)
    await cache_map(cache, mirrored(1))
    await cache_map(cache, mirrored(1, tenant="tnt-b"))
    assert (await cache.shortcuts("tnt-a", "op-1")).rendered is not None
    await cache.invalidate_tenant("tnt-a")
    assert (await cache.shortcuts("tnt-a", "op-1")).rendered is None
    assert (await cache.shortcuts("tnt-b", "op-1")).rendered is not None
    await cache_map(cache, mirrored(1))  # rendered again under the new generation
    assert (await cache.shortcuts("tnt-a", "op-1")).rendered is not None
    ttl = await tier.run(lambda r: r.pttl(cache.generation_key("tnt-a")))
    assert 0 < ttl <= 240_000


async def test_a_map_of_older_preferences_is_never_read_as_current(tier: RedisTier) -> None:
    cache = PreferencesCache(tier, Metrics(), ttl_s=60, shortcuts_ttl_s=60)
    await cache_map(cache, mirrored(1))
    await cache.put(mirrored(2))  # the preferences changed after the map was rendered
    seen = await cache.shortcuts("tnt-a", "op-1")
    assert seen.rendered is None and seen.preferences == mirrored(2)
    await cache.drop("tnt-a", "op-1")
    seen = await cache.shortcuts("tnt-a", "op-1")
    assert seen.rendered is None and seen.preferences is None


async def test_an_entry_naming_another_tenant_is_not_read(tier: RedisTier) -> None:
    cache = PreferencesCache(tier, Metrics(), ttl_s=60, shortcuts_ttl_s=60)
    foreign = msgspec.json.encode(mirrored(3, tenant="tnt-b"))
    await tier.run(lambda r: r.set(cache.preferences_key("tnt-a", "op-1"), foreign, px=60_000))
    assert await cache.get("tnt-a", "op-1") is None
    await cache.put(mirrored(3))
    assert await cache.get("tnt-a", "op-1") == mirrored(3)
    ttl = await tier.run(lambda r: r.pttl(cache.preferences_key("tnt-a", "op-1")))
    assert 0 < ttl <= 60_000


# --- theme.published.v1 is routed to the tenant's help, not to an actor -------------------------


class RecordedHelp:
    def __init__(self) -> None:
        self.tenants: list[str] = []

    async def invalidate_tenant(self, tenant: str) -> None:
        self.tenants.append(tenant)


def theme_event(tenant: str, data: object) -> InboundEvent:
    return InboundEvent(
        subject=THEME_PUBLISHED,
        event_id="ev-theme",
        tenant=tenant,
        data=msgspec.Raw(msgspec.json.encode(data)),
    )


async def test_a_theme_event_invalidates_only_its_own_tenants_help() -> None:
    help_ = RecordedHelp()
    async with running_world({}) as (system, _):
        theme = {"tenantId": "tnt-a", "themeId": "theme-a", "version": 2}
        await route_domain_event(system, theme_event("tnt-a", theme), shortcut_help=help_)
        foreign = theme_event("tnt-b", theme)  # data naming another tenant: ignored
        await route_domain_event(system, foreign, shortcut_help=help_)
        await route_domain_event(system, theme_event("tnt-a", [1]), shortcut_help=help_)
        assert help_.tenants == ["tnt-a"]
        assert list(system.actors()) == []  # no actor is activated for it
