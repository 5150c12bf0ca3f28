"""Stopping a run on request: SIGINT (Ctrl-C) and SIGTERM (a scheduler, ``kill``) save, then exit.

Inside the training loop a signal only raises a flag; the loop finishes the step it is in, saves
a checkpoint and raises :class:`Interrupted`, whose message says how to resume. Where there is
nothing to save (filling the banks, the final evaluation) the signal stops the run at once: the
last checkpoint already holds all finished work. A second signal always stops at once. ``kill -9``
cannot be caught; what it loses is bounded by the checkpoints (``checkpoint_every``).

Handlers can only be installed in the main thread; elsewhere (a notebook's worker thread, say)
signals keep their default behaviour.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped on a signal after saving what it had; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """A context manager that turns SIGINT / SIGTERM into a stop request (see the module doc)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self._at_once = False
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """The signal received here, or "a stop request" when another process received it."""
        return signal.Signals(self.signum).name if self.signum else "a stop request"

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Within this block there is nothing to save: a signal stops the run immediately."""
        self._at_once = True
        try:
            if self.requested:  # it came just before the block
                self._raise(self.signum)  # type: ignore[arg-type]
            yield
        finally:
            self._at_once = False

    def stopped(self, where: str, checkpoint: Path) -> NoReturn:
        """Raise :class:`Interrupted` for a stop request honoured ``where`` (``"after epoch 3"``),
        once ``checkpoint`` holds the run; the signal is this process's, or SIGTERM when another
        process of a torchrun received it."""
        raise Interrupted(
            self.signum or signal.SIGTERM,
            f"{self.signal_name} received: stopped {where}; checkpoint saved in {checkpoint}",
        )

    def _handle(self, signum: int, frame: object) -> None:
        if self._at_once or self.requested:
            self.signum = self.signum or signum
            self._raise(signum)
        self.signum = signum
        log.warning(
            "%s received: finishing this step, then saving a checkpoint (send it again to stop at once)",
            signal.Signals(signum).name,
        )

    @staticmethod
    def _raise(signum: int) -> None:
        raise Interrupted(
            signum,
            f"{signal.Signals(signum).name} received: stopped at once; the last checkpoint holds all finished work",
        )
