"""How much time the running Lambda invocation has left, for work that must not be cut off halfway.

Each handler runs inside ``running(context)``. Thread-local: the local runner plays several warm worker
containers as threads of one process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Protocol, TypeVar


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


_current = threading.local()


@contextmanager
def running(context: RemainingTime) -> Iterator[None]:
    _current.remaining = context.get_remaining_time_in_millis
    try:
        yield
    finally:
        _current.remaining = None


def time_left() -> timedelta:
    """Outside an invocation (the ops CLI, a test calling a service), time is not limited."""
    remaining: Callable[[], int] | None = getattr(_current, "remaining", None)
    return timedelta.max if remaining is None else timedelta(milliseconds=remaining())


Result = TypeVar("Result")


def carried(function: Callable[..., Result]) -> Callable[..., Result]:
    """``function`` for another thread (a pool's) that keeps this invocation's time left."""
    remaining = getattr(_current, "remaining", None)

    def run(*args: Any, **kwargs: Any) -> Result:
        _current.remaining = remaining
        try:
            return function(*args, **kwargs)
        finally:
            _current.remaining = None

    return run
