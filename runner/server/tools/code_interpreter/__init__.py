"""The code interpreter: sandboxed, stateful Python sessions, one per thread.

limits.py holds what a call may use, sandbox.py starts a session's process inside bubblewrap (and refuses when no
sandbox can), kernel.py is the script that runs in it, session.py is the host's side of one session (calls,
wall time, /mnt/data, restarts), files.py reads and writes /mnt/data without trusting it, cgroups.py makes the
per-session cgroups, manager.py keeps the sessions by key for the async backend.

The names below load their module on first use (PEP 562): a backend whose runs execute no code does not pay
for the session machinery at start-up.
"""

from __future__ import annotations

from runner.server.tools import lazy_names

_HOMES = {
    "LIMIT_NAMES": "limits", "CodeLimits": "limits", "SessionManager": "manager", "Sandbox": "sandbox",
    "SandboxConfig": "sandbox", "SandboxError": "sandbox", "SandboxUnavailable": "sandbox", "prepare": "sandbox",
    "CodeResult": "session", "CodeSession": "session",
}
__all__ = sorted(_HOMES)


__getattr__ = lazy_names(__name__, _HOMES)
