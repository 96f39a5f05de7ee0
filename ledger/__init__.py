"""The Postgres ledger: one append-only table that is the activity/audit log and the outbox."""
