"""The edge of the system: the inbound HTTP app, the process entry point and outbound upstream clients."""
