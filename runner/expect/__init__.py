"""Expectation checks and their registry."""

from runner.expect.checks import CHECKS, CannotJudge, CheckContext, judge, run_checks

__all__ = ["CHECKS", "CannotJudge", "CheckContext", "judge", "run_checks"]
