"""The code interpreter's foundation: sandboxed, stateful Python sessions, one per thread (not wired into runs yet).

limits.py holds what a call may use, files.py reads and writes /mnt/data without trusting it, cgroups.py makes the
per-session cgroups.
"""
