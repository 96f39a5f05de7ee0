"""The AI suggestion and alert inboxes: the Redis projections (``projection.py``), the wire
items and the alert list's merge (``items.py``), and the forwarder that delivers recorded
acknowledgements to notification-service (``forwarder.py``)."""
