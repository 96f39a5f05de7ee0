"""``python -m ops.chaostool`` (wrapped by ``./ops/chaos``)."""

from ops.chaostool.cli import main

if __name__ == "__main__":
    main()
