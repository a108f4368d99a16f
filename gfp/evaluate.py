"""Evaluation in the real environments: OGBench singletask tasks (success rate) or Gymnasium ids
(return, normalised score where D4RL reference returns exist).

A pool of `num_envs` environments is stepped in lockstep with ONE batched policy call per step;
when an episode ends its environment starts the next one, until `episodes` have finished.

Action chunks (Q-chunking, Li, Zhou & Levine 2025, Sec. 4): a policy that outputs k actions at
once (chunk_len k > 1: (batch, k * A), step i at [:, i*A:(i+1)*A]) executes each chunk open loop.
Every environment slot keeps a queue of its chunk's actions not yet taken; the policy is called
(one batched call, one noise key) only at steps where some running slot's queue is empty, and
only those slots take the new chunk; each step pops one action per slot; an episode's start
clears its slot's queue. With k = 1 every queue is empty at every step: one call per step, as
without chunking, with the same keys and actions.

Speed (BENCHMARKS.md, "Evaluation"): simulation, not the policy, dominates, and building an
OGBench environment costs about a second. So the environments are stepped by worker processes
(one per core, each owning a share of the pool) while the policy runs here, and the pool is kept
for the next call (`gfp train` evaluates every policy of every seed many times). Results do not
depend on `workers` or on reuse: every episode is reset with its own seed. A worker loads this
file on its own, not the `gfp` package (which imports JAX), so it starts in a fraction of a second;
hence JAX is imported inside the functions that need it and nothing from `gfp` at the top but
gfp.io (standard library and NumPy only).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from gfp.io import die_with_parent

PolicyFn = Callable[[np.ndarray, Any], np.ndarray]  # (obs batch, JAX PRNG key) -> actions
# What stepping one environment returns to the loop: obs, reward, terminated, truncated, success.
StepResult = tuple[np.ndarray, float, bool, bool, float]
# The directory holding this gfp package: a worker imports gfp.io from the same copy.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def env_spec(env_name: str, success_timing: str | None = None) -> str:
    """The string that names an evaluation environment and its options, as it travels to the
    worker processes and keys the pools: 'NAME' or 'NAME|success_timing=post'."""
    return f"{env_name}|success_timing={success_timing}" if success_timing else env_name


def make_env(spec: str, render: bool = False) -> gymnasium.Env:
    """An evaluation environment from an `env_spec`: an OGBench task's registered env (the task
    registry says which); a local Minari dataset's own evaluation environment (a
    `gfp.tasks.minari_env` name: `recover_environment(eval_env=True)`, with the spec's kwargs and
    episode limit); a D4RL task's old-gym environment through shimmy's `GymV21Environment-v0`
    (`make_d4rl_env`); anything else by its Gymnasium id. `success_timing` (OGBench only): 'post'
    decides success and termination after the action, as OGBench < 1.2 did for the paper's
    numbers; 'pre' before it, OGBench 1.2's default."""
    # gfp.tasks and gfp.render import only the standard library, so a worker loading this file
    # stays light.
    from gfp.render import quiet_library_warnings
    from gfp.tasks import parse_minari_env, parse_task

    quiet_library_warnings()  # before OGBench imports glfw and builds its Box spaces

    env_name, bar, option = spec.rpartition("|")
    if not bar or not option.startswith("success_timing="):
        env_name, option = spec, ""
    kwargs: dict[str, Any] = {"render_mode": "rgb_array"} if render else {}
    minari_dataset = parse_minari_env(env_name)
    if minari_dataset is not None:
        return recover_minari_env(*minari_dataset, **kwargs)
    task = parse_task(env_name)
    if task.source == "ogbench":
        import ogbench  # noqa: F401  (registers the OGBench environments)

        if option:
            key, _, value = option.partition("=")
            kwargs[key] = value
        return gymnasium.make(task.env_id, **kwargs)
    if task.benchmark == "d4rl":
        return make_d4rl_env(env_name, **kwargs)
    return gymnasium.make(env_name, **kwargs)


def recover_minari_env(dataset_id: str, data_path: Path, **kwargs: Any) -> gymnasium.Env:
    """The evaluation environment a local Minari dataset records, built by Minari
    (`MinariDataset.recover_environment(eval_env=True)`, as the reference code's
    envs/env_utils.py does). Its notes (a requirement's version; gymnasium-robotics' notice on
    stderr when it is first imported) are not printed."""
    import io

    import minari

    from gfp.errors import ConfigError

    if not (data_path / "metadata.json").is_file():
        raise ConfigError(
            f"the evaluation environment of Minari dataset {dataset_id} is recovered from the "
            f"dataset, and {data_path} holds none (moved or deleted?)"
        )
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return minari.MinariDataset(data_path).recover_environment(eval_env=True, **kwargs)
        except ModuleNotFoundError as e:
            hint = " (pip install gymnasium-robotics)" if "robotics" in str(e.name) else ""
            raise ConfigError(
                f"Minari dataset {dataset_id}: its evaluation environment needs the package "
                f"{e.name!r}, not installed{hint}"
            ) from e


D4RL_INSTALL = (
    "pip install 'gfp[d4rl]' (d4rl, old gym < 0.24, shimmy; d4rl's mujoco-py also needs the "
    "MuJoCo 2.1 binaries in ~/.mujoco/mujoco210), or train without evaluation: --no-eval"
)


def make_d4rl_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """A D4RL task's environment as the reference code builds it (envs/d4rl_utils.py): the `d4rl`
    package registers its old-gym environments (Adroit from d4rl.hand_manipulation_suite), and
    shimmy's compatibility wrapper `GymV21Environment-v0` presents one as a Gymnasium env. A
    ConfigError says in one line what to install when that is not possible here."""
    import importlib
    import io

    from gfp.errors import ConfigError

    # shimmy registers GymV21Environment-v0 with gymnasium when imported (gymnasium 1.x loads no
    # plugins by itself: a placeholder entry raises until then)
    modules = ["gym", "shimmy", "d4rl"]
    if env_id.split("-")[0] in ("pen", "door", "hammer", "relocate"):
        modules.append("d4rl.hand_manipulation_suite")
    for module in modules:
        # old gym and d4rl print notices on stderr when imported: keep a CLI's error one line
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001  (mujoco-py raises a bare Exception)
                lines = [line for line in str(e).splitlines() if line.strip()]
                reason = " ".join(lines[0].split()) if lines else type(e).__name__
                raise ConfigError(
                    f"D4RL environment {env_id} cannot be built: {module} does not import "
                    f"({reason}); {D4RL_INSTALL}"
                ) from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gymnasium.make("GymV21Environment-v0", env_id=env_id, **kwargs)
        except ImportError as e:  # gymnasium's own message when shimmy is missing
            raise ConfigError(
                f"D4RL environment {env_id} cannot be built: shimmy's GymV21Environment-v0 is "
                f"not available ({' '.join(str(e).split())}); {D4RL_INSTALL}"
            ) from e


class _Envs:
    """Environments by slot number, built on first use and kept (the pool's in-process form and
    the state of one worker process)."""

    def __init__(self, env_name: str):
        self.env_name = env_name
        self.envs: dict[int, gymnasium.Env] = {}

    def reset(self, jobs: Sequence[tuple[int, int]]) -> list[tuple[int, np.ndarray]]:
        out = []
        for slot, seed in jobs:
            if slot not in self.envs:
                self.envs[slot] = make_env(self.env_name)
            ob, _ = self.envs[slot].reset(seed=seed)
            out.append((slot, ob))
        return out

    def action_size(self, jobs: Sequence[tuple[int, Any]]) -> list[tuple[int, int | None]]:
        """The size of one action of each slot's environment (None: not a Box)."""
        out = []
        for slot, _ in jobs:
            if slot not in self.envs:
                self.envs[slot] = make_env(self.env_name)
            shape = getattr(self.envs[slot].action_space, "shape", None)
            out.append((slot, int(np.prod(shape)) if shape else None))
        return out

    def step(self, jobs: Sequence[tuple[int, np.ndarray]]) -> list[tuple[int, StepResult]]:
        out = []
        for slot, action in jobs:
            ob, reward, terminated, truncated, info = self.envs[slot].step(action)
            success = float(info.get("success", np.nan))
            out.append((slot, (ob, reward, terminated, truncated, success)))
        return out

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def _worker_main(recv_fd: int, send_fd: int, env_name: str, parent_pid: int) -> None:
    """A worker process (started by EnvPool): owns some slots' environments and serves the
    pool's reset/step requests until it is told to close or the pool's pipe closes."""
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the parent handles it (checkpoint, then close the
    # pool), so a worker must not die mid-evaluation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    inbox, outbox = Connection(recv_fd, writable=False), Connection(send_fd, readable=False)
    envs = _Envs(env_name)
    while True:
        try:
            cmd, jobs = inbox.recv()
        except EOFError:
            cmd = "close"
        if cmd == "close":
            envs.close()
            return
        try:
            outbox.send(("ok", getattr(envs, cmd)(jobs)))
        except Exception:
            outbox.send(("error", traceback.format_exc()))


class EnvPool:
    """Environment slots 0, 1, ... of one env_name, stepped in this process (workers = 0) or by
    `workers` processes (slot i lives in process i % workers; they step in parallel).

    Workers are fresh interpreters (subprocess, not multiprocessing), so they never re-run the
    caller's main script and need no `if __name__ == "__main__"` guard; they talk over pipes.
    """

    def __init__(self, env_name: str, workers: int = 0):
        from gfp.render import quiet_fork_notice

        self.env_name, self.workers = env_name, workers
        self.local = _Envs(env_name) if workers == 0 else None
        self.procs: list[subprocess.Popen] = []
        self.inboxes: list[Any] = []  # where each worker's replies arrive
        self.outboxes: list[Any] = []  # where requests to each worker go
        env = dict(os.environ)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(k, "1")  # one simulation per core: no BLAS threads on top
        for _ in range(workers):
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            code = (  # this file alone, as a module of its own (see the module docstring)
                f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "  # for gfp.io, as here
                "import importlib.util as u; "
                f"s = u.spec_from_file_location('gfp_evaluate_worker', {__file__!r}); "
                "m = u.module_from_spec(s); s.loader.exec_module(m); "
                f"m._worker_main({to_r}, {from_w}, {env_name!r}, {os.getpid()})"
            )
            cmd = [sys.executable, "-P", "-c", code]  # -P: nothing from the cwd on sys.path
            with quiet_fork_notice():  # pass_fds means fork + exec: a fresh interpreter
                proc = subprocess.Popen(cmd, pass_fds=(to_r, from_w), env=env)
            os.close(to_r)
            os.close(from_w)
            self.procs.append(proc)
            self.outboxes.append(Connection(to_w, readable=False))
            self.inboxes.append(Connection(from_r, writable=False))

    def _call(self, cmd: str, jobs: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
        if self.local is not None:
            return getattr(self.local, cmd)(jobs)
        shares: dict[int, list] = {}
        for job in jobs:
            shares.setdefault(job[0] % self.workers, []).append(job)
        for w, share in shares.items():  # send everything first: the workers run in parallel
            self.outboxes[w].send((cmd, share))
        out, errors = [], []
        for w in shares:  # read every reply, even after an error, so none is left in a pipe
            try:
                status, result = self.inboxes[w].recv()
            except EOFError:
                status, result = "error", f"worker {w} exited (code {self.procs[w].poll()})"
            if status == "ok":
                out.extend(result)
            else:
                errors.append(result)
        if errors:
            raise RuntimeError(f"evaluation worker for {self.env_name} failed:\n{errors[0]}")
        return sorted(out, key=lambda r: r[0])

    def reset(self, jobs: Sequence[tuple[int, int]]) -> list[tuple[int, np.ndarray]]:
        """Reset slot i with seed s for every (i, s); returns [(i, first observation)] by slot."""
        return self._call("reset", jobs)

    def step(self, jobs: Sequence[tuple[int, np.ndarray]]) -> list[tuple[int, StepResult]]:
        """Step slot i with action a for every (i, a); returns [(i, StepResult)] by slot."""
        return self._call("step", jobs)

    def action_size(self) -> int | None:
        """The size A of one action of this pool's environment (slot 0's; None: not a Box)."""
        if not hasattr(self, "_action_size"):
            self._action_size = self._call("action_size", [(0, None)])[0][1]
        return self._action_size

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        for box in self.outboxes:
            with contextlib.suppress(OSError, ValueError):
                box.send(("close", []))
                box.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for box in self.inboxes:
            box.close()
        self.procs, self.inboxes, self.outboxes = [], [], []


_POOLS: dict[tuple[str, int], EnvPool] = {}


def default_workers(num_envs: int) -> int:
    """Worker processes for a pool of `num_envs`: one per core, at most one per environment; 0
    (step in this process) where that would be a single worker."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = min(cores or 1, num_envs)
    return n if n >= 2 else 0


def env_pool(env_name: str, workers: int) -> EnvPool:
    """The kept pool of `env_name` with `workers` processes (created on first use)."""
    key = (env_name, workers)
    if key not in _POOLS:
        _POOLS[key] = EnvPool(env_name, workers)
    return _POOLS[key]


def drop_env_pool(pool: EnvPool) -> None:
    """Close `pool` and forget it (an error or an interruption left it in an unknown state)."""
    for key, kept in list(_POOLS.items()):
        if kept is pool:
            del _POOLS[key]
    pool.close()


def close_env_pools() -> None:
    """Close every kept environment pool and its worker processes (also done at exit)."""
    while _POOLS:
        _POOLS.popitem()[1].close()


atexit.register(close_env_pools)


def _key_stream(rng: Any, block: int = 64) -> Iterator[Any]:
    """The keys of `rng, key = jax.random.split(rng)` repeated, computed `block` at a time in one
    jitted call (the same keys, without two dispatches per policy step)."""
    while True:
        rng, keys = _split_chain(rng, block)
        yield from keys


def _split_chain(rng: Any, n: int) -> tuple[Any, Any]:
    global _SPLIT_CHAIN
    if _SPLIT_CHAIN is None:
        import jax

        def chain(rng, n):
            return jax.lax.scan(lambda r, _: tuple(jax.random.split(r)), rng, None, length=n)

        _SPLIT_CHAIN = jax.jit(chain, static_argnums=1)
    rng, keys = _SPLIT_CHAIN(rng, n)
    return rng, np.asarray(keys)


_SPLIT_CHAIN: Callable | None = None


class FrameStack:
    """The last `k` observations of each environment slot, stacked along the last axis (oldest
    first), as in training (gfp.engine.frames): after a reset the stack holds its first observation
    `k` times (the reference code's FrameStackWrapper)."""

    def __init__(self, k: int = 1):
        self.k = k
        self.frames: dict[int, collections.deque] = {}

    def reset(self, slot: int, ob: np.ndarray) -> np.ndarray:
        self.frames[slot] = collections.deque([ob] * self.k, maxlen=self.k)
        return self.get(slot)

    def push(self, slot: int, ob: np.ndarray) -> np.ndarray:
        self.frames[slot].append(ob)
        return self.get(slot)

    def get(self, slot: int) -> np.ndarray:
        frames = self.frames[slot]
        return frames[0] if self.k == 1 else np.concatenate(frames, axis=-1)


def as_chunks(
    actions: Any, chunk_len: int | None, env_action_dim: Callable[[], int | None]
) -> np.ndarray:
    """A policy's output as chunks (batch, k, A): (batch, k, A) as it is, (batch, k * A) split
    into k steps of A (step i = [:, i*A:(i+1)*A], the chunked agents' layout). `chunk_len` None:
    k = (output size) / A, with A = `env_action_dim()` (the environment's action size; k = 1
    when it is not known)."""
    actions = np.asarray(actions)
    if actions.ndim == 3:
        return actions
    n, size = actions.shape
    if chunk_len is None:
        a = env_action_dim()
        if a is None or size == a:
            chunk_len = 1
        elif size % a:
            raise ValueError(
                f"the policy's actions have {size} dimensions, the environment's {a}: not a "
                "chunk of whole actions"
            )
        else:
            chunk_len = size // a
    if size % chunk_len:
        raise ValueError(f"the policy's {size} action dimensions are not {chunk_len} steps")
    return actions.reshape(n, chunk_len, size // chunk_len)


def policy_input(batch: np.ndarray) -> np.ndarray:
    """A batch of observations as the policy takes it: images stay uint8 (the encoders scale them
    on the device), anything else becomes float32."""
    batch = np.asarray(batch)
    return batch if batch.dtype == np.uint8 else batch.astype(np.float32)


def evaluation_seed(run_seed: int, step: int) -> int:
    """The seed of a run's evaluation at `step` (`evaluate`'s `seed`: episode i resets with
    seed + i, the policy's noise keys start from it). Derived from (run seed, step), so every
    evaluation of every run seed starts from its own initial states and noise, reproducibly; the
    reference code draws fresh random seeds at each evaluation (utils/evaluation.py)."""
    return int(np.random.SeedSequence([run_seed, step, 0xE7A1]).generate_state(1)[0])


def evaluate(
    policy: PolicyFn,
    env_name: str,
    *,
    episodes: int = 50,
    num_envs: int = 10,
    seed: int = 0,
    video_path: str | Path | None = None,
    video_episodes: int = 1,
    workers: int | None = None,
    success_timing: str | None = None,
    frame_stack: int = 1,
    chunk_len: int | None = None,
) -> dict[str, float]:
    """Run `episodes` episodes; return mean success, return, length (and normalised score).
    `frame_stack`: the policy sees the last `frame_stack` observations stacked along the last axis
    (pixel tasks, `FrameStack`, updated at every environment step); image observations reach it
    as uint8. `chunk_len`: k, the actions per policy call, executed open loop (the module
    docstring; the agent's `chunk_len`); None: the policy's output size over the environment's
    action size (1 for every policy without action chunking).
    `success_timing`: 'post' or 'pre' for OGBench tasks (`make_env`); None: OGBench's default.

    Episode i is reset with seed `seed + i`, so results do not depend on `num_envs`. `workers`:
    processes stepping the environments (None: `default_workers(num_envs)`; 0: this process);
    the results do not depend on it. The environments are kept for later calls
    (`close_env_pools` frees them). With `video_path`, `video_episodes` more episodes are then
    rendered to that mp4 (`record_video`).
    """
    if video_path is not None or env_name.startswith("visual-"):
        # Before any environment (and so mujoco) is imported here: fail now, not after the episodes.
        # Pixel tasks render their observations, so their workers need it too.
        from gfp.render import configure_gl

        configure_gl()
    import jax

    num_envs = max(1, min(num_envs, episodes))
    spec = env_spec(env_name, success_timing)
    pool = env_pool(spec, default_workers(num_envs) if workers is None else workers)
    keys = _key_stream(jax.random.PRNGKey(seed))
    obs: list[Any] = [None] * num_envs
    running = [-1] * num_envs  # episode index each env is playing, -1 when idle
    ep_return = np.zeros(num_envs)
    ep_length = np.zeros(num_envs, dtype=int)
    results: list[tuple[float, float, int]] = []
    next_episode = 0
    stacks = FrameStack(frame_stack)
    # Per slot: the actions of its current chunk not yet taken (QC's open-loop action queue).
    queues: list[collections.deque] = [collections.deque() for _ in range(num_envs)]

    def start(slots: Sequence[int]) -> None:
        """Start the next episodes in `slots`, in slot order (idle once all have started)."""
        nonlocal next_episode
        jobs = []
        for i in slots:
            queues[i].clear()
            if next_episode < episodes:
                jobs.append((i, seed + next_episode))
                running[i], ep_return[i], ep_length[i] = next_episode, 0.0, 0
                next_episode += 1
            else:
                running[i] = -1
        for i, ob in pool.reset(jobs):
            obs[i] = stacks.reset(i, ob)

    try:
        start(range(num_envs))
        idle = np.zeros_like(obs[0])
        while any(r >= 0 for r in running):
            active = [i for i in range(num_envs) if running[i] >= 0]
            if any(not queues[i] for i in active):
                # Pad idle slots so the jitted policy always sees the same batch shape (no
                # recompiles).
                batch = np.stack([o if r >= 0 else idle for o, r in zip(obs, running, strict=True)])
                out = policy(policy_input(batch), next(keys))
                chunks = as_chunks(out, chunk_len, pool.action_size)
                for i in active:
                    if not queues[i]:  # the others go on executing their chunk
                        queues[i].extend(chunks[i])
            ended = []
            for i, (ob, reward, terminated, truncated, success) in pool.step(
                [(i, queues[i].popleft()) for i in active]
            ):
                obs[i] = stacks.push(i, ob)
                ep_return[i] += reward
                ep_length[i] += 1
                if terminated or truncated:
                    results.append((success, ep_return[i], ep_length[i]))
                    ended.append(i)
            start(ended)
    except BaseException:
        drop_env_pool(pool)
        raise
    if video_path is not None:
        record_video(policy, spec, video_path, video_episodes, seed, frame_stack, chunk_len)
    success, returns, lengths = (np.array(x, dtype=float) for x in zip(*results, strict=True))
    out = {"success": float(np.mean(success)), "return": float(np.mean(returns))}
    out["length"] = float(np.mean(lengths))
    from gfp.data.scores import normalized_score

    score = normalized_score(env_name, out["return"])
    if score is not None:
        out["normalized_score"] = score
    return out


def record_video(
    policy: PolicyFn,
    env_name: str,
    path: str | Path,
    episodes: int = 1,
    seed: int = 0,
    frame_stack: int = 1,
    chunk_len: int | None = None,
) -> int:
    """Render `episodes` episodes of `policy` (seeds from `seed + 10_000`, apart from the scored
    ones) to an H.264 mp4 at `path`, 30 frames per second; returns the number of frames. Chunks
    (`chunk_len`, as in `evaluate`) are executed open loop, a frame per environment step.

    Works without a display: `gfp.render.configure_gl()` picks EGL or OSMesa (it must run before
    mujoco is first imported; `evaluate` and the CLI call it early). Frames are streamed to the
    encoder, and the file appears atomically when complete.
    """
    import tempfile

    import imageio.v2 as imageio

    from gfp.io import atomic_write_bytes
    from gfp.render import configure_gl, quiet_fork_notice

    configure_gl()
    import jax

    path = Path(path)
    env = make_env(env_name, render=True)
    keys = _key_stream(jax.random.PRNGKey(seed + 10_000))
    stacks = FrameStack(frame_stack)
    queue: collections.deque = collections.deque()  # the chunk's actions not yet taken
    shape = getattr(env.action_space, "shape", None)
    action_size = int(np.prod(shape)) if shape else None
    frames = 0
    with tempfile.TemporaryDirectory(prefix="gfp-video-") as tmp:
        # macro_block_size=2: H.264 (yuv420p) needs even sides only; the default 16 would rescale
        # OGBench's 200x200 frames to 208x208.
        writer = imageio.get_writer(f"{tmp}/{path.name}.mp4", fps=30, macro_block_size=2)
        try:
            for ep in range(episodes):
                ob, _ = env.reset(seed=seed + 10_000 + ep)
                ob = stacks.reset(0, ob)
                queue.clear()
                done = False
                while not done:
                    if frames == 0:  # the first frame starts the ffmpeg encoder (fork + exec)
                        with quiet_fork_notice():
                            writer.append_data(env.render())
                    else:
                        writer.append_data(env.render())
                    frames += 1
                    if not queue:
                        out = policy(policy_input(ob[None]), next(keys))
                        queue.extend(as_chunks(out, chunk_len, lambda: action_size)[0])
                    action = queue.popleft()
                    ob, _, terminated, truncated, _ = env.step(action)
                    ob = stacks.push(0, ob)
                    done = terminated or truncated
        finally:
            writer.close()
            env.close()
        atomic_write_bytes(path, Path(f"{tmp}/{path.name}.mp4").read_bytes())
    return frames
