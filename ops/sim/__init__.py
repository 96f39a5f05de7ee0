"""The demo-hotel upstream simulator: all 14 domain services under one HTTP server (SIM_URL)."""
