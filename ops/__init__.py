"""Operations tooling: local stack, upstream simulator, ledger and chaos tools, benchmarks."""
