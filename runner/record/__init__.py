"""Cassettes (vcrpy), secrets written as `<NAME>`: deterministic, offline replays of network traffic."""
