"""The local stack: finds or starts Postgres, Redis and the Pub/Sub emulator, then the simulator
and the BFF; stops exactly what it started."""
