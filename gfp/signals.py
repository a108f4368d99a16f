"""Stopping a run cleanly on SIGINT/SIGTERM.

Inside the training loop (`stop_on_signals`): the first signal asks for a checkpoint at the next
chunk boundary, a second one stops at once. Around the whole run (`interruptible`): a signal that
arrives outside the loop (loading the data, the first jit compilations, writing the results)
raises `Interrupted` where the program is, as Python's KeyboardInterrupt would, so the CLI exits
with 128 + the signal's number and one line saying how to go on, instead of a traceback (SIGINT)
or a silent kill (SIGTERM). Every file is written atomically (gfp.io), so a stop anywhere leaves
each one whole.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gfp.errors import Interrupted

_SIGNUMS = (signal.SIGINT, signal.SIGTERM)
# How to go on after a stop, of the runs in progress (innermost last): for the messages.
_HINTS: list[Callable[[], str]] = []

F = TypeVar("F", bound=Callable[..., Any])


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _hint() -> str:
    return f"; {_HINTS[-1]()}" if _HINTS else ""


def _main_thread() -> bool:
    # signal handlers can only be installed from the main thread
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handlers(handler: Callable[[int, Any], None]) -> Iterator[None]:
    old = {s: signal.getsignal(s) for s in _SIGNUMS}
    for s in _SIGNUMS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int | None]]:
    """While training: SIGINT/SIGTERM only set a flag (the loop checkpoints at the next chunk
    boundary and stops); a second one stops at once, without a checkpoint (SIGTERM: killed by
    it; SIGINT: Interrupted)."""
    flag: dict[str, int | None] = {"signum": None}
    if not _main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["signum"] is not None:
            if signum == signal.SIGTERM:  # its default action, now: no Python code runs first
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            raise Interrupted(
                f"stopped at once by a second {_name(signum)}, without a checkpoint of the "
                f"current chunk{_hint()}",
                signum,
            )
        flag["signum"] = signum
        print(
            f"\ngfp: {_name(signum)} received: writing a checkpoint at the end of the current "
            "chunk, then stopping (send it again to stop at once, without one)",
            file=sys.stderr,
            flush=True,
        )

    with _handlers(handler):
        yield flag


@contextlib.contextmanager
def interrupt_on_signals(hint: Callable[[], str]) -> Iterator[None]:
    """Around a run: SIGINT/SIGTERM outside `stop_on_signals` raise Interrupted (module
    docstring). `hint()`: how to go on, said after the stop ("continue with: ...")."""
    if not _main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(
            f"stopped by {_name(signum)} outside the training loop (loading, compiling or "
            f"saving){_hint()}",
            signum,
        )

    _HINTS.append(hint)
    try:
        with _handlers(handler):
            yield
    finally:
        _HINTS.remove(hint)


def interruptible(hint: Callable[[Any], str]) -> Callable[[F], F]:
    """Decorate a function of a job (`run_training(job)`) to run inside `interrupt_on_signals`,
    with `hint(job)` as its hint."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(job: Any, *args: Any, **kwargs: Any) -> Any:
            with interrupt_on_signals(lambda: hint(job)):
                return fn(job, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
