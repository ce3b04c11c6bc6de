"""API errors in the official shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


class APIError(Exception):
    """An error the backend answers with; the HTTP layer turns it into the official JSON shape."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error",
        param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}  # sent with the error response (`connection: close` for a 413)

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def shown(text: str, limit: int = 100) -> str:
    """User-supplied text as an error message may quote it: at most `limit` characters, and encodable."""
    text = _SURROGATE.sub("\ufffd", text)
    return text if len(text) <= limit else text[:limit] + "…"


def server_error() -> APIError:
    """500 for a failure of the backend itself, worded as the API words it; the cause is only logged."""
    return APIError(500, "The server had an error while processing your request. Sorry about that!",
                    type="server_error")


def not_found(kind: str, object_id: str) -> APIError:
    """404 for an unknown id, worded as the API words it."""
    return APIError(404, f"No {kind} found with id '{object_id}'.")


def invalid(message: str, param: str | None = None) -> APIError:
    """400 for a request the backend will not accept, naming the offending parameter."""
    return APIError(400, message, param=param)
