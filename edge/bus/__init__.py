"""The message bus port and its two adapters: Google Pub/Sub and the embedded Redis-Streams bus."""
