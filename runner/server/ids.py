"""Object ids with the API's prefixes (asst_, thread_, msg_, run_, step_, call_)."""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A fresh random id such as `asst_3kTq...` (24 base62 characters after the prefix)."""
    # one urandom call per id (secrets.choice costs one per character); bytes of 248 and up are dropped,
    # so that byte % 62 stays uniform
    chars: list[str] = []
    while len(chars) < 24:
        chars.extend(_ALPHABET[byte % 62] for byte in os.urandom(32) if byte < 248)
    return prefix + "".join(chars[:24])
