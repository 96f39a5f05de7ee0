"""Dashboard composition and workbench views (SERVICE_OVERVIEW §3 to §4, API contract §5).

- ``catalogue``/``widgets``: which widgets exist, their upstream calls, deadlines and roles.
- ``composer``: one composition = every upstream call once, in one nursery, under a hard deadline.
- ``flight``: one running (or finished) composition that many requests follow (single-flight).
- ``cache``: DashboardSnapshot / WorkbenchView entries in the Redis cache tier, cross-instance
  lock, the property's index of names — the only writer of ``property:<pid>:cache*`` keys.
- ``views``: the workbench views (today, arrivals, departures, in-house, boards).
- ``engine``: the per-process flight map and the flights' nursery; what routes call, and the
  PropertyActor's ``PropertyViews`` port (invalidation, hints on the fan-out).
- ``invalidation``: which cached views a domain event makes stale.
- ``telemetry``: ``dashboard.viewed.v1`` / ``workbench.opened.v1`` into the ledger.
"""
