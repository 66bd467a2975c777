"""Hot swap: a running service picks up a newly pinned model without a restart.

``ModelSwapper`` holds the served model in one reference. A daemon thread reads the pinned
tag (the file the ``bento_model`` asset writes when a model is promoted) every few
seconds; when it names another version, the thread loads that version beside the old
one, warms it up, and only then replaces the reference. A request reads the reference
once at its start and finishes on the model it got, so no request fails or mixes two
versions across a swap; the old model is freed when its last request ends. A version that
fails to load is logged and skipped (the old one keeps serving) until the pin changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

logger = logging.getLogger("reclake.serving")

Model = TypeVar("Model")


def read_pinned_tag(path: str) -> str | None:
    """The tag in the pinned tag file, or None when it is missing or empty."""
    try:
        return Path(path).read_text().strip() or None
    except FileNotFoundError:
        return None


class ModelSwapper(Generic[Model]):
    """The served model, and the thread that swaps in a newly pinned one.

    Args:
        initial_tag: the tag served at start.
        load: builds a warmed-up model from a tag (may take seconds; runs off the request path).
        pinned_tag: returns the tag that should be served now (None: keep the current one).
        poll_s: seconds between reads of ``pinned_tag``.
        on_swap: called (in the watcher thread) after each swap, e.g. ``serving.heap.settle_heap``.
    """

    def __init__(
        self,
        initial_tag: str,
        load: Callable[[str], Model],
        pinned_tag: Callable[[], str | None],
        poll_s: float,
        on_swap: Callable[[], object] | None = None,
    ) -> None:
        self._load = load
        self._on_swap = on_swap
        self._pinned_tag = pinned_tag
        self._poll_s = poll_s
        self.tag = initial_tag
        self.current: Model = load(initial_tag)
        self.swaps = 0
        self.last_error: str | None = None
        self._failed_tag: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="reclake-model-swap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check_now(self) -> bool:
        """Swap in the pinned model if it changed; returns whether a swap happened."""
        wanted = self._pinned_tag()
        if wanted is None or wanted in (self.tag, self._failed_tag):
            return False
        logger.info("pinned model changed: %s -> %s; loading it beside the served one", self.tag, wanted)
        try:
            model = self._load(wanted)
        except Exception as error:  # noqa: BLE001 - any load failure keeps the old model serving
            self._failed_tag, self.last_error = wanted, f"{type(error).__name__}: {error}"
            logger.error("could not load %s, still serving %s: %s", wanted, self.tag, self.last_error)
            return False
        self.current, self.tag = model, wanted  # one reference assignment: requests see old or new
        self.swaps += 1
        self.last_error = self._failed_tag = None
        logger.info("now serving %s", wanted)
        if self._on_swap is not None:
            self._on_swap()
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.check_now()
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad read
                logger.exception("model swap check failed")
