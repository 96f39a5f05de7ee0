"""Operations tooling: the local stack, the upstream simulator, ledger and chaos tools, benchmarks."""
