"""Online checkpoints write their replay rows as append-only segments (gfp/rundir.py,
gfp/engine/replay.py): each checkpoint writes only the rows added since the previous one, resuming
rebuilds the buffer bit for bit (also once it wrapped), a damaged segment is never used silently,
the bytes a checkpoint writes do not grow with the buffer, and checkpoints with the rows inside
(from before the segments) are still read."""

from __future__ import annotations

import json
import os
import signal

import flax.serialization
import jax
import numpy as np
import pytest

from gfp.engine.placement import make_sampler
from gfp.engine.replay import create_buffers, restore_rows
from gfp.errors import DataError
from gfp.run import new_replay_rows
from gfp.rundir import (
    _HEADER,
    CHECKPOINT,
    CHECKPOINT_FILE,
    PREV_CHECKPOINT,
    REPLAY_DIR,
    SEGMENT_FILE,
    RunDir,
    _seal,
)
from tests.conftest import TINY_TASK
from tests.test_online import SMALL, collect, collector, dataset, read_csv
from tests.test_resume import finish, gfp_train, jax_cache  # noqa: F401 (jax_cache: a fixture)


def checkpoint(run: RunDir, col, step: int) -> None:
    """What gfp.run's on_checkpoint writes for seed 0 of `col` (no train state needed here)."""
    meta = {"step": step, "online": col.counters(0)}
    run.save_checkpoint({"params": np.zeros(1)}, meta, new_replay_rows(col, 0, run.replay_end))


def snapshot(col) -> list[np.ndarray]:
    return [np.asarray(x).copy() for x in jax.tree.leaves(col.buffers)]


def restored(path, col) -> tuple[list[np.ndarray], dict]:
    """The buffer `col`'s collector rebuilds from the checkpoint in `path` (as Collector._restore
    does, without building another collector), and the checkpoint's meta."""
    state, meta = RunDir(path, create=False).load_checkpoint()
    initial = make_sampler(dataset(), col.agent.batch_keys).data
    start = {k: x[:0] for k, x in initial.items()} if col.sampler.balanced else initial
    buffers = create_buffers(start, col.buffers.capacity, 1)
    buffers = restore_rows(buffers, 0, state["online"]["rows"], meta["online"]["added"])
    return [np.asarray(x).copy() for x in jax.tree.leaves(buffers)], meta


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype


def segments(path) -> list[str]:
    return sorted(p.name for p in (path / REPLAY_DIR).glob("seg-*.msgpack"))


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_envs=2, capacity=1000),  # grows, never full
        dict(n_envs=2, capacity=13),  # the dataset (10 rows) + 3: wraps over the dataset
        dict(n_envs=1, capacity=7, balanced=True),  # online rows only: wraps several times
    ],
)
def test_segments_rebuild_the_buffer_exactly_at_every_checkpoint(tmp_path, kw):
    """ReBRAC's rows get their next action one step later: the rows saved at one checkpoint
    change before the next, and the rebuilt buffer still matches bit for bit."""
    col, states = collector("rebrac", **kw)
    run, seen = RunDir(tmp_path), {}
    states = col.reset(states)
    for step in range(1, 9):
        for _ in range(step % 3 + 1):  # 2, 3, 1, ... collection steps between checkpoints
            states, _, _, _ = col.step(states, [True], 0)
        checkpoint(run, col, step)
        seen[step] = snapshot(col)
        back, meta = restored(tmp_path, col)
        assert_same(back, seen[step])
        listed = {s["file"].split("/")[1] for s in meta["replay"]["segments"]}
        assert listed <= set(segments(tmp_path))
        if step > 1:  # the previous checkpoint stays whole (its segments are kept)
            prev = tmp_path / "prev"
            prev.mkdir(exist_ok=True)
            (prev / CHECKPOINT).write_bytes((tmp_path / PREV_CHECKPOINT).read_bytes())
            (prev / REPLAY_DIR).mkdir(exist_ok=True)
            for name in segments(tmp_path):
                (prev / REPLAY_DIR / name).write_bytes((tmp_path / REPLAY_DIR / name).read_bytes())
            assert_same(restored(prev, col)[0], seen[step - 1])
    if kw["capacity"] < 100:  # wrapped: the segments of overwritten rows are gone
        assert len(segments(tmp_path)) < 8
        assert "seg-000000000001.msgpack" not in segments(tmp_path)
    run.close()


def test_a_checkpoint_writes_only_the_rows_added_since_the_last(tmp_path):
    col, states = collector("rebrac", n_envs=1, capacity=100_000)
    run = RunDir(tmp_path)
    states = col.reset(states)
    row_bytes = sum(x[0, 0].nbytes for x in col.buffers.data.values())
    sizes = []
    for step in range(1, 7):
        for _ in range(20 if step > 1 else 50):
            states, _, _, _ = col.step(states, [True], 0)
        checkpoint(run, col, step)
        sizes.append((tmp_path / REPLAY_DIR / f"seg-{step:012d}.msgpack").stat().st_size)
    # 50 rows, then 20 more each time (+ 1 row again: its next action came after the checkpoint)
    assert sizes[0] >= 50 * row_bytes and all(abs(s - sizes[1]) <= 8 for s in sizes[1:])
    assert 21 * row_bytes <= sizes[1] <= 21 * row_bytes + 1024  # the header, keys, counters
    # the checkpoint file itself holds no rows: it grows by one list entry per segment at most
    assert (tmp_path / CHECKPOINT).stat().st_size < 4096
    run.close()


def test_a_damaged_segment_falls_back_to_the_previous_checkpoint_or_is_refused(tmp_path, capsys):
    col, states = collector("rebrac", n_envs=1)
    run = RunDir(tmp_path)
    states = col.reset(states)
    for step in (1, 2):
        for _ in range(3):
            states, _, _, _ = col.step(states, [True], 0)
        checkpoint(run, col, step)
        if step == 1:
            at_1 = snapshot(col)
    run.close()
    newest = tmp_path / REPLAY_DIR / "seg-000000000002.msgpack"
    blob = bytearray(newest.read_bytes())
    blob[-1] ^= 1
    newest.write_bytes(bytes(blob))
    back, meta = restored(tmp_path, col)
    assert meta["step"] == 1
    assert_same(back, at_1)
    err = capsys.readouterr().err
    recorded = "which is not the file the checkpoint recorded (sha256 mismatch)"
    assert f"needs the replay segment {newest}, {recorded}" in err
    assert "resuming from the previous checkpoint" in err
    # the first segment is in both checkpoints: nothing can be trusted, one line says why
    (tmp_path / REPLAY_DIR / "seg-000000000001.msgpack").unlink()
    with pytest.raises(DataError, match="seg-000000000001.msgpack, which cannot be read") as e:
        RunDir(tmp_path, create=False).load_checkpoint()
    assert "\n" not in str(e.value)


def test_a_resealed_segment_of_another_run_is_refused(tmp_path):
    """A segment that verifies by itself but is not the one the checkpoint recorded."""
    col, states = collector("rebrac")
    run = RunDir(tmp_path)
    states, _ = collect(col, states, 3)
    checkpoint(run, col, 1)
    run.close()
    seg = tmp_path / REPLAY_DIR / "seg-000000000001.msgpack"
    payload = bytearray(seg.read_bytes()[_HEADER.size :])
    payload[-1] ^= 1
    seg.write_bytes(_seal(bytes(payload), SEGMENT_FILE))  # verifies, yet holds other rows
    with pytest.raises(DataError, match="not the file the checkpoint recorded"):
        RunDir(tmp_path, create=False).load_checkpoint()


def test_a_checkpoint_with_its_rows_inside_is_read_and_followed_by_a_whole_segment(tmp_path):
    """A checkpoint from before the segments (format 2: the held rows in the state)."""
    col, states = collector("rebrac", n_envs=2, capacity=13)
    states, _ = collect(col, states, 5)  # wrapped
    arrays, counters = col.payload(0)
    meta = {"step": 5, "online": counters, "format": 2, "metrics_bytes": 0, "eval_bytes": 0}
    payload = flax.serialization.msgpack_serialize(
        {"meta": json.dumps(meta), "state": {"params": np.zeros(1), "online": arrays}}
    )
    (tmp_path / CHECKPOINT).write_bytes(_seal(payload, CHECKPOINT_FILE))
    back, _ = restored(tmp_path, col)
    assert_same(back, snapshot(col))
    run = RunDir(tmp_path, resume=True)
    run.load_checkpoint()
    assert run.replay_end is None  # no segments yet: the next one holds every held row
    states, _ = collect(col, states, 1)
    checkpoint(run, col, 6)
    _, meta = RunDir(tmp_path, create=False).load_checkpoint()
    assert [(s["start"], s["end"]) for s in meta["replay"]["segments"]] == [(0, 12)]
    assert_same(restored(tmp_path, col)[0], snapshot(col))
    run.close()


# ---- end to end: SIGKILL after several incremental checkpoints ------------------------------
# Checkpoints every 50 steps (online from step 20): the one at step 200 is the 4th online one; the
# process dumps its live buffer right after writing it and is killed before the step-230
# collection. The resumed process dumps the buffer it rebuilt. A second run checkpoints every 200
# steps (one segment of all the rows) and is killed at the same point; both end identical.
DRIVER = """
import os, signal, numpy as np, jax
import gfp.engine.online as online, gfp.run as run
DUMP = {dump!r}
def dump(name, col):
    b = col.buffers
    np.savez(os.path.join(DUMP, name), size=b.size, pointer=b.pointer, added=b.added,
             **{{k: np.asarray(v) for k, v in b.data.items()}})
step = online.Collector.step
def killing_step(self, states, active, at):
    if at == 230 and {kill}:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, states, active, at)
online.Collector.step = killing_step
on_checkpoint = run.Training.on_checkpoint
def dumping(self, at, states, sums, collector=None):
    on_checkpoint(self, at, states, sums, collector)
    if collector is not None and at == 200:
        dump("live200.npz", collector)
run.Training.on_checkpoint = dumping
init = online.Collector.__init__
def restoring(self, *a, **kw):
    init(self, *a, **kw)
    dump("restored.npz", self)
online.Collector.__init__ = restoring
"""


def load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_sigkill_after_incremental_checkpoints_resumes_bit_identical_with_a_wrapped_buffer(
    tiny_ogbench_dir,
    tmp_path,
    jax_cache,  # noqa: F811
):
    finals = []
    for every in (50, 200):
        out, dumps = tmp_path / f"run{every}", tmp_path / f"dumps{every}"
        dumps.mkdir()
        args = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir, *SMALL, "--steps", 20,
                "--online-steps", 300, "--log-every", "50", "--checkpoint-every", every,
                "--eval-every", "0", "--eval-episodes", "1", "--balanced-sampling",
                "--buffer-size", "64", "--out", out]  # fmt: skip
        code, _, err = finish(
            gfp_train(jax_cache, *args, driver=DRIVER.format(dump=str(dumps), kill=True))
        )
        assert code == -signal.SIGKILL, err[-3000:]
        _, meta = RunDir(out, create=False).load_checkpoint()
        assert meta["step"] == 200 and meta["online"]["added"] == 180  # wrapped: 180 > 64 rows
        n_segments = len(meta["replay"]["segments"])
        if every == 50:  # written at 50, 100, 150, 200; the first two hold only overwritten rows
            assert [s["end"] for s in meta["replay"]["segments"]] == [130, 180]
            assert n_segments == 2 and len(segments(out)) == 3  # + the previous checkpoint's
        code, text, err = finish(
            gfp_train(jax_cache, "--resume", out, driver=DRIVER.format(dump=str(dumps), kill=False))
        )
        assert code == 0, err[-3000:]
        live, back = load_npz(dumps / "live200.npz"), load_npz(dumps / "restored.npz")
        assert set(live) == set(back)
        for k in live:  # rows and counters, bit for bit
            np.testing.assert_array_equal(back[k], live[k])
            assert back[k].dtype == live[k].dtype
        assert int(back["size"][0]) == 64 and int(back["pointer"][0]) == 180 % 64
        state, meta = RunDir(out, create=False).load_checkpoint()
        assert meta["step"] == 320 and meta["replay"]["counters"]["added"] == 300
        finals.append(((out / "params.msgpack").read_bytes(), state["online"]["rows"], meta))
    (p50, rows50, meta50), (p200, rows200, meta200) = finals
    assert p50 == p200
    # ... and both equal a run never killed: the interrupted episode was replayed, not restarted.
    assert "resumed where it stopped" in text, text
    out = tmp_path / "whole"
    args = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir, *SMALL, "--steps", 20,
            "--online-steps", 300, "--log-every", "50", "--checkpoint-every", 200,
            "--eval-every", "0", "--eval-episodes", "1", "--balanced-sampling",
            "--buffer-size", "64", "--out", out]  # fmt: skip
    code, _, err = finish(gfp_train(jax_cache, *args))
    assert code == 0, err[-3000:]
    whole, meta_whole = RunDir(out, create=False).load_checkpoint()
    assert (out / "params.msgpack").read_bytes() == p50
    for k in rows50:
        np.testing.assert_array_equal(whole["online"]["rows"][k], rows50[k])
    assert meta_whole["replay"]["counters"] == meta50["replay"]["counters"]
    assert set(rows50) == set(rows200)
    for k in rows50:
        np.testing.assert_array_equal(rows50[k], rows200[k])
    assert meta50["online"]["added"] == meta200["online"]["added"] == 300
    assert meta50["replay"]["counters"] == meta200["replay"]["counters"]
    assert [int(r["step"]) for r in read_csv(tmp_path / "run50" / "metrics.csv")][-1] == 320
    assert os.path.getsize(tmp_path / "run50" / CHECKPOINT) < 1 << 20
