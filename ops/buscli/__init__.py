"""``./ops/bus``: the bus's dead letters (list, replay); see ``__main__``."""
