"""``python -m ops.drills`` (wrapped by ``./ops/chaos``)."""

from ops.drills.cli import main

if __name__ == "__main__":
    main()
