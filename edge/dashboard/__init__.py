"""Dashboard composition and workbench views (SERVICE_OVERVIEW §3 to §4, API contract §5).

- ``catalogue``/``widgets``: which widgets exist, their upstream calls, deadlines and roles.
- ``composer``: one composition = every upstream call once, in one nursery, under a hard deadline.
- ``flight``: one running (or finished) composition that many requests follow (single-flight).
- ``cache``: DashboardSnapshot / WorkbenchView entries in the Redis cache tier, cross-instance lock.
- ``workbench``: the workbench views (today, arrivals, departures, in-house, boards).
- ``engine``: runs flights in its own nursery; what routes and the PropertyActor call.
- ``invalidation``/``hints``: which cached views a domain event makes stale; refresh hints for SSE.
- ``telemetry``: ``dashboard.viewed.v1`` / ``workbench.opened.v1`` into the ledger.

This ``__init__`` imports nothing on purpose: ``actors.property`` imports ``flight``,
``invalidation`` and ``workbench`` (none of which import ``actors``), while ``engine`` imports
``actors``.
"""
