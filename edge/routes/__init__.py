"""HTTP routes, one module per feature; each exposes an ``api`` route table."""
