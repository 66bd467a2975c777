"""Keep Python's cyclic garbage collector off the request path of a serving worker.

A worker holding a loaded TensorFlow model, BentoML and its web stack has about 450,000
long-lived Python objects. CPython's full (generation 2) collection walks all of them:
80-120 ms on this machine, during which no request of that worker progresses. Under
load that pause queues requests past the shedding timeout (``serving.http_guard``), so
requests were shed at 60% CPU and the p99 jumped to ~50 ms. ``settle_heap`` collects
once and then freezes every object alive (``gc.freeze``): later collections only look at
objects made after it, i.e. those of requests, and take microseconds.

Called when a worker has loaded and warmed its models, and after each hot swap (which
unfreezes first, so the swapped-out model can be collected, then freezes the new state).
"""

from __future__ import annotations

import gc
import time


def settle_heap() -> float:
    """Collect everything collectable, then freeze what is left; returns the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started
