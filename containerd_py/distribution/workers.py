"""Errors of transfers, and the thread pool that moves their blobs.

A transfer fails as a whole: the first worker to fail sets the shared `cancel` event, the
others stop at their next chunk, and the caller gets the first real error (not a
sibling's "cancelled").
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from containerd_py import errdefs

# What reading or writing a response raises when the registry goes away mid-transfer.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class Cancelled(errdefs.Unavailable):
    """The transfer was stopped (its caller went away, or a sibling failed)."""


class DigestMismatch(errdefs.InvalidArgument):
    """The registry served bytes that do not match the digest or size that name them."""


def check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("transfer cancelled")


def connection_lost(where: str, e: BaseException) -> errdefs.Unavailable:
    why = str(e) or type(e).__name__
    return errdefs.Unavailable(f"{where}: connection to the registry lost ({why})")


class Workers:
    """A pool whose jobs succeed or fail together.

    with Workers(3, cancel, "fetch") as w:
        w.submit(job, arg)
        w.join()            # raises the first failure, after the others stopped
    """

    def __init__(self, concurrency: int, cancel: threading.Event, name: str) -> None:
        self.cancel = cancel
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix=name)
        self._futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._futures.append(self._pool.submit(fn, *args))

    def join(self) -> None:
        done, _ = wait(self._futures, return_when=FIRST_EXCEPTION)
        for f in done:
            err = f.exception()
            if err is not None:
                raise err

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.cancel.set()
            for f in self._futures:
                f.cancel()
        self._pool.shutdown(wait=True)
        if exc is not None:
            cause = self._first_cause(exc)
            if cause is not exc:
                raise cause from None

    def _first_cause(self, e: BaseException) -> BaseException:
        if not isinstance(e, Cancelled):
            return e
        for f in self._futures:
            if f.done() and not f.cancelled():
                err = f.exception()
                if err is not None and not isinstance(err, Cancelled):
                    return err
        return e
