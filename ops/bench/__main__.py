"""``python -m ops.bench <name> [args]``: one entry point for the benchmarks in this folder.

``fleet`` is the fleet benchmark (:mod:`ops.bench.fleet`); any other name runs
``ops/bench/<name>.py``'s ``main()`` as ``python -m ops.bench.<name>`` would (which keeps
working), e.g. ``python -m ops.bench heartbeat --devices 100``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = ("_load", "_client")


def benchmarks() -> list[str]:
    """Every module here with a ``main``, but the processes benchmarks start themselves
    (``*_load``, ``*_client``)."""
    return sorted(
        p.stem
        for p in HERE.glob("*.py")
        if not p.stem.startswith("_")
        and not p.stem.endswith(HELPERS)
        and "def main(" in p.read_text()
    )


def main() -> None:
    names = benchmarks()
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(f"usage: python -m ops.bench <{'|'.join(names)}> [args]  (--help after a name)")
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    name = sys.argv[1]
    if name not in names:
        sys.exit(f"no benchmark {name!r}; one of: {', '.join(names)}")
    sys.argv = [f"python -m ops.bench {name}", *sys.argv[2:]]
    importlib.import_module(f"ops.bench.{name}").main()


if __name__ == "__main__":
    main()
