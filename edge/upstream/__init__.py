"""Resilient clients for the 14 upstream domain services.

One pooled ``httpx.AsyncClient`` (httpx runs on Trio through anyio) serves every upstream. Each
call follows its upstream's row of the topology table (:mod:`edge.upstream.policy`): timeout and
retry count, retries only where safe (reads; mutations only with an ``Idempotency-Key``) with
jittered backoff, never past the caller's deadline (:mod:`edge.upstream.deadline`); a circuit
breaker per upstream (:mod:`edge.upstream.breaker`); responses decoded with the upstream's
msgspec Structs (``schemas/upstream``) so drift is SCHEMA_DRIFT; Google ID tokens in production
(:mod:`edge.upstream.idtoken`). Typed per-upstream calls: :class:`edge.upstream.apis.Upstreams`.
"""
