"""bench/monitoring: N simulated deployment runtimes on 127.0.0.1, all in this one asyncio process.

    python bench/monitoring/endpoints.py --targets 1000 [--features 10] [--classes 3] [--seed 0]

Prints one line ``PORTS p1,p2,...`` once every listener is up, then serves until stdin closes (the parent
exits) or SIGTERM. Each listener answers ``GET /metrics`` (anything else: 404) with the real exposition of
``daemon/serving/metrics.py`` (``Metrics.render``, with ``drift.FeatureHistograms`` for the input features),
rendered on demand like the runtime does. Before each render the deployment's counters advance by the
traffic of the time elapsed since its previous scrape, as under steady load:

- model requests on ``/invocations`` at a per-deployment rate (1–40 req/s, Poisson), statuses 200 / 400 /
  500 at 98.5 / 1 / 0.5 %, latencies log-normal around a per-deployment median (1–20 ms), in the runtime's
  ``DURATION_BUCKETS``; batches of 1–8 rows (``modeltui_batch_size``) and predict times;
- health checks on ``/health`` every 5 s (the supervisor's), the scrape itself on ``/metrics``;
- predictions by class (``--classes`` classes); feedback for ~10 % of predictions, posted in one
  ``/feedback`` call per scrape interval, as a confusion matrix that is 90 % right;
- ``--features`` input features (histograms against reference deciles of N(i, i+1)); every tenth deployment
  drifts (its inputs are shifted by half a standard deviation).

The parent measures this process's CPU separately: it is not the monitor's.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import signal
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.serving.drift import DECILES, Feature, FeatureHistograms
from daemon.serving.metrics import BATCH_BUCKETS, DURATION_BUCKETS, Metrics

_EDGES = np.array((*DURATION_BUCKETS, math.inf))


class SimDeployment:
    def __init__(self, i: int, features: int, classes: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.metrics = m = Metrics(f"model-{i:04d}", str(1 + i % 7), "sklearn")
        m.ready = True
        nd = NormalDist()
        feats = [
            Feature(f"f{j}", j, tuple(round(j + (j + 1) * nd.inv_cdf(q), 6) for q in DECILES), DECILES, 10_000)
            for j in range(features)
        ]
        self.hist = FeatureHistograms(feats) if feats else None
        m.features = self.hist
        self.scale = np.arange(1, features + 1, dtype=np.float64)
        self.loc = np.arange(features, dtype=np.float64) + (0.5 * self.scale if i % 10 == 9 else 0.0)
        self.rate = float(rng.uniform(1.0, 40.0))
        self.median = float(rng.uniform(0.001, 0.02))
        self.classes = [str(c) for c in range(classes)]
        self.class_p = rng.dirichlet(np.ones(classes) * 5)
        self.last = time.time() - 60.0  # a deployment that has been serving for a minute
        self.labels_due = 0
        self.advance(time.time())

    def _latencies(self, endpoint: str, n: int, median: float, status: int = 200) -> None:
        if n <= 0:
            return
        values = self.rng.lognormal(math.log(median), 0.6, size=min(n, 2000))
        counts = np.histogram(values, bins=np.concatenate(([0.0], _EDGES)))[0] * (n / values.size)
        counts = np.round(counts).astype(np.int64)
        counts[np.argmax(counts)] += n - int(counts.sum())
        m = self.metrics
        m.requests[(endpoint, status)] += n
        hist = m.durations.get(endpoint)
        if hist is None:
            hist = m.durations[endpoint] = type(m.batch)(DURATION_BUCKETS)
        for k, c in enumerate(counts.tolist()):
            hist.counts[k] += c
        hist.count += n
        hist.sum += float(values.mean()) * n

    def advance(self, now: float) -> None:
        dt = max(now - self.last, 0.0)
        self.last = now
        rng, m = self.rng, self.metrics
        n = int(rng.poisson(self.rate * dt))
        ok, bad, err = (int(x) for x in rng.multinomial(n, (0.985, 0.01, 0.005)))
        self._latencies("/invocations", ok, self.median)
        self._latencies("/invocations", bad, 0.0004, 400)
        self._latencies("/invocations", err, self.median * 2, 500)
        self._latencies("/health", int(rng.poisson(dt / 5.0)), 0.0002)
        self._latencies("/metrics", 1, 0.002)
        if ok:
            # Batches of 1..8 rows; predict time per batch near the median.
            batches = max(1, ok // 2)
            sizes = rng.integers(1, 9, size=min(batches, 1000))
            idx = np.searchsorted(np.array(BATCH_BUCKETS), sizes, side="left")
            for k, c in zip(*np.unique(idx, return_counts=True), strict=True):
                m.batch.counts[int(k)] += int(c) * batches // sizes.size
            m.batch.count = sum(m.batch.counts)
            m.batch.sum += float(sizes.mean()) * batches
            for k, c in enumerate(np.histogram(rng.lognormal(math.log(self.median * 0.7), 0.5, batches),
                                               bins=np.concatenate(([0.0], _EDGES)))[0].tolist()):  # fmt: skip
                m.predict_seconds.counts[k] += c
            m.predict_seconds.count += batches
            m.predict_seconds.sum += self.median * 0.7 * batches
            predicted = rng.multinomial(ok, self.class_p)
            for c, k in zip(self.classes, predicted.tolist(), strict=True):
                m.classes[c] += k
            if self.hist is not None:
                rows = min(ok, 4000)
                self.hist.observe(rng.normal(self.loc, self.scale, size=(rows, self.scale.size)))
            self.labels_due += int(rng.binomial(ok, 0.1))
        if self.labels_due:
            # One /feedback call per scrape carrying the labels that arrived: 90 % match the prediction.
            labelled, self.labels_due = self.labels_due, 0
            k = len(self.classes)
            matrix = np.full((k, k), 0.1 / max(k - 1, 1)) + np.eye(k) * (0.9 - 0.1 / max(k - 1, 1))
            matrix = (matrix * self.class_p[:, None]).ravel()
            for cell, c in enumerate(rng.multinomial(labelled, matrix / matrix.sum()).tolist()):
                if c:
                    m.feedback[(self.classes[cell // k], self.classes[cell % k])] += c
            self._latencies("/feedback", 1, 0.003)

    def body(self) -> bytes:
        self.advance(time.time())
        return self.metrics.render()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.targets + 256)), hard))
    rng = np.random.default_rng(args.seed)
    deployments = [SimDeployment(i, args.features, args.classes, rng) for i in range(args.targets)]
    served = [0]

    def handler(dep: SimDeployment):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /metrics "):
                    body = dep.body()
                    status = b"200 OK"
                    served[0] += 1
                else:
                    body, status = b"not found\n", b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                             b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                             + body)  # fmt: skip
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        return handle

    servers = [await asyncio.start_server(handler(d), "127.0.0.1", 0, backlog=128) for d in deployments]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print("PORTS " + ",".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    await stop.wait()
    for s in servers:
        s.close()
    print(f"SERVED {served[0]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
