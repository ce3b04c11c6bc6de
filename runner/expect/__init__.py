"""Expectation checks and their registry."""

from runner.expect.checks import CHECKS, CheckContext, judge, run_checks

__all__ = ["CHECKS", "CheckContext", "judge", "run_checks"]
