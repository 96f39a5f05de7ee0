"""``./ops/ledger``: print a tenant's audit trail (``replay``) and check the ledger (``verify``)."""
