"""Benchmarks: each prints p50/p95/p99, throughput and a ratio against a baseline run."""
