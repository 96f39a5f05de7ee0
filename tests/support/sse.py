"""A desktop's SSE stream in a test: a reader thread parses ``text/event-stream`` into events
and hands them over on a queue, so a test waits for the next event (with a deadline) while it
goes on making requests."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from tests.support.desktop import Desktop

STREAM = "/bff/backoffice/v1/sse/stream"


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str | None = None


@dataclass
class _Parsed:
    events: list[SseEvent] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None


def parse_block(block: str, into: _Parsed) -> None:
    """One event block (the lines between blank lines)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            into.comments += 1
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "retry":
            into.retry = int(value)
        elif name:
            fields[name] = value
    if data:
        decoded = msgspec.json.decode("\n".join(data))
        into.events.append(SseEvent(fields.get("event", "message"), decoded, fields.get("id")))


class SseReader:
    """``GET /sse/stream`` as ``desk``; ``Last-Event-ID`` if given. Raises on a non-200."""

    def __init__(
        self,
        desk: Desktop,
        query: str = "",
        *,
        last_event_id: str | None = None,
        expect: int = 200,
        channels: str | None = "alerts",
    ) -> None:
        """``channels`` is added to ``query`` (default: alerts, plus the session events that
        always come); ``None`` leaves it out (every channel)."""
        if channels is not None and "channels=" not in query:
            query += ("&" if "?" in query else "?") + f"channels={channels}"
        headers = desk.headers("GET", STREAM, Accept="text/event-stream")
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=desk.bff_url, timeout=httpx.Timeout(10.0, read=None))
        self._events: queue.Queue[SseEvent | None] = queue.Queue()
        self.parsed = _Parsed()
        self.closed = threading.Event()
        self.raw = bytearray()
        request = self._client.build_request("GET", STREAM + query, headers=headers)
        self.response = self._client.send(request, stream=True)
        self.status_code = self.response.status_code
        if self.status_code != 200:
            self.body = self.response.read()
            self.response.close()
            self._client.close()
            self.closed.set()
            assert self.status_code == expect, (self.status_code, self.body)
            return
        assert expect == 200, f"stream opened (200), expected {expect}"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.iter_bytes():
                self.raw += chunk
                buffer += chunk.decode()
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    before = len(self.parsed.events)
                    parse_block(block, self.parsed)
                    for event in self.parsed.events[before:]:
                        self._events.put(event)
        except (httpx.HTTPError, OSError, ValueError):
            pass
        finally:
            self.closed.set()
            self._events.put(None)

    def next(self, timeout: float = 10.0) -> SseEvent:
        """The next event (keep-alives skipped); fails if the stream ends or nothing comes."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None
        if event is None:
            self._events.put(None)
            raise AssertionError("the stream ended")
        return event

    def next_of(self, name: str, timeout: float = 10.0) -> SseEvent:
        """The next event named ``name``, skipping (and keeping in ``skipped``) the others."""
        while True:
            event = self.next(timeout)
            if event.event == name:
                return event

    def rest(self, timeout: float = 10.0) -> list[SseEvent]:
        """Every event until the server ends the stream."""
        if not self.closed.wait(timeout):
            raise AssertionError(f"the stream did not end within {timeout} s")
        out: list[SseEvent] = []
        while True:
            event = self._events.get_nowait()
            if event is None:
                self._events.put(None)
                return out
            out.append(event)

    def quiet(self, timeout: float) -> list[SseEvent]:
        """Events that arrive within ``timeout`` (for asserting that nothing more came)."""
        out: list[SseEvent] = []
        try:
            while True:
                event = self._events.get(timeout=timeout)
                if event is None:
                    self._events.put(None)
                    return out
                out.append(event)
        except queue.Empty:
            return out

    def close(self) -> None:
        self.response.close()
        self._client.close()
        self.closed.wait(5.0)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
