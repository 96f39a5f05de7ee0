"""msgspec Structs: the single source of schema truth for the wire, the ledger and the upstreams."""
