"""The code interpreter's foundation: sandboxed, stateful Python sessions, one per thread (not wired into runs yet).

limits.py holds what a call may use, sandbox.py starts a session's process inside bubblewrap (and refuses when no
sandbox can), kernel.py is the script that runs in it, session.py is the host's side of one session (calls,
wall time, /mnt/data, restarts), files.py reads and writes /mnt/data without trusting it, cgroups.py makes the
per-session cgroups, manager.py keeps the sessions by key for the async backend.
"""

from runner.server.tools.code_interpreter.limits import LIMIT_NAMES, CodeLimits
from runner.server.tools.code_interpreter.manager import SessionManager
from runner.server.tools.code_interpreter.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    prepare,
)
from runner.server.tools.code_interpreter.session import CodeResult, CodeSession

__all__ = [
    "LIMIT_NAMES", "CodeLimits", "CodeResult", "CodeSession", "Sandbox", "SandboxConfig", "SandboxError",
    "SandboxUnavailable", "SessionManager", "prepare",
]
