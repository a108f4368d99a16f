"""Stops and limits a run must survive with one line: a signal while JAX compiles (before the
training loop's own handler, gfp/signals.py) and a step count too large for the machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TASK

SMALL = ["--actor-hidden-dims", "8", "--value-hidden-dims", "8", "--batch-size", "8",
         "--flow-steps", "2", "--eval-episodes", "1", "--eval-every", "0"]  # fmt: skip

# A sitecustomize (Python imports it from PYTHONPATH at start-up) that holds the process inside
# its first jit compilation: a public jax.monitoring listener on the event JAX records once a
# function is lowered, right before XLA compiles it, says so with a file and waits for the test
# to open the gate. The signal therefore lands while the compilation is in progress, whatever the
# machine's load.
GATE = """
import os
import time
from pathlib import Path

import jax.monitoring

_dir = Path(os.environ["GFP_TEST_COMPILE_GATE"])


def _hold(event, duration_secs, **kwargs):
    if event != "/jax/core/compile/jaxpr_to_mlir_module_duration":
        return
    if (_dir / "compiling").exists():
        return  # only the first compilation is held
    (_dir / "compiling").touch()
    while not (_dir / "open").exists():
        time.sleep(0.01)


jax.monitoring.register_event_duration_secs_listener(_hold)
"""


def gfp_env(gate: Path) -> dict[str, str]:
    gate.mkdir(parents=True, exist_ok=True)
    (gate / "sitecustomize.py").write_text(GATE)
    path = os.pathsep.join(filter(None, [str(gate), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GFP_TEST_COMPILE_GATE": str(gate)}


def wait_for(path: Path, proc: subprocess.Popen, limit: float = 600.0) -> None:
    """Until `path` exists (an event of the child), failing if the child ends first. `limit` only
    bounds a broken test; the order of events does not depend on it."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"gfp ended ({proc.returncode}) before compiling: {err[-2000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_first_compilation_is_one_line(tiny_ogbench_dir, tmp_path, signum):
    """Ctrl-C while JAX compiled the first function (before the training loop installed its
    handler) was a KeyboardInterrupt traceback and exit status -2 (SIGTERM: a silent -15); now
    128 + signum with one line saying how to go on, and that resume finishes the run."""
    gate, out = tmp_path / "gate", tmp_path / "run"
    args = ["--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), "--steps", "20",
            "--log-every", "10", *SMALL, "--out", str(out)]  # fmt: skip
    gfp = [sys.executable, "-m", "gfp.cli", "train"]
    proc = subprocess.Popen([*gfp, *args], env=gfp_env(gate), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(gate / "compiling", proc)
        proc.send_signal(signum)
        (gate / "open").touch()
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"gfp: stopped by {name} outside the training loop"), err[-3000:]
    assert not (out / "params.msgpack").exists()
    # The hint fits what was written: the first compilation (building the agent) comes before
    # the run directory, so a new run starts again; once config.json exists it says --resume.
    if (out / "config.json").exists():
        assert f"continue with: gfp train --resume {out}" in last, last
        again = ["--resume", str(out)]
    else:
        assert "nothing was written yet: run the same command again" in last, last
        again = args
    if signum == signal.SIGINT:  # following the hint finishes the run
        done = subprocess.run([*gfp, *again], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (out / "params.msgpack").exists()


def test_steps_beyond_the_step_counter_are_refused_up_front(tiny_ogbench_dir, tmp_path, capsys,
                                                            monkeypatch):  # fmt: skip
    """--steps 10**12: the driver built every chunk boundary at once (a set of 1e9 ints for the
    log rows alone) until the kernel killed the process; the step counter could not have counted
    so far anyway (int32). Now one line before anything is loaded, compiled or written."""
    import gfp.run
    from gfp.cli import main
    from gfp.errors import ConfigError
    from gfp.job import MAX_TOTAL_STEPS, make_train_job

    def never(job):  # today's code went on to train, and to grow without bound
        pytest.fail("a run of 10**12 steps reached training")

    monkeypatch.setattr(gfp.run, "run_training", never)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir),
              "--steps", str(10**12), "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0, err
    assert err == (f"gfp: error: steps = {10**12} is more than the {MAX_TOTAL_STEPS} updates a "
                   "run can count (its step counter is an int32)")  # fmt: skip
    assert not out.exists()
    # the same for the Python API (and sweeps, --resume: every job is a TrainJob), online included
    with pytest.raises(ConfigError, match=r"steps = 2147483000 \+ online_steps = 1000 is more"):
        make_train_job(TINY_TASK, steps=2_147_483_000, online_steps=1000)
    assert make_train_job(TINY_TASK, steps=MAX_TOTAL_STEPS).total_steps == MAX_TOTAL_STEPS


def _all_boundaries(start: int, steps: int, *every: int, extra=()) -> list[int]:
    """The boundaries by their definition (gfp.engine.driver.chunk_boundaries), all at once."""
    marks = {steps, *extra}
    for e in every:
        if e > 0:
            marks.update(range(e * (start // e + 1), steps + 1, e))
    return sorted(m for m in marks if start < m <= steps)


def test_chunk_boundaries_do_not_grow_with_the_run():
    """A log row per update: the first boundaries come at once, in constant memory (all of them
    at once: 1e6 ints here, tens of MB; 2**31 for the longest run allowed), and they equal the
    definition everywhere, up to the longest run allowed."""
    import itertools
    import random
    import tracemalloc

    from gfp.engine.driver import chunk_boundaries
    from gfp.job import MAX_TOTAL_STEPS

    tracemalloc.start()
    try:
        gen = chunk_boundaries(7, 10**6, 1, 10_000, 0, extra=[3, 9, 10**6 - 1])
        assert list(itertools.islice(gen, 4)) == [8, 9, 10, 11]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak} bytes for 4 boundaries"
    tail = chunk_boundaries(MAX_TOTAL_STEPS - 3, MAX_TOTAL_STEPS, 1, extra=[MAX_TOTAL_STEPS - 1])
    assert list(tail) == [MAX_TOTAL_STEPS - 2, MAX_TOTAL_STEPS - 1, MAX_TOTAL_STEPS]
    rng = random.Random(0)
    for _ in range(3000):
        steps = rng.randint(1, 300)
        start = rng.randint(0, steps)
        every = [rng.choice([0, 1, 2, 3, 7, 10, 50, 400]) for _ in range(rng.randint(0, 3))]
        extra = [rng.randint(-5, 320) for _ in range(rng.randint(0, 4))]
        case = (start, steps, *every)
        assert list(chunk_boundaries(*case, extra=extra)) == _all_boundaries(*case, extra=extra)
