"""Adaptive batching: concurrent requests' rows go through the model's predict in one call.

* The model runs in one worker thread; the event loop only queues rows and hands out results.
* A request that finds the model idle and no recent load is predicted at once: a lone request never waits.
* Rows that arrive while the model is busy queue up; when the model frees, the queue (up to
  ``max_batch_size`` rows, whole requests only) becomes the next batch. Under load, batch size therefore
  follows arrival rate × predict time by itself.
* ``max_wait`` adds a short, bounded linger for closed-loop clients: right after a batch of *k* rows, the
  same clients are about to send again, so while fewer than min(k, max_batch_size) rows are queued the
  batcher waits for them — at most ``max_wait`` after the first queued row arrived, and only within
  ``max_wait`` of the previous batch. ``max_wait = 0`` disables it (pure continuous batching).
* If a batch fails, its requests are retried one by one in the worker, so one bad request fails alone.
* A request with inference parameters (``params``) is a batch of its own: requests with different
  parameters never share a predict call.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Rows = list[list[Any]]
Params = dict[str, Any]
Outcome = list[Any] | BaseException
Callback = Callable[[Outcome], None]
PredictRows = Callable[[Rows, Params | None], list[Any]]
Observe = Callable[[int, float], None]
Job = tuple[Rows, Callback, Params | None]


class Batcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        predict_rows: PredictRows,
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.002,
        observe: Observe | None = None,
    ) -> None:
        self._loop = loop
        self._predict_rows = predict_rows
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait)
        self._observe = observe
        self._queue: deque[Job] = deque()
        self._queued_rows = 0
        self._first_at = 0.0
        self._busy = False
        self._last_rows = 0
        self._last_done = -1e9
        self._timer: asyncio.TimerHandle | None = None
        self._work: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="modeltui-predict", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, rows: Rows, callback: Callback, params: Params | None = None) -> None:
        """Queue one request's rows; ``callback`` gets its predictions (or the exception) on the loop."""
        if not self._queue:
            self._first_at = time.monotonic()
        self._queue.append((rows, callback, params))
        self._queued_rows += len(rows)
        if not self._busy:
            self._maybe_dispatch()

    def close(self) -> None:
        self._work.put(None)

    # ---- event loop side --------------------------------------------------------------------------

    def _maybe_dispatch(self) -> None:
        if self._busy or not self._queue:
            return
        wait = self.max_wait
        if wait > 0 and self._queued_rows < self.max_batch_size:
            now = time.monotonic()
            target = min(self._last_rows, self.max_batch_size) if now - self._last_done <= wait else 1
            deadline = self._first_at + wait
            if self._queued_rows < target and now < deadline:
                if self._timer is None:
                    self._timer = self._loop.call_at(self._loop.time() + (deadline - now), self._on_timer)
                return
        self._dispatch()

    def _on_timer(self) -> None:
        self._timer = None
        if not self._busy and self._queue:
            self._dispatch()

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        q = self._queue
        jobs = [q.popleft()]
        rows = len(jobs[0][0])
        limit = self.max_batch_size if jobs[0][2] is None else 0
        while q and rows + len(q[0][0]) <= limit and q[0][2] is None:
            job = q.popleft()
            rows += len(job[0])
            jobs.append(job)
        self._queued_rows -= rows
        if q:
            self._first_at = time.monotonic()
        self._busy = True
        self._work.put(jobs)

    def _done(self, jobs: list[Job], outcomes: list[Outcome], rows: int, seconds: float) -> None:
        self._busy = False
        self._last_rows = rows
        self._last_done = time.monotonic()
        if self._observe is not None:
            self._observe(rows, seconds)
        for (_, callback, _params), outcome in zip(jobs, outcomes, strict=True):
            with contextlib.suppress(Exception):  # a broken connection must not stop the batcher
                callback(outcome)
        self._maybe_dispatch()

    # ---- worker thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        predict = self._predict_rows
        while True:
            jobs = self._work.get()
            if jobs is None:
                return
            t0 = time.perf_counter()
            params = jobs[0][2]  # None unless the batch is one request with params
            if len(jobs) == 1:
                all_rows = jobs[0][0]
            else:
                all_rows = []
                for job_rows, _, _ in jobs:
                    all_rows += job_rows
            outcomes: list[Outcome]
            try:
                preds = predict(all_rows, params)
                outcomes = []
                start = 0
                for job_rows, _, _ in jobs:
                    end = start + len(job_rows)
                    outcomes.append(preds[start:end] if len(jobs) > 1 else preds)
                    start = end
            except Exception as exc:
                if len(jobs) == 1:
                    outcomes = [exc]
                else:
                    outcomes = []
                    for job_rows, _, _ in jobs:
                        try:
                            outcomes.append(predict(job_rows, None))
                        except Exception as one:
                            outcomes.append(one)
            seconds = time.perf_counter() - t0
            try:
                self._loop.call_soon_threadsafe(self._done, jobs, outcomes, len(all_rows), seconds)
            except RuntimeError:  # the loop is closed: shutting down
                return
