"""Cassettes (vcrpy) and secret scrubbing: deterministic, offline replays of a conversation's network traffic."""
