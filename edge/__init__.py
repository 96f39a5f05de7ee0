"""The edge of the system: the inbound HTTP app, the process entry point, the upstream clients."""
