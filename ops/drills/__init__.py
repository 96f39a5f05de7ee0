"""``./ops/chaos``: kill live actors through the admin endpoint, and drive load while doing so.

The kill drill (issue #3, "done when"): run ``./ops/chaos load`` (appends from many actors), kill
actors meanwhile with ``./ops/chaos kill-actors --count 50``, then ``./ops/ledger verify``. The
load command itself checks that every acknowledged command is recorded exactly once.
"""
