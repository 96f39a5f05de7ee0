"""Domain mutations and lock actions proxied upstream, with their audit (``proxy.py``)."""
