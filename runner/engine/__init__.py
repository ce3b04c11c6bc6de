"""The engine: conversations through the official SDK against a backend, one async function each."""

from runner.engine.backend import BackendTarget, preflight, resolve_backend
from runner.engine.batch import Job, run_batch
from runner.engine.conversation import EngineOptions, run_conversation

__all__ = ["BackendTarget", "EngineOptions", "Job", "preflight", "resolve_backend", "run_batch", "run_conversation"]
