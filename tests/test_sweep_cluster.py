"""gfp sweep at cluster scale: what a run asks Ray for (memory from an estimate, retries), one
driver per sweep folder (the lock), and on a multi-node Ray cluster on this machine (Ray's own
`ray.cluster_utils.Cluster`: a head and two worker nodes of one CPU each; marked slow): a sweep
onto it, a node removed mid-run, the driver SIGKILLed and restarted, a folder a node cannot see.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gfp.cli import main
from gfp.errors import ConfigError, DataError
from gfp.job import make_train_job
from gfp.sweep.executor import Options, check_memory_fits
from gfp.sweep.resources import GIB, DatasetSize, estimate_memory, remote_options
from tests.conftest import TINY_TASK

ROOT = Path(__file__).resolve().parents[1]


# ---- what a run asks Ray for --------------------------------------------------------------------
def tiny_job(**settings):
    return make_train_job(TINY_TASK, "bc", overrides={"actor_hidden_dims": "16x16",
                          "value_hidden_dims": "16x16"}, seeds=[0, 1], preset="cpu", steps=100,
                          **settings)  # fmt: skip


def test_memory_estimate_of_a_known_config():
    data = DatasetSize(rows=1000, obs_dim=10, act_dim=2, nbytes=100_000)
    # by hand: a policy MLP 13 -> 16 -> 16 -> 2 has 224 + 272 + 34 = 530 parameters; a critic
    # member 12 -> 16 -> 16 -> 1 with LayerNorm 208 + 272 + 17 + 64 = 561, two of them 1122;
    # networks 4 bytes x (4 x (2 x 530 + 1122) + 1122) = 39400 per seed; the dataset on the host
    # and on the CPU device 200000; margin 1.25 over 200000 + 2 seeds x 39400; plus 1 GiB
    assert estimate_memory(tiny_job(), data) == GIB + 348_500
    assert estimate_memory(tiny_job(), data, gpu=True) == GIB + 223_500  # the host copy only
    # online: a replay buffer of max(buffer_size, rows + 1) rows of 100 bytes per seed
    online = tiny_job(online_steps=100, buffer_size=5000)
    assert estimate_memory(online, data) == GIB + int(1.25 * (200_000 + 2 * (39_400 + 500_000)))
    balanced = tiny_job(online_steps=100, buffer_size=500, balanced_sampling=True)
    assert estimate_memory(balanced, data) == GIB + int(1.25 * (200_000 + 2 * (39_400 + 50_000)))


def test_remote_options_carry_memory_and_retries(tmp_path, monkeypatch):
    import gfp.sweep

    captured = {}

    def fake_run_sweep(spec, out, opts, **kw):
        captured["opts"] = opts
        raise SystemExit(0)

    monkeypatch.setattr(gfp.sweep, "run_sweep", fake_run_sweep)
    with pytest.raises(SystemExit):
        main(["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--out",
              str(tmp_path), "--max-retries", "5", "--memory-per-run", "2.5"])  # fmt: skip
    opts = captured["opts"]
    assert (opts.max_retries, opts.memory_per_run) == (5, 2.5)
    ray_opts = remote_options(opts, tmp_path, 3 * GIB)
    assert ray_opts["memory"] == 3 * GIB and ray_opts["max_retries"] == 5
    assert ray_opts["retry_exceptions"] is False  # errors are the run's failed.json, not retried
    assert (ray_opts["num_cpus"], ray_opts["num_gpus"]) == (1.0, 0.0)
    assert ray_opts["runtime_env"]["env_vars"]["JAX_PLATFORMS"] == "cpu"
    with pytest.raises(ConfigError, match="--memory-per-run 0 must be > 0"):
        Options(memory_per_run=0)


def test_a_run_larger_than_every_node_is_refused():
    class FakeRay:  # ray.nodes()'s documented fields only
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"memory": 4.0 * GIB}},
                    {"Alive": False, "Resources": {"memory": 64.0 * GIB}}]  # fmt: skip

    check_memory_fits(FakeRay, 3 * GIB)
    with pytest.raises(ConfigError, match="needs about 5.0 GiB .* largest node offers 4.0 GiB"):
        check_memory_fits(FakeRay, 5 * GIB)


def test_dataset_sizes_are_recorded_when_checked(tmp_path, tiny_ogbench_dir):
    from gfp.data.load import load_dataset
    from gfp.sweep.datasets import CHECKED, dataset_size, prepare_datasets

    job = tiny_job(dataset_dir=str(tiny_ogbench_dir))
    with pytest.raises(DataError, match="no size recorded"):
        dataset_size(job, tmp_path)
    # a record of an older gfp (a time, no sizes) is checked once more
    (tmp_path / CHECKED).write_text(json.dumps({f"cube-single-noisy-v0|{tiny_ogbench_dir}": "x"}))
    assert prepare_datasets([job], tmp_path, log=print) == 1
    data = load_dataset(TINY_TASK, tiny_ogbench_dir)
    size = dataset_size(job, tmp_path)
    assert (size.rows, size.obs_dim, size.act_dim) == (data.size, data.obs_dim, data.act_dim)
    nbytes = sum(a.nbytes for a in [*data.train.values(), *data.val.values()])
    assert size.nbytes == nbytes
    assert prepare_datasets([job], tmp_path, log=print) == 0


# ---- one driver per sweep folder ----------------------------------------------------------------
HOLD = """
import sys
from gfp.sweep.lock import driver_lock
with driver_lock(sys.argv[1], command="gfp sweep (holder)"):
    print("held", flush=True)
    sys.stdin.readline()  # hold until the test closes our stdin
"""


def python_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding tmp_path/'sweep''s driver lock (until the test ends)."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=python_env())  # fmt: skip
    assert proc.stdout.readline() == "held\n"  # it holds the lock now
    yield out, proc
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_a_second_driver_is_refused_in_one_line(held_lock, capsys):
    from gfp.sweep.lock import read_lock
    from gfp.sweep.plan import SWEEP_FILE
    from gfp.sweep.status import format_status

    out, holder = held_lock
    info = read_lock(out)
    assert (info["pid"], info["host"]) == (holder.pid, socket.gethostname())
    argv = ["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--out", str(out)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"gfp: error: {out} is being driven by pid {holder.pid} on {socket.gethostname()} since "
        f"{info['started']}; watch it with gfp sweep status {out}\n"
    )
    assert not (out / SWEEP_FILE).exists()  # nothing planned or written
    # --break-lock does not take a lock its live holder still holds (flock): the same refusal
    with pytest.raises(SystemExit):
        main([*argv, "--break-lock"])
    assert "is being driven by pid" in capsys.readouterr().err
    # status reads without the lock
    (out / SWEEP_FILE).write_text('{"runs": {}}')
    assert f"driven by pid {holder.pid} on {socket.gethostname()}" in format_status(out)


def test_a_stale_lock_is_taken_over(tmp_path):
    from gfp.sweep.lock import LOCK, driver_lock, proc_start, read_lock

    out = tmp_path / "sweep"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    host = socket.gethostname()
    mine = {"host": host, "pid": os.getpid(), "proc_start": proc_start(os.getpid())}
    notes = []
    for stale in (
        {"host": host, "pid": dead.pid, "proc_start": "1", "started": "2026-01-01T00:00:00"},
        mine | {"proc_start": "1", "started": "earlier"},  # our pid, reused: another process
    ):
        (out / LOCK).write_text(json.dumps(stale))
        with driver_lock(out, log=notes.append):
            assert read_lock(out)["pid"] == os.getpid()
            assert read_lock(out)["proc_start"] == mine["proc_start"]
        assert not (out / LOCK).exists()  # released
    assert notes == [
        f"taking over {out} from the driver pid {dead.pid} on {host} since 2026-01-01T00:00:00 "
        "(no longer running)",
        f"taking over {out} from the driver pid {os.getpid()} on {host} since earlier "
        "(no longer running)",
    ]
    # a live driver's record (without its flock, e.g. from a host that shares no locks) stays
    (out / LOCK).write_text(json.dumps(mine | {"started": "now"}))
    live = pytest.raises(ConfigError, match=f"driven by pid {os.getpid()} on {host} since now")
    with live, driver_lock(out, log=notes.append):
        pass
    # another host's driver cannot be checked from here: refused, unless --break-lock
    (out / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 7, "started": "t"}))
    other = pytest.raises(ConfigError, match="on elsewhere since t; .*--break-lock if that driver")
    with other, driver_lock(out, log=notes.append):
        pass
    with driver_lock(out, break_lock=True, log=notes.append):
        assert read_lock(out)["host"] == host
    assert (
        notes[-1] == f"taking over {out} from the driver pid 7 on elsewhere since t (--break-lock)"
    )


def wait_for(condition, proc: subprocess.Popen | None = None, what: str = "it") -> None:
    """Poll `condition` until it holds (an event in the files), failing if `proc` exits first."""
    deadline = time.monotonic() + 600
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within 10 minutes"
        time.sleep(0.1)


def tiny_argv(data_dir: Path, out: Path, *extra: str, steps: int = 300) -> list[str]:
    return ["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--preset", "cpu",
            "--grid", "actor_hidden_dims=16x16", "--grid", "value_hidden_dims=16x16", "--grid",
            "batch_size=16", "--steps", str(steps), "--log-every", "50", "--checkpoint-every",
            "50", "--eval-every", str(steps), "--eval-episodes", "1", "--dataset-dir",
            str(data_dir), "--out", str(out), *extra]  # fmt: skip


@pytest.mark.slow
def test_a_second_driver_leaves_the_first_ones_runs_alone(tiny_ogbench_dir, tmp_path, capsys):
    from gfp.sweep.lock import read_lock
    from gfp.sweep.plan import FAILED, WORKER
    from gfp.sweep.status import format_status

    out = tmp_path / "sweep"
    argv = tiny_argv(tiny_ogbench_dir, out, steps=1_000_000)  # trains until stopped
    first = subprocess.Popen([sys.executable, "-m", "gfp.cli", *argv], env=python_env(), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # the event: the lock names the first driver and its run has logged a row
        wait_for(lambda: (read_lock(out) or {}).get("pid") == first.pid
                 and any(out.rglob("metrics.csv")), first, "a training run")  # fmt: skip
        (run,) = [p.parent for p in out.rglob("metrics.csv")]
        worker = json.loads((run / WORKER).read_text())
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"gfp: error: {out} is being driven by pid {first.pid} on ")
        assert err.endswith(f"; watch it with gfp sweep status {out}\n") and err.count("\n") == 1
        # the first driver's run is untouched: still running in the same worker, not failed
        assert not (run / FAILED).exists()
        assert json.loads((run / WORKER).read_text()) == worker
        assert "1 running" in format_status(out) and first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-3000:]
    assert read_lock(out) is None  # released on the way out


# ---- on a multi-node Ray cluster on this machine -----------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Ray's own test cluster: a head and two worker nodes of one CPU each, as separate raylets
    on this machine; shut down after the module. Tests that remove or add nodes restore it."""
    from ray.cluster_utils import Cluster

    cache = str(tmp_path_factory.mktemp("jax_cache"))
    old = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # the raylets' workers inherit it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()
        if old is None:
            os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        else:
            os.environ["JAX_COMPILATION_CACHE_DIR"] = old


def worker_nodes(cluster) -> dict[str, object]:
    """The cluster's non-head nodes by Ray node id (the head holds the cluster: never removed)."""
    return {n.node_id: n for n in cluster.list_all_nodes() if n is not cluster.head_node}


def cluster_argv(data_dir: Path, out: Path, cluster, steps: int = 300) -> list[str]:
    """Three configurations (one per node), one seed each."""
    argv = tiny_argv(data_dir, out, "--address", cluster.address, steps=steps)
    return [*argv, "--grid", "lr=1e-3,3e-4,1e-4"]


def finished_rows(out: Path) -> list[tuple[str, int, str]]:
    from gfp.results import read_results_csv

    rows = read_results_csv(out / "results.csv")
    assert all(r["finished"] for r in rows)
    return sorted((str(Path(r["run_dir"]).relative_to(out)), r["step"], r["policy"]) for r in rows)


@pytest.mark.slow
def test_a_sweep_onto_a_cluster_survives_a_lost_node(cluster, tiny_ogbench_dir, tmp_path, capsys):
    import threading

    from gfp.sweep.plan import WORKER

    steps = 2000  # long enough that a run is still training after its first checkpoint
    # (a) the sweep onto the cluster runs to completion: the uninterrupted reference
    ref = tmp_path / "reference"
    main(cluster_argv(tiny_ogbench_dir, ref, cluster, steps))
    assert "3/3 runs done, 0 failed" in capsys.readouterr().out
    runs = sorted(str(p.parent.relative_to(ref)) for p in ref.rglob("summary.json"))
    assert len(runs) == 3
    assert finished_rows(ref) == [(r, steps, "actor") for r in runs]
    # (b) the same sweep again; the node running a run is removed once that run has written its
    # first checkpoint (the event: checkpoint.msgpack and the worker's node in .worker.json)
    out = tmp_path / "sweep"
    nodes = worker_nodes(cluster)
    lost: dict = {}

    def remove_a_node_mid_run():
        def victim():
            for w in out.rglob(WORKER):
                try:
                    node = json.loads(w.read_text()).get("node")
                except (OSError, ValueError):
                    continue  # being written or removed
                run = w.parent
                if node in nodes and (run / "checkpoint.msgpack").exists():
                    return run, node
            return None

        wait_for(lambda: victim() is not None or lost.get("stop"), what="a checkpoint")
        if lost.get("stop"):
            return
        run, node = victim()
        cluster.remove_node(nodes[node], allow_graceful=False)
        lost.update(run=run, finished=(run / "summary.json").exists())

    watcher = threading.Thread(target=remove_a_node_mid_run, daemon=True)
    watcher.start()
    try:
        main(cluster_argv(tiny_ogbench_dir, out, cluster, steps))
    finally:
        lost["stop"] = True
        watcher.join(timeout=60)
        if len(worker_nodes(cluster)) < 2:  # restore head + 2 workers for the next tests
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
    assert lost.get("run") and lost["finished"] is False, "no node was removed mid-run"
    assert "3/3 runs done, 0 failed" in capsys.readouterr().out
    log = (lost["run"].parent / "worker.log").read_text()
    assert log.count("gfp sweep worker pid") == 2 and "resuming seeds [0]" in log  # retried
    assert finished_rows(out) == finished_rows(ref)
    for run in runs:  # the interrupted run ends where the uninterrupted one does, bit for bit
        assert (out / run / "params.msgpack").read_bytes() == (
            ref / run / "params.msgpack"
        ).read_bytes()


@pytest.mark.slow
def test_a_killed_driver_is_restarted_and_the_sweep_continues(cluster, tiny_ogbench_dir,
                                                               tmp_path, capsys):  # fmt: skip
    from gfp.sweep.lock import read_lock

    out = tmp_path / "sweep"
    argv = cluster_argv(tiny_ogbench_dir, out, cluster, steps=2000)
    driver = subprocess.Popen([sys.executable, "-m", "gfp.cli", *argv], env=python_env(),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        wait_for(lambda: any(out.rglob("checkpoint.msgpack")), driver, "a checkpoint")
    finally:
        driver.kill()  # SIGKILL: no results.csv, its lock left behind
        driver.communicate(timeout=60)
    assert read_lock(out)["pid"] == driver.pid and not list(out.rglob("summary.json"))
    main(argv)  # the same command again
    captured = capsys.readouterr()
    assert f"taking over {out} from the driver pid {driver.pid}" in captured.err
    assert "3/3 runs done, 0 failed" in captured.out
    runs = sorted(str(p.parent.relative_to(out)) for p in out.rglob("summary.json"))
    assert len(runs) == 3
    rows = finished_rows(out)
    assert rows == [(r, 2000, "actor") for r in runs]  # one row per run, none twice
    assert read_lock(out) is None


SITE = """
import builtins, io, os

_hidden = os.environ.get("GFP_TEST_HIDDEN")
if _hidden:  # this node's processes cannot see _hidden (a mount the node lacks)
    _stat, _open = os.stat, builtins.open

    def _hides(path):
        try:
            p = os.fsdecode(path)
        except TypeError:
            return False
        return p == _hidden or p.startswith(_hidden + os.sep)

    def stat(path, *a, **k):
        if _hides(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        return _stat(path, *a, **k)

    def open_(file, *a, **k):
        if _hides(file):
            raise FileNotFoundError(2, "No such file or directory", file)
        return _open(file, *a, **k)

    os.stat, builtins.open, io.open = stat, open_, open_
"""


@pytest.mark.slow
def test_a_folder_a_node_cannot_see_is_refused_before_anything_runs(cluster, tiny_ogbench_dir,
                                                                     tmp_path, capsys):  # fmt: skip
    """'Cannot see' simulated: a third node is started whose processes find no file under the
    sweep folder (a sitecustomize on its PYTHONPATH makes os.stat and open fail there, as on a
    machine that lacks the mount); the driver's check runs a task on every node that must read
    the marker file the driver wrote into the folder."""
    out = tmp_path / "sweep"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    blind = cluster.add_node(
        num_cpus=1, env_vars={"PYTHONPATH": str(site), "GFP_TEST_HIDDEN": str(out.resolve())}
    )
    try:
        cluster.wait_for_nodes()
        with pytest.raises(SystemExit) as e:
            main(cluster_argv(tiny_ogbench_dir, out, cluster))
    finally:
        cluster.remove_node(blind)
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"gfp: error: the sweep folder {out.resolve()} is not visible from node")
    assert err.count(f"({socket.gethostname()})") == 1  # the blind node only
    assert "on storage every node sees" in err
    assert not list(out.rglob("config.json")) and not list(out.rglob(".probe-*"))  # nothing ran
