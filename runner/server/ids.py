"""Object ids with the API's prefixes (asst_, thread_, msg_, run_, step_, call_)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A fresh random id such as `asst_3kTq...` (24 base62 characters after the prefix)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))
