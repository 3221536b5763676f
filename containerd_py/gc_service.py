"""When the garbage collector runs: after deletions, in the background, debounced.

Deleting an image, a container or a lease makes things collectable; the services call
`schedule()` and return at once (a request never waits for a collection, which takes the
database's GC lock exclusively). Deletions in quick succession (`pyctr images rm a b c`,
a test tearing down) share one run: the collector thread waits `delay` seconds after the
last `schedule()`, but never more than `max_delay` after the first, so a steady stream of
deletions cannot postpone collection forever. `collect_now()` runs a collection in the
caller's thread and returns its report (Images.Delete with sync, Leases.Delete with sync);
a scheduled run still pending is satisfied by it.

Like containerd's gc scheduler (`plugins/gc/scheduler.go`) in spirit; the pause-ratio and
mutation-threshold tuning are left out: a collection here is cheap next to the operations
that trigger it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from containerd_py.metadata.gc import GCReport

log = logging.getLogger(__name__)

DEFAULT_DELAY = 0.1
DEFAULT_MAX_DELAY = 2.0


class GCScheduler:
    def __init__(
        self,
        collect: Callable[[], GCReport],
        *,
        delay: float = DEFAULT_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self._collect = collect
        self.delay = delay
        self.max_delay = max_delay
        self._cond = threading.Condition()
        self._first: float | None = None  # when the oldest pending request came
        self._last: float = 0.0
        self._closed = False
        self._busy = False  # the thread has taken a request and is (about to be) collecting
        self._run_lock = threading.Lock()  # one collection at a time, in any thread
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name="gc-scheduler", daemon=True)
        self._thread.start()

    def schedule(self) -> None:
        """Ask for a collection soon; returns immediately."""
        now = time.monotonic()
        with self._cond:
            if self._closed:
                return
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify_all()

    def collect_now(self) -> GCReport:
        """Collect in this thread; a pending scheduled run is covered by this one."""
        with self._cond:
            self._first = None
        return self._run()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until nothing is pending or running (for tests and a clean stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                idle = self._first is None and not self._busy
            if idle and not self._run_lock.locked():
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread; a pending collection is dropped (the next start recovers: the
        collector finds what is unreferenced whenever it runs)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- internals ------------------------------------------------------------------

    def _run(self) -> GCReport:
        with self._run_lock:
            report = self._collect()
            self.runs += 1
            if report.errors:
                log.warning("gc: %d errors: %s", len(report.errors), "; ".join(report.errors))
            return report

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._first is not None:
                        now = time.monotonic()
                        due = min(self._last + self.delay, self._first + self.max_delay)
                        if now >= due:
                            break
                        self._cond.wait(due - now)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                self._first = None
                self._busy = True
            try:
                self._run()
            except Exception:
                # A failed run must not kill the scheduler: the next deletion retries.
                log.exception("gc: collection failed")
            finally:
                with self._cond:
                    self._busy = False
