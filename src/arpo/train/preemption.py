"""SIGTERM as a request to stop: the training loop finishes its step, checkpoints and stops.

Schedulers (Slurm, Kubernetes, cloud spot instances) send SIGTERM some seconds before they kill a
job. While a :class:`SigtermFlag` is active, SIGTERM only sets :attr:`SigtermFlag.received`; the
training loop checks it after each step (:class:`arpo.train.loop.TrainLoop`). The handler can only
be installed in the main thread (a Python rule): elsewhere the flag stays unset and SIGTERM keeps
its previous effect. After the first SIGTERM the previous handler is back, so a second SIGTERM
ends the process at once (checkpoints are written atomically, so that is safe too). The previous
handler is restored when the context ends.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class SigtermFlag:
    """``with SigtermFlag() as flag: ... flag.received``; see the module docstring."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> SigtermFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        self._restore()

    def _restore(self) -> None:
        # None: the previous handler was not installed from Python; the default is the closest
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            self._restore()
