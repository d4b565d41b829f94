"""The one exception the daemon's operations raise for a bad request.

It carries the HTTP status, so the service decides what kind of problem a
request has and the API layer only turns it into an ErrorBody.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the daemon refuses; `error` says what is wrong and what to do."""

    def __init__(self, status: int, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


def bad_request(error: str, detail: str | None = None) -> RequestError:
    return RequestError(400, error, detail)


def not_found(error: str) -> RequestError:
    return RequestError(404, error)


def conflict(error: str) -> RequestError:
    return RequestError(409, error)


def unprocessable(error: str, detail: str | None = None) -> RequestError:
    return RequestError(422, error, detail)
