"""The actor runtime on Trio: virtual, supervised, event-sourced actors (one Trio task each).

Modules: ``address`` (who), ``errors`` (what callers catch), ``config`` (tunables), ``ports``
(what actors need from the ledger), ``envelope`` (mailbox items and ask replies), ``supervision``
(restart budget and backoff), ``cell`` (one actor's mailbox, lifecycle and supervisor),
``system`` (registry, tell/ask, kill, introspection), ``eventsourced`` (command → events →
pure apply), ``device`` / ``property`` (the two kinds), ``kinds`` (wiring them to their
dependencies), ``routing`` (domain events → actors), ``admin`` (introspection HTTP server),
``runtime`` (start-up inside the service process).
"""
