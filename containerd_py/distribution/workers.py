"""Errors of transfers, and the thread pool that moves their blobs.

A transfer fails as a whole: the first worker to fail sets the shared `cancel` event, the
others stop at their next chunk, and the caller gets the first real error (not a
sibling's "cancelled").
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from containerd_py import errdefs


class Cancelled(errdefs.Unavailable):
    """The transfer was stopped (its caller went away, or a sibling failed)."""


class DigestMismatch(errdefs.InvalidArgument):
    """The registry served bytes that do not match the digest or size that name them."""


def check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("transfer cancelled")


class Workers:
    """Threads whose jobs succeed or fail together.

        with Workers(3, cancel, "fetch") as w:
            w.submit(job, arg)
            w.join()            # raises the first failure, after the others stopped

    Daemon threads, unlike ThreadPoolExecutor's: a download stuck on a registry that
    stopped answering must not hold up the daemon's exit until its socket times out.
    """

    def __init__(self, concurrency: int, cancel: threading.Event, name: str) -> None:
        self.cancel = cancel
        self.concurrency = max(1, concurrency)
        self.name = name
        self._cond = threading.Condition()
        self._jobs: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._threads = 0
        self._running = 0
        self._errors: list[BaseException] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            self._jobs.append((fn, args))
            if self._threads < self.concurrency:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._threads}", daemon=True
                ).start()
            self._cond.notify()

    def join(self) -> None:
        """Until every job ran, or one failed: then its error (the others are stopped)."""
        with self._cond:
            self._cond.wait_for(lambda: self._errors or not (self._jobs or self._running))
            if self._errors:
                raise self._errors[0]

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._threads -= 1
                    return
                fn, args = self._jobs.popleft()
                self._running += 1
            try:
                if self.cancel.is_set():
                    raise Cancelled("transfer cancelled")
                fn(*args)
            except BaseException as e:
                with self._cond:
                    self._errors.append(e)
                self.cancel.set()
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        self.cancel.set()
        with self._cond:
            self._jobs.clear()
            # The running jobs stop at their next chunk; their ingests must be released
            # before the caller decides about its lease.
            self._cond.wait_for(lambda: not self._running)
        cause = self._first_cause(exc)
        if cause is not exc:
            raise cause from None

    def _first_cause(self, e: BaseException) -> BaseException:
        if not isinstance(e, Cancelled):
            return e
        with self._cond:
            errors = list(self._errors)
        return next((err for err in errors if not isinstance(err, Cancelled)), e)
