"""The desktop's keyboard shortcuts: the known actions with their default chords, chord
parsing, and the merge of an operator's overrides into the ``KeyboardShortcutMap``.

Overrides are chord → action (tenant-service's shape). An override *rebinds* its action: the
action's default chord is then free. A valid set of overrides names only known actions, each
once, with well-formed chords that are not reserved, and leaves no chord bound to two actions
(counting the defaults of the actions it does not rebind): to swap two actions' chords, rebind
both. ``PUT /preferences`` refuses an invalid set (:func:`check_overrides`, 400 naming
``shortcuts.<chord>``); rendering a stored set that is invalid (written by another client, or
naming an action since retired) drops the offending overrides and lists them as ``ignored``.

Chords are case-insensitive and normalised: modifiers first in the order ctrl, alt, shift, meta
(aliases ``control``, ``option``, ``cmd``/``command``/``super``/``win`` accepted), then one key.
A key that types something (a letter, digit, punctuation, ``space``) or moves in a form needs
ctrl, alt or meta, so a shortcut never swallows typing; function keys may stand alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from schemas.preferences import (
    BindingSource,
    IgnoredOverride,
    KeyboardShortcutMap,
    ShortcutBinding,
)


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    group: str
    default: str | None  # normalised chord; None: unbound unless the operator binds it


ACTIONS: tuple[Action, ...] = (
    Action("search", "Search everything", "navigation", "ctrl+k"),
    Action("go-dashboard", "Open the dashboard", "navigation", "ctrl+1"),
    Action("go-arrivals", "Open today's arrivals", "navigation", "ctrl+2"),
    Action("go-departures", "Open today's departures", "navigation", "ctrl+3"),
    Action("go-in-house", "Open in-house guests", "navigation", "ctrl+4"),
    Action("go-housekeeping", "Open the housekeeping board", "navigation", "ctrl+5"),
    Action("go-maintenance", "Open the maintenance board", "navigation", "ctrl+6"),
    Action("go-alerts", "Open the alert inbox", "navigation", "ctrl+shift+a"),
    Action("go-suggestions", "Open AI suggestions", "navigation", "ctrl+shift+s"),
    Action("check-in", "Check in the selected reservation", "front-desk", "ctrl+i"),
    Action("check-out", "Check out the selected reservation", "front-desk", "ctrl+o"),
    Action("post-charge", "Post a charge to the folio", "front-desk", "ctrl+shift+c"),
    Action("issue-key", "Issue a room key", "front-desk", "ctrl+shift+k"),
    Action("advance-task", "Advance the selected task or work order", "boards", "ctrl+enter"),
    Action("acknowledge-alert", "Acknowledge the selected alert", "inbox", "alt+a"),
    Action("accept-suggestion", "Accept the selected suggestion", "inbox", None),
    Action("reject-suggestion", "Reject the selected suggestion", "inbox", None),
    Action("refresh", "Refresh the current view", "general", "f5"),
    Action("sync-now", "Sync now", "general", "ctrl+shift+y"),
    Action("open-preferences", "Open preferences", "general", "ctrl+,"),
    Action("toggle-density", "Switch display density", "general", None),
    Action("help", "Show keyboard shortcuts", "general", "f1"),
    Action("sign-out", "Sign out", "general", "ctrl+shift+l"),
)
BY_NAME: Mapping[str, Action] = {a.name: a for a in ACTIONS}

MODIFIERS = ("ctrl", "alt", "shift", "meta")
_ALIASES = {
    "control": "ctrl",
    "option": "alt",
    "cmd": "meta",
    "command": "meta",
    "super": "meta",
    "win": "meta",
}
FUNCTION_KEYS = frozenset(f"f{n}" for n in range(1, 13))
NAMED_KEYS = frozenset(
    {
        "enter",
        "escape",
        "space",
        "tab",
        "backspace",
        "delete",
        "insert",
        "home",
        "end",
        "pageup",
        "pagedown",
        "up",
        "down",
        "left",
        "right",
    }
)
PUNCTUATION = frozenset("/\\,.;'[]-=`")
KEYS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789") | PUNCTUATION | NAMED_KEYS | FUNCTION_KEYS
# What the operating system or every text field already means by these.
RESERVED = frozenset(
    {
        *(f"{mod}+{key}" for mod in ("ctrl", "meta") for key in "acvxzy"),
        "ctrl+shift+z",
        "meta+shift+z",
        "ctrl+w",
        "ctrl+q",
        "meta+w",
        "meta+q",
        "alt+f4",
        "ctrl+tab",
        "ctrl+shift+tab",
    }
)


class BadShortcut(ValueError):
    """One override that cannot be honoured: ``chord`` as the operator wrote it."""

    def __init__(self, chord: str, action: str, reason: str) -> None:
        super().__init__(f"shortcuts.{chord}: {reason}")
        self.chord = chord
        self.action = action
        self.reason = reason


def normalise(chord: str) -> str:
    """The canonical spelling of ``chord`` (``Shift+Ctrl+K`` → ``ctrl+shift+k``); raises
    ``ValueError`` saying what is wrong with it."""
    parts = chord.strip().lower().split("+")
    if any(not p.strip() for p in parts):
        raise ValueError("an empty part (there is no `+` key)")
    mods: list[str] = []
    keys: list[str] = []
    for raw in (p.strip() for p in parts):
        name = _ALIASES.get(raw, raw)
        if name in MODIFIERS:
            if name in mods:
                raise ValueError(f"modifier {name} given twice")
            mods.append(name)
        elif name in KEYS:
            keys.append(name)
        else:
            raise ValueError(f"unknown key {raw[:20]!r}")
    if len(keys) != 1:
        raise ValueError("a chord has exactly one key besides its modifiers")
    key = keys[0]
    if key not in FUNCTION_KEYS and not {"ctrl", "alt", "meta"} & set(mods):
        raise ValueError("needs ctrl, alt or meta (only function keys stand alone)")
    ordered = [m for m in MODIFIERS if m in mods]
    normal = "+".join([*ordered, key])
    if normal in RESERVED:
        raise ValueError(f"{normal} is reserved by the system")
    return normal


def check_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    """The overrides with canonical chords, if the whole set is valid; else :class:`BadShortcut`
    for the first offending one (chords in the order given)."""
    parsed, problems = _parse(overrides)
    if problems:
        raise problems[0]
    _, clashes = _resolve(parsed)
    if clashes:
        raise clashes[0]
    return {chord: action for chord, (action, _) in parsed.items()}


def render(
    operator_id: str,
    overrides: Mapping[str, str] | None,
    *,
    rendered_at: datetime,
    version: int | None,
    stale: bool = False,
) -> KeyboardShortcutMap:
    """The operator's map: every known action with its chord, the overrides that can be
    honoured applied, the others listed in ``ignored``. ``overrides`` ``None``: the preferences
    could not be read at all (defaults only, ``degraded``)."""
    parsed, problems = _parse(overrides or {})
    chosen, clashes = _resolve(parsed)
    bindings = []
    for action in ACTIONS:
        chord = chosen.get(action.name, action.default)
        source: BindingSource = "override" if chord != action.default else "default"
        bindings.append(
            ShortcutBinding(
                action=action.name,
                label=action.label,
                group=action.group,
                chord=chord,
                source=source,
            )
        )
    ignored = [
        IgnoredOverride(chord=p.chord[:64], action=p.action[:64], reason=p.reason)
        for p in (*problems, *clashes)
    ]
    return KeyboardShortcutMap(
        operator_id=operator_id,
        bindings=bindings,
        rendered_at=rendered_at,
        preferences_version=version,
        ignored=ignored,
        stale=stale,
        degraded=overrides is None,
    )


def _parse(
    overrides: Mapping[str, str],
) -> tuple[dict[str, tuple[str, str]], list[BadShortcut]]:
    """({canonical chord: (action, chord as written)}, the overrides that are bad on their own:
    malformed or reserved chords, unknown actions, a chord or an action given twice)."""
    parsed: dict[str, tuple[str, str]] = {}
    rebound: dict[str, str] = {}
    problems: list[BadShortcut] = []
    for written, action in overrides.items():
        try:
            chord = normalise(written)
        except ValueError as exc:
            problems.append(BadShortcut(written, action, str(exc)))
            continue
        if action not in BY_NAME:
            problems.append(BadShortcut(written, action, f"unknown action {action[:64]!r}"))
        elif chord in parsed:
            first = parsed[chord][1]
            problems.append(BadShortcut(written, action, f"the same chord as {first!r}"))
        elif action in rebound:
            problems.append(BadShortcut(written, action, f"{action} is bound to {rebound[action]}"))
        else:
            parsed[chord] = (action, written)
            rebound[action] = chord
    return parsed, problems


def _resolve(
    parsed: Mapping[str, tuple[str, str]],
) -> tuple[dict[str, str], list[BadShortcut]]:
    """({action: chord} for the overrides kept, the ones dropped because their chord is another
    action's). Dropping an override gives its action back its default chord, which may clash
    with a later override in turn: repeated until nothing clashes (each round drops one)."""
    kept = dict(parsed)
    dropped: list[BadShortcut] = []
    while True:
        chords = {action: chord for chord, (action, _) in kept.items()}
        claims: dict[str, list[str]] = {}
        for known in ACTIONS:
            chord = chords.get(known.name, known.default)
            if chord is not None:
                claims.setdefault(chord, []).append(known.name)
        clash = next((chord for chord in kept if len(claims[chord]) > 1), None)
        if clash is None:
            return chords, dropped
        action, written = kept.pop(clash)
        holder = next(name for name in claims[clash] if name != action)
        dropped.append(
            BadShortcut(written, action, f"already bound to {holder}; rebind {holder} too")
        )
