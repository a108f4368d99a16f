"""The run directory's files: gfp.io's atomic writes and worker helpers, checkpoints that detect
damage (a sha256 over a header and the payload) and fall back to the previous one, a rotation that
keeps a whole checkpoint at every instant, and one-line errors on a read-only file system.

The property test flips and cuts random bytes of random checkpoints: loading must return exactly
the newest intact checkpoint's state, or raise DataError -- never any other state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gfp.io
import gfp.rundir as rd
from gfp.agents.configs import BCConfig
from gfp.errors import ConfigError, DataError, WriteError
from gfp.rundir import CHECKPOINT, PREV_CHECKPOINT, RunDir

ROOT = Path(__file__).resolve().parents[1]


def assert_same_tree(a, b) -> None:
    (la, ta), (lb, tb) = jax.tree.flatten(a), jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def state_of(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {
        "params": {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": np.zeros(4, np.float32)},
        "opt": {"mu": rng.normal(size=5), "count": np.array(step, np.int32)},
        "rng": rng.integers(0, 2**32, size=2, dtype=np.uint32),
    }


def save(run: RunDir, step: int, state=None) -> None:
    meta = {"step": step, "seed": 0, "config_hash": f"hash{step}"}
    run.save_checkpoint(state_of(step) if state is None else state, meta)


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= mask
    path.write_bytes(bytes(data))


def damage(directory: Path, hits) -> None:
    """Apply hypothesis-drawn hits (file name, 'flip' or 'cut', relative offset, bit mask) to the
    files in `directory`; a file that is missing or already cut to nothing is left alone."""
    for name, how, where, mask in hits:
        path = directory / name
        if not path.exists() or path.stat().st_size == 0:
            continue
        offset = int(where * path.stat().st_size)
        if how == "flip":
            flip(path, offset, mask)
        else:
            os.truncate(path, offset)


# ---- gfp.io --------------------------------------------------------------------------------------
def test_io_atomic_writes_round_trip_and_keep_the_old_file_on_failure(tmp_path, monkeypatch):
    gfp.io.atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5), "p": tmp_path})
    assert (tmp_path / "a.json").read_text() == f'{{\n  "x": 1.5,\n  "p": "{tmp_path}"\n}}\n'
    arrays = {"obs": np.arange(6, dtype=np.float32).reshape(2, 3), "done": np.array([True, False])}
    gfp.io.atomic_savez(tmp_path / "d.npz", arrays)
    with np.load(tmp_path / "d.npz") as z:
        assert sorted(z.files) == ["done", "obs"]
        np.testing.assert_array_equal(z["obs"], arrays["obs"])

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gfp.io.os, "replace", no_space)
    with pytest.raises(WriteError, match=r"\[Errno 28\] No space left on device; the previous"):
        gfp.io.atomic_savez(tmp_path / "d.npz", {"obs": np.zeros(1)})
    with pytest.raises(WriteError, match="no file was written"):
        gfp.io.atomic_write_bytes(tmp_path / "new.bin", b"x")
    monkeypatch.undo()
    with np.load(tmp_path / "d.npz") as z:
        np.testing.assert_array_equal(z["obs"], arrays["obs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d.npz"]  # no temp files left
    # the run directory still offers the helpers it used to define
    assert rd.atomic_write_json is gfp.io.atomic_write_json and rd.os_reason is gfp.io.os_reason


def test_io_and_evaluate_import_no_jax():
    code = "import gfp.io, gfp.evaluate, sys; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_die_with_parent_ends_the_worker_when_its_parent_is_killed(tmp_path):
    """A parent starts a worker that calls die_with_parent and then sleeps; SIGKILL the parent and
    the worker must be gone within a few seconds (without it, the worker would sleep for 60 s)."""
    pid_file = tmp_path / "worker.pid"
    worker = (
        "import os, sys, time; from gfp.io import die_with_parent; "
        "die_with_parent(int(sys.argv[1])); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent = (
        "import os, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())]); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    worker_pid = int(pid_file.read_text())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        # a zombie (dead, not yet reaped by init) counts as gone
        stat = Path(f"/proc/{worker_pid}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            return
        time.sleep(0.05)
    os.kill(worker_pid, 9)
    pytest.fail("the worker outlived its killed parent")


def test_a_checkpoint_write_killed_midway_leaves_no_temp_file_after_the_next_open(tmp_path):
    """SIGKILL while the newest checkpoint is being written (its temp file on disk, not yet
    renamed): the next opening of the run directory removes that temp file and loads the last
    whole checkpoint; files that are not gfp's temp files stay."""
    run = RunDir(tmp_path)
    save(run, 10)
    run.close()
    writer = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from gfp.rundir import RunDir
run = RunDir({str(tmp_path)!r}, resume=True)
real_fsync = os.fsync
def stuck(fd):  # the temp file's data is written, its fsync never returns: the kill lands there
    if not os.readlink(f"/proc/self/fd/{{fd}}").endswith(".tmp"):
        return real_fsync(fd)  # the logs' sync before the checkpoint
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stuck
run.save_checkpoint({{"w": np.ones(1000, np.float32)}}, {{"step": 20, "seed": 0}})
"""
    (tmp_path / "notes.tmp").write_text("the user's")  # not a temp file of a run file
    (tmp_path / ".scratch.tmp").write_text("the user's")
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        left = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{CHECKPOINT}.")]
        assert len(left) == 1 and left[0].endswith(".tmp")
    finally:
        proc.kill()
        proc.wait()
    run = RunDir(tmp_path, resume=True)
    state, meta = run.load_checkpoint()
    assert meta["step"] == 10
    assert_same_tree(state, state_of(10))
    tmp_files = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert tmp_files == [".scratch.tmp", "notes.tmp"]
    run.close()


# ---- checkpoints ---------------------------------------------------------------------------------
def test_two_checkpoints_are_kept_and_the_newest_is_loaded(tmp_path):
    run = RunDir(tmp_path)
    assert run.load_checkpoint() is None and run.checkpoint_step() is None
    for step in (10, 20, 30):
        save(run, step)
    state, meta = run.load_checkpoint()
    assert_same_tree(state, state_of(30))
    assert meta["step"] == 30 and meta["config_hash"] == "hash30" and meta["format"] == 2
    assert run.checkpoint_file == tmp_path / CHECKPOINT and run.checkpoint_step() == 30
    prev = rd._open_checkpoint(tmp_path / PREV_CHECKPOINT)
    assert prev[1]["step"] == 20
    assert_same_tree(prev[0], state_of(20))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    run.close()


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    run = RunDir(tmp_path)
    save(run, 10)
    save(run, 20)
    flip(tmp_path / CHECKPOINT, 2000, 0x01)  # one bit in the middle of the payload
    assert run.checkpoint_step() == 10
    for _ in range(2):
        state, meta = run.load_checkpoint()
        assert meta["step"] == 10
        assert_same_tree(state, state_of(10))
    assert run.checkpoint_file == tmp_path / PREV_CHECKPOINT
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"gfp: {tmp_path / CHECKPOINT} is corrupt (sha256 mismatch); resuming from the previous "
        f"checkpoint {tmp_path / PREV_CHECKPOINT} at step 10"
    ]  # once, however often it is loaded

    # the damaged file is replaced, not kept as the previous checkpoint
    save(run, 20, state_of(21))
    flip(tmp_path / CHECKPOINT, 100)
    state, meta = run.load_checkpoint()
    assert meta["step"] == 10
    assert_same_tree(state, state_of(10))
    run.close()


def test_no_trustworthy_checkpoint_is_one_data_error_naming_both_files(tmp_path):
    run = RunDir(tmp_path)
    save(run, 10)
    flip(tmp_path / CHECKPOINT, 0)  # the magic
    with pytest.raises(DataError) as e:
        run.load_checkpoint()
    msg = str(e.value)
    assert "\n" not in msg and "is not a gfp checkpoint" in msg
    assert "there is no previous checkpoint" in msg and "--overwrite" in msg
    save(run, 20)  # replaces the damaged file; nothing is rotated
    save(run, 30)
    flip(tmp_path / CHECKPOINT, 5000)
    os.truncate(tmp_path / PREV_CHECKPOINT, 100)
    with pytest.raises(DataError) as e:
        run.load_checkpoint()
    msg = str(e.value)
    assert f"{tmp_path / CHECKPOINT} is corrupt (sha256 mismatch)" in msg
    assert f"{tmp_path / PREV_CHECKPOINT} is corrupt (length mismatch" in msg
    assert run.checkpoint_step() is None
    # a directory whose checkpoints cannot be read still refuses a new run instead of crashing
    run.write_config({})
    run.close()
    with pytest.raises(ConfigError, match="unfinished run \\(no checkpoint that verifies\\)"):
        RunDir(tmp_path)


def test_a_checkpoint_without_the_integrity_header_is_refused(tmp_path):
    """Format 1 (a bare msgpack file, as gfp wrote before) cannot be verified, so it is not used."""
    import flax.serialization

    run = RunDir(tmp_path)
    old = flax.serialization.msgpack_serialize({"meta": '{"step": 5, "format": 1}', "state": {}})
    (tmp_path / CHECKPOINT).write_bytes(old)
    with pytest.raises(DataError, match="written by a gfp before checkpoint format 2"):
        run.load_checkpoint()
    run.close()


def test_a_kill_while_rotating_leaves_a_whole_checkpoint(tmp_path, monkeypatch):
    """Kill (an exception standing in for SIGKILL) just before the new file takes its name, with
    and without hard links: loading must give the last complete checkpoint."""

    class Killed(BaseException):
        pass

    real_replace = os.replace

    def killed_before_the_newest(src, dst):
        if Path(dst).name == CHECKPOINT:
            raise Killed
        real_replace(src, dst)

    for hard_links in (True, False):
        d = tmp_path / str(hard_links)
        run = RunDir(d)
        save(run, 10)
        save(run, 20)
        monkeypatch.setattr(rd.os, "replace", killed_before_the_newest)
        if not hard_links:
            monkeypatch.setattr(rd.os, "link", lambda *a: (_ for _ in ()).throw(
                OSError(errno.EPERM, "Operation not permitted")))  # fmt: skip
        with pytest.raises(Killed):
            save(run, 30)
        monkeypatch.undo()
        run.close()
        run = RunDir(d, resume=True)
        state, meta = run.load_checkpoint()
        assert meta["step"] == 20
        assert_same_tree(state, state_of(20))
        assert (d / CHECKPOINT).exists() is hard_links  # without links the newest is missing
        save(run, 30)  # and the run goes on from there
        assert run.checkpoint_step() == 30
        assert rd._open_checkpoint(d / PREV_CHECKPOINT)[1]["step"] == 20
        run.close()


def test_overwrite_removes_both_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({})
    save(run, 10)
    save(run, 20)
    run.close()
    RunDir(tmp_path, overwrite=True).close()
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / PREV_CHECKPOINT).exists()


# ---- TensorBoard -------------------------------------------------------------------------------
def test_non_finite_figures_stay_in_the_csvs_and_out_of_tensorboard_silently(
    tmp_path, capsys, caplog
):
    """A return-scored task has no success flag (NaN): tensorboardX would warn 'NaN or Inf found
    in input tensor' for every such value; the CSVs keep them, TensorBoard leaves them out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    caplog.set_level("DEBUG")
    run = RunDir(tmp_path)
    nan, inf = float("nan"), float("inf")
    run.log_metrics(10, {"critic/loss": 0.5, "g/mean": nan, "grad/norm": inf})
    run.log_eval(10, {"actor/success": nan, "actor/return": -12.5, "eval_seed": 7})
    run.log_scalars(11, {"return": 3.0, "success": nan}, "explore/")
    run.close()
    assert capsys.readouterr() == ("", "")
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    row = (tmp_path / "metrics.csv").read_text().splitlines()[1]
    assert row == "10,0.5,nan,inf"
    assert (tmp_path / "eval.csv").read_text().splitlines()[1] == "10,nan,-12.5,7"
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = sorted(events.Tags()["scalars"])
    assert tags == ["critic/loss", "eval/actor/return", "explore/return"]
    assert [e.value for e in events.Scalars("eval/actor/return")] == [-12.5]


def test_hparams_with_the_final_figures_for_tensorboards_hparams_tab(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from gfp.job import job_record, make_train_job

    job = make_train_job(
        "cube-single-noisy-singletask-task1-v0", "gfp", preset="cpu", steps=40, out=tmp_path
    )
    config = {**job_record(job), "seed": 0}
    summary = {"task": job.task, "agent": "gfp", "seed": 0, "steps": 40, "wall_seconds": 9.5,
               "actor/success_final": 0.62, "actor/success_last3": 0.5,
               "actor/return_final": float("nan"),  # a figure the task lacks: not a metric
               "offline/vabc/success_final": 0.58}  # fmt: skip
    for _ in range(2):  # written again (a resumed run killed before summary.json): one session
        run = RunDir(tmp_path, overwrite=True)
        run.write_config(config)
        run.log_metrics(40, {"critic/loss": 0.5})
        run.write_summary(summary)
        run.close()

    events = EventAccumulator(str(tmp_path / "tb" / "hparams"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["task"].string_value == "cube-single-noisy-singletask-task1-v0"
    assert hp["agent"].string_value == "gfp" and hp["preset"].string_value == "cpu"
    assert hp["seed"].number_value == 0 and hp["steps"].number_value == 40
    assert hp["alpha"].number_value == pytest.approx(job.config.alpha)
    assert hp["eta"].number_value == pytest.approx(job.config.eta)
    assert hp["actor_hidden_dims"].string_value == "x".join(map(str, job.config.actor_hidden_dims))
    assert hp["layer_norm"].bool_value is job.config.layer_norm
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = sorted(m.name.tag for m in experiment.metric_infos)
    assert metrics == ["final/actor/success_final", "final/actor/success_last3",
                       "final/offline/vabc/success_final"]  # fmt: skip
    final = events.Scalars("final/actor/success_final")
    assert [(e.step, round(e.value, 6)) for e in final] == [(40, 0.62)]
    assert len(list((tmp_path / "tb" / "hparams").iterdir())) == 1


# ---- params.msgpack ------------------------------------------------------------------------------
def params_of(seed: int) -> dict:
    return jax.tree.map(np.asarray, state_of(seed)["params"])


def test_params_round_trip_behind_the_integrity_header(tmp_path, capsys):
    import flax.serialization

    run = RunDir(tmp_path)
    run.save_params(params_of(3))
    blob = (tmp_path / rd.PARAMS).read_bytes()
    assert blob.startswith(rd.PARAMS_FILE.magic) and blob[:8] != rd.CHECKPOINT_FILE.magic
    payload = flax.serialization.msgpack_serialize(params_of(3))
    # the payload is the file gfp wrote before the header: what tests/test_golden.py hashes
    assert blob.endswith(payload) and rd.params_payload(tmp_path / rd.PARAMS) == payload
    assert_same_tree(run.load_params(), params_of(3))
    assert capsys.readouterr().err == ""  # a verified file: no note
    run.close()


def damaged_params(kind: str, path: Path) -> None:
    if kind == "flipped":
        flip(path, path.stat().st_size // 2, 0x04)  # one bit in the payload
    elif kind == "flipped header":
        flip(path, 10, 0x01)  # the format field
    elif kind == "truncated":
        os.truncate(path, path.stat().st_size - 7)
    elif kind == "cut in the header":
        os.truncate(path, 20)
    elif kind == "empty":
        os.truncate(path, 0)
    elif kind == "text":
        path.write_text('{"actor": [0.1, 0.2]}\n')
    else:  # a checkpoint copied over it: verified, but not a parameters file
        run = RunDir(path.parent, resume=True)
        save(run, 5)
        run.close()
        shutil.copyfile(path.parent / CHECKPOINT, path)


@pytest.mark.parametrize(
    "kind",
    ["flipped", "flipped header", "truncated", "cut in the header", "empty", "text", "checkpoint"],
)
def test_damaged_params_are_one_line_naming_the_file(kind, tmp_path, capsys):
    from gfp.run import load_run

    run = RunDir(tmp_path)
    # enough of a config.json for load_run to build the agent before it reads the parameters
    config = dataclasses.asdict(BCConfig())
    dataset = {"obs_dim": 3, "act_dim": 2}
    run.write_config({"agent": "bc", "agent_config": config, "dataset": dataset})
    run.save_params(params_of(1))
    run.close()
    path = tmp_path / rd.PARAMS
    damaged_params(kind, path)
    with pytest.raises(ConfigError) as e:
        RunDir(tmp_path, create=False).load_params()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path} ") and "cannot be used" in msg, msg
    assert capsys.readouterr().err == ""  # no note: nothing of it was used
    # gfp eval, gfp export and gfp.load_run all read the parameters through load_run
    with pytest.raises(ConfigError, match="cannot be used"):
        load_run(tmp_path)


def test_headerless_params_from_an_older_gfp_load_with_one_note(tmp_path, capsys):
    import flax.serialization

    (tmp_path / rd.PARAMS).write_bytes(flax.serialization.msgpack_serialize(params_of(2)))
    assert_same_tree(RunDir(tmp_path, create=False).load_params(), params_of(2))
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"gfp: note: {tmp_path / rd.PARAMS} has no integrity header (written by a gfp before "
        "parameters file format 1); its parameters are used unverified"
    ]


def test_overwrite_removes_only_what_gfp_wrote(tmp_path, capsys):
    run = RunDir(tmp_path)
    run.write_config({"run": "old"})
    run.log_metrics(10, {"loss": 1.0})
    run.log_eval(10, {"actor/success": 0.5, "eval_seed": 3})
    save(run, 10)
    run.save_params(params_of(0))
    run.write_summary({"run": "old"})
    run.close()
    (tmp_path / "actor.mp4").write_bytes(b"video")  # a --video of the policy eval.csv names
    (tmp_path / "explore.csv").write_text("step\n1\n")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "tb" / "mynotes.md").write_text("# about these curves")
    (tmp_path / "demo.mp4").write_bytes(b"not a policy's video")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    capsys.readouterr()

    run = RunDir(tmp_path, overwrite=True)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "gfp: note: --overwrite kept 4 files gfp did not write: demo.mp4, notes.txt, plots/, "
        "tb/mynotes.md"
    ]
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert (tmp_path / "tb" / "mynotes.md").read_text() == "# about these curves"
    assert (tmp_path / "demo.mp4").read_bytes() == b"not a policy's video"
    assert (tmp_path / "plots" / "a.png").read_bytes() == b"png"
    assert not list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    gone = [*rd.RUN_FILES, "actor.mp4"]
    assert not [n for n in gone if (tmp_path / n).exists()]
    # the new run's files replace the old ones
    run.write_config({"run": "new"})
    run.log_metrics(5, {"loss": 2.0})
    assert run.read_config() == {"run": "new"}
    assert [r["step"] for r in run.metrics.read()] == ["5"]
    run.close()

    # a directory holding only gfp's files: nothing kept, no note; tb/ goes with its events
    (tmp_path / "notes.txt").unlink()
    shutil.rmtree(tmp_path / "plots")
    (tmp_path / "tb" / "mynotes.md").unlink()
    (tmp_path / "demo.mp4").unlink()
    RunDir(tmp_path, overwrite=True).close()
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_rewind_cuts_the_logs_back_to_the_checkpoint_used(tmp_path):
    run = RunDir(tmp_path)
    for step in (10, 20, 30):
        run.log_metrics(step, {"loss": float(step)})
        save(run, step)
    run.log_metrics(40, {"loss": 40.0})
    run.close()
    flip(tmp_path / CHECKPOINT, 3000)
    run = RunDir(tmp_path, resume=True)
    _, meta = run.load_checkpoint()
    run.rewind(meta)
    assert [r["step"] for r in run.metrics.read()] == ["10", "20"]
    assert run.purge_step == 21
    run.close()


@st.composite
def pytrees(draw):
    leaves = st.dictionaries(
        st.text("abcxyz_", min_size=1, max_size=6),
        hnp.arrays(
            st.sampled_from([np.float32, np.float64, np.int32, np.uint32, np.bool_]),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        ),
        min_size=1,
        max_size=4,
    )
    return draw(st.dictionaries(st.sampled_from(["params", "opt", "rng"]), leaves, min_size=1))


# A damage: (which file, 'flip' or 'cut', a position as a fraction of the file, a XOR mask).
damages = st.tuples(
    st.sampled_from([CHECKPOINT, PREV_CHECKPOINT]),
    st.sampled_from(["flip", "flip", "flip", "cut"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(1, 255),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=st.lists(pytrees(), min_size=1, max_size=3), hits=st.lists(damages, max_size=4))
def test_damaged_checkpoints_load_the_newest_intact_state_or_raise(states, hits):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run = RunDir(d)
        for step, state in enumerate(states, 1):
            save(run, step, state)
        written = {name: (d / name).read_bytes() for name in (CHECKPOINT, PREV_CHECKPOINT)
                   if (d / name).exists()}  # fmt: skip
        damage(d, hits)
        intact = [name for name in (CHECKPOINT, PREV_CHECKPOINT)
                  if name in written and (d / name).read_bytes() == written[name]]  # fmt: skip
        saved = {CHECKPOINT: len(states), PREV_CHECKPOINT: len(states) - 1}
        try:
            loaded = run.load_checkpoint()
        except DataError as e:
            assert not intact, f"refused although {intact} is intact: {e}"
            assert "\n" not in str(e)
        else:
            assert intact, "loaded a damaged checkpoint"
            state, meta = loaded
            assert meta["step"] == saved[intact[0]]
            assert_same_tree(state, states[meta["step"] - 1])
        finally:
            run.close()


# ---- read-only file systems ---------------------------------------------------------------------
def _read_only_mount(path: Path) -> bool:
    """Mount a tmpfs at `path` holding a copy of what is there, then make it read-only; False if
    this process may not mount (not root, or no CAP_SYS_ADMIN in a container)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    keep = path.with_name(path.name + ".orig")
    shutil.copytree(path, keep)
    r = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        shutil.rmtree(keep)
        return False
    shutil.copytree(keep, path, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return True


@contextlib.contextmanager
def read_only(root: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the directory tree at `root` read-only: a real read-only tmpfs holding a copy of it
    (kind "mount": needs root with CAP_SYS_ADMIN, skipped elsewhere), or (kind "patched", works
    everywhere) the writing calls of os and Path failing with EROFS for every path under it."""
    if kind == "mount":
        if not _read_only_mount(root):
            pytest.skip("this process may not mount a file system (the 'patched' case still runs)")
        try:
            yield
        finally:
            subprocess.run(["umount", str(root)], check=True)
        return
    erofs = OSError(errno.EROFS, "Read-only file system")

    def guard(fn, writes):
        def wrapped(p, *args, **kwargs):
            if str(p).startswith(str(root)) and writes(*args, **kwargs):
                raise erofs
            return fn(p, *args, **kwargs)

        return wrapped

    def flags_write(flags, *args, **kwargs):
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    def mode_writes(mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    monkeypatch.setattr(os, "open", guard(os.open, flags_write))
    monkeypatch.setattr(Path, "open", guard(Path.open, mode_writes))
    for name in ("mkdir", "truncate", "unlink", "replace", "rename"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
    yield


@pytest.mark.parametrize("kind", ["mount", "patched"])
def test_read_only_file_system_is_one_write_error(kind, tmp_path, monkeypatch):
    d = tmp_path / "ro" / "run"
    run = RunDir(d)
    run.write_config({"steps": 10})
    run.log_metrics(10, {"loss": 1.0})
    save(run, 10)
    run.close()
    with read_only(tmp_path / "ro", kind, monkeypatch):
        check_read_only_run(d, kind)


def check_read_only_run(d: Path, kind: str) -> None:
    for kwargs in ({"resume": True}, {"overwrite": True}, {}):
        with pytest.raises(WriteError) as e:
            RunDir(d, **kwargs)
        msg = str(e.value)
        assert "\n" not in msg and "Read-only file system" in msg, (kind, msg)
        assert msg.startswith(f"cannot write to the run directory {d}: [Errno 30]"), (kind, msg)
    # a new run directory below it cannot even be made
    with pytest.raises(WriteError, match=r"cannot create the run directory .*\[Errno 30\]"):
        RunDir(d / "seed1")
    # reading still works
    run = RunDir(d, create=False)
    assert run.checkpoint_step() == 10 and run.read_config() == {"steps": 10}
