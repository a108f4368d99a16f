"""Stopping a run cleanly on SIGINT/SIGTERM: the first signal asks for a checkpoint at the next
chunk boundary, a second one stops at once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int | None]]:
    """While training: SIGINT/SIGTERM only set a flag (the loop checkpoints at the next chunk
    boundary and stops); a second one stops at once, without a checkpoint."""
    flag: dict[str, int | None] = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: Any) -> None:
        if flag["signum"] is not None:
            for s, h in old.items():
                signal.signal(s, h)
            os.kill(os.getpid(), signum)  # the default action (SIGINT: KeyboardInterrupt)
            return
        flag["signum"] = signum
        print(
            f"\ngfp: {signal.Signals(signum).name} received: writing a checkpoint at the end of "
            "the current chunk, then stopping (send it again to stop at once, without one)",
            file=sys.stderr,
            flush=True,
        )

    for s in signums:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
