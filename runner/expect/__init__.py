"""Expectation checks and their registry."""

from runner.expect.checks import CHECKS, judge, run_checks

__all__ = ["CHECKS", "judge", "run_checks"]
