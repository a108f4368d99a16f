"""Pixel-task benchmarks (BENCHMARKS.md, "Pixel datasets" and "Pixel minibatches").

    .venv/bin/python benchmarks/bench_pixels.py render [--env cube-single] [--steps 20]
    .venv/bin/python benchmarks/bench_pixels.py generate [--name visual-cube-single-play-v0]
        [--episodes 2] [--length 51] [--workers 2]
    .venv/bin/python benchmarks/bench_pixels.py sampler [--frames 100000] [--batch 256]
    .venv/bin/python benchmarks/bench_pixels.py load [--frames 100000]
    .venv/bin/python benchmarks/bench_pixels.py train [--encoder impala_small] [--seeds 1]

render: where a visual OGBench step's time goes. Frames per second of OGBench's own visual env
    (`env.step`, which renders its observation), of its state twin, and of gfp.datagen.visual's
    FrameRenderer on the state env's live data (checked equal to the visual env's frames), then
    a cProfile of visual steps split into the OpenGL calls and the rest.
generate: rows (frames) per second of `gfp data generate` for a pixel dataset, end to end
    (rollouts, rendering, shards, merge, compressed files).
sampler: a host-memory frame dataset of --frames 64x64x3 frames in episodes of 1001: the host
    gather's minibatches per second (B x (K + 1) frames, K = 3), the prefetching pipeline's
    (gather + transfer, as HostChunk runs it), and the peak RSS of the process.
load: peak RSS of loading a --frames-frame visual dataset (synthetic frames and states in
    OGBench's file layout, visual-cube-single-play-v0) with gfp.load_dataset, against OGBench's
    own make_env_and_datasets (the regular layout, which gfp used before the frame form), each in
    a fresh interpreter; both are checked to hold the same transitions.
train: GFP updates per second on pixels, by default at the paper's size (impala_small, 512x4
    networks, batch 256, frame_stack 3, p_aug 0.5, y_VaBC as on visual-cube) with --seeds vmapped
    seeds; the cpu preset is --encoder impala_cpu --dims 64x64 --batch 32.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The current resident set size (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_render(env: str, steps: int) -> dict:
    from gfp.datagen.visual import FrameRenderer, _make

    visual, state = _make(f"visual-{env}-v0"), _make(f"{env}-v0")
    renderer = FrameRenderer(state, f"visual-{env}-v0")
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, 5))
    out: dict = {"env": env, "steps": steps}

    ob, _ = visual.reset(seed=1)
    state.reset(seed=1)
    equal = [np.array_equal(ob, renderer.render())]
    t = time.perf_counter()
    for a in actions:
        visual.step(a)
    out["visual_env_steps_per_s"] = steps / (time.perf_counter() - t)

    t = time.perf_counter()
    for a in actions:
        state.step(a)
    out["state_env_steps_per_s"] = steps / (time.perf_counter() - t)

    visual.reset(seed=1)
    state.reset(seed=1)
    t = time.perf_counter()
    for a in actions:
        ob, *_ = visual.step(a)
        state.step(a)
        equal.append(np.array_equal(ob, renderer.render()))
    both = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        renderer.render()
    out["frame_renderer_frames_per_s"] = steps / (time.perf_counter() - t)
    out["frames_equal_visual_env"] = all(equal)
    out["lockstep_seconds"] = both

    prof = cProfile.Profile()
    prof.enable()
    for a in actions:
        visual.step(a)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # tottime
    parts = ("mjr_render", "mjr_readPixels", "mjv_updateScene", "mj_step")
    gl = {p: sum(v[2] for (_, _, name), v in stats.items() if p in name) for p in parts}
    out["profile_visual_step_ms"] = 1000 * total / steps
    out["profile_share"] = {k: round(v / total, 3) for k, v in sorted(gl.items()) if v > 0}
    out["profile_share"]["everything else (Python, IK, observation)"] = round(
        1 - sum(gl.values()) / total, 3
    )
    out["gl_renderer"] = gl_renderer_name()
    out["renders_per_1001_row_episode_in_ogbench_visual_env"] = count_visual_env_renders(env)
    out["attribution_ms_per_frame"] = attribute_render_cost(renderer, steps)
    return out


def count_visual_env_renders(env: str, length: int = 1001) -> int:
    """Frames OGBench's visual env would render while collecting one episode as its own data
    script does (the first observation, every step, every `set_new_target`), counted on a state
    rollout of the same oracle (the rollouts are identical); gfp renders `length`."""
    from gfp.datagen.collectors import ManipCollector, Spec

    family = env.split("-")[0]
    collector = ManipCollector(Spec(f"{env}-play-v0", f"{env}-v0", family, "play"))
    real = collector.env
    counts = {"targets": 0}
    set_new_target = real.set_new_target

    def counting(*args, **kwargs):
        counts["targets"] += 1
        return set_new_target(*args, **kwargs)

    real.set_new_target = counting
    np.random.seed(0)
    collector.episode(3, length)
    return 1 + length + counts["targets"]


def attribute_render_cost(renderer, frames: int) -> dict:
    """Diagnosis only (these settings change the frames, so generation keeps OGBench's): the
    milliseconds per frame with OGBench's settings, and with each expensive part of MuJoCo's
    renderer reduced, and whether the frame still equals the original."""
    import mujoco

    model, data = renderer.model, renderer.state_env.data
    quality = model.vis.quality
    saved = (int(quality.shadowsize), int(quality.offsamples))
    reference = renderer.render()

    def timed(label: str, shadows: bool = True) -> tuple[str, dict]:
        r = mujoco.Renderer(model, height=renderer.height, width=renderer.width)
        try:
            r.update_scene(data, camera="front_pixels", scene_option=renderer.scene_option)
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
            r.render()
            t = time.perf_counter()
            for _ in range(frames):
                r.update_scene(data, camera="front_pixels", scene_option=renderer.scene_option)
                r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
                frame = r.render()
            ms = 1000 * (time.perf_counter() - t) / frames
        finally:
            r.close()
        return label, {"ms": round(ms, 1), "same_frame": bool(np.array_equal(frame, reference))}

    out = dict([timed(f"ogbench (shadow map {saved[0]}, {saved[1]}x MSAA)")])
    quality.shadowsize = 1024
    out.update([timed("shadow map 1024")])
    quality.shadowsize = saved[0]
    quality.offsamples = 0
    out.update([timed("no multisampling")])
    quality.offsamples = saved[1]
    out.update([timed("no shadows", shadows=False)])
    return out


def gl_renderer_name() -> str:
    """The OpenGL renderer string (llvmpipe = Mesa's software rasterizer)."""
    try:
        import mujoco
        from OpenGL import GL

        ctx = mujoco.GLContext(16, 16)
        ctx.make_current()
        try:
            return GL.glGetString(GL.GL_RENDERER).decode()
        except Exception:  # noqa: BLE001 - PyOpenGL's error check may fail after the call
            return "unknown"
        finally:
            ctx.free()
    except Exception as e:  # noqa: BLE001
        return f"unknown ({type(e).__name__})"


def bench_generate(name: str, episodes: int, length: int, workers: int) -> dict:
    from gfp.datagen.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate(name, episodes, tmp, workers=workers, episode_length=length, progress=False)
        seconds = time.perf_counter() - t
        rows = (episodes + max(1, episodes // 10)) * length
        size = sum(p.stat().st_size for p in Path(tmp).glob("*.npz"))
    return {
        "name": name,
        "episodes": episodes,
        "episode_length": length,
        "workers": workers,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "file_mib": size / 2**20,
    }


def synthetic_pixels(frames: int, length: int = 1001, size: int = 64) -> dict[str, np.ndarray]:
    """Pixel transitions as OGBench's loader returns them: episodes of `length` rows give
    length - 1 transitions each; observations and next_observations (N, 64, 64, 3) uint8."""
    rng = np.random.default_rng(0)
    episodes = max(1, frames // length)
    raw = rng.integers(0, 256, (episodes * length, size, size, 3), dtype=np.uint8)
    ends = np.zeros(len(raw), bool)
    ends[length - 1 :: length] = True
    keep = ~ends
    nxt = np.concatenate([[False], keep[:-1]])
    n = int(keep.sum())
    terminals = np.zeros(n, np.float32)
    terminals[length - 2 :: length - 1] = 1.0
    observations, next_observations = raw[keep], raw[nxt]
    del raw  # as OGBench's loader: the file's rows are dropped once split
    return {
        "observations": observations,
        "next_observations": next_observations,
        "actions": rng.uniform(-1, 1, (n, 5)).astype(np.float32),
        "rewards": np.zeros(n, np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": terminals,
    }


def bench_sampler(frames: int, batch: int, k: int, seconds: float) -> dict:
    from types import SimpleNamespace

    import jax

    from gfp.engine import placement as P
    from gfp.engine.chunk import prefetch

    data = synthetic_pixels(frames)
    rss_data = rss_mib()
    keys = ("observations", "actions", "rewards", "masks", "next_observations")
    t = time.perf_counter()
    host = P.frame_sampler(data, keys, placement="host")
    build = time.perf_counter() - t
    rss_placed = rss_mib()
    rng = np.random.default_rng(1)
    n = host.size

    count, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        host.gather(rng.integers(0, n, (batch,)), k)
        count += 1
    gather_rate = count / (time.perf_counter() - t)

    # The prefetch pipeline as the engine's chunk runs it for a fed sampler: index plan, gather,
    # transfer, in a thread (gfp.engine.chunk.prefetch over HostFrameSampler.feed).
    config = SimpleNamespace(batch_size=batch, frame_stack=k)
    rngs = np.asarray(jax.random.split(jax.random.PRNGKey(0), 1))
    blocks = prefetch(host.feed(rngs, 10**9, config))  # stopped by closing it below
    next(blocks)  # compiled and warm
    count, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        steps, fed = next(blocks)
        jax.block_until_ready(fed)
        count += steps
    pipe_rate = count / (time.perf_counter() - t)
    blocks.close()
    return {
        "frames": int(len(data["observations"])),
        "batch": batch,
        "frame_stack": k,
        "build_seconds": build,
        "host_gather_minibatches_per_s": gather_rate,
        "prefetch_pipeline_minibatches_per_s": pipe_rate,
        "host_frame_data_mib": host.nbytes / 2**20,
        "dataset_obs_and_next_obs_mib": (data["observations"].nbytes * 2) / 2**20,
        "rss_mib_dataset_loaded": rss_data,
        "rss_mib_frames_placed": rss_placed,
        "rss_mib_after_sampling": rss_mib(),
        "peak_rss_mib": peak_rss_mib(),
        "device": str(jax.devices()[0]),
    }


_LOAD_PROBE = """
import json, resource, sys
import numpy as np
task, where, how = "visual-cube-single-play-singletask-task1-v0", sys.argv[1], sys.argv[2]
if how == "gfp":
    import gfp
    from gfp.data.frame_layout import next_frames
    train = gfp.load_dataset(task, where).train
    last_next = next_frames(train, [-1])[0]
else:
    from gfp.render import configure_gl
    configure_gl()
    import ogbench
    _, train, _ = ogbench.make_env_and_datasets(task, dataset_dir=where)
    last_next = train["next_observations"][-1]
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "transitions": len(train["observations"]),
                  "check": int(train["observations"][::997].sum()) + int(last_next.sum())}))
"""


def bench_load(frames: int, length: int = 1001) -> dict:
    import subprocess

    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    env = gymnasium.make("cube-single-v0")
    nq, nv = env.unwrapped.model.nq, env.unwrapped.model.nv
    env.close()
    rng = np.random.default_rng(0)
    out = {"frames": frames, "frame_mib": frames * 64 * 64 * 3 / 2**20}
    with tempfile.TemporaryDirectory() as d:
        for name, m in (
            ("visual-cube-single-play-v0", frames),
            ("visual-cube-single-play-v0-val", length),
        ):
            terminals = np.zeros(m, np.float32)
            terminals[length - 1 :: length] = 1.0
            terminals[-1] = 1.0
            np.savez(
                Path(d) / f"{name}.npz",
                observations=rng.integers(0, 256, (m, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (m, 5)).astype(np.float32),
                terminals=terminals,
                qpos=rng.normal(size=(m, nq)).astype(np.float32),
                qvel=rng.normal(size=(m, nv)).astype(np.float32),
            )
        for how in ("gfp", "ogbench"):
            env_vars = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            proc = subprocess.run([sys.executable, "-c", _LOAD_PROBE, d, how], env=env_vars,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            out[how] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["gfp"]["check"] == out["ogbench"]["check"], "the two loads differ"
    out["peak_rss_ratio_gfp_over_ogbench"] = (
        out["gfp"]["peak_rss_mib"] / out["ogbench"]["peak_rss_mib"]
    )
    return out


def bench_train(encoder: str, seeds: int, steps: int, frames: int, dims: str, batch: int) -> dict:
    import jax

    from gfp.agents import make_agent
    from gfp.agents.base import ObsSpec
    from gfp.agents.configs import GFPConfig
    from gfp.engine.chunk import init_states
    from gfp.engine.driver import train
    from gfp.engine.placement import make_sampler

    data = synthetic_pixels(frames)
    cfg = GFPConfig(
        encoder=encoder,
        frame_stack=3,
        p_aug=0.5,
        actor_hidden_dims=tuple(int(d) for d in dims.split("x")),
        value_hidden_dims=tuple(int(d) for d in dims.split("x")),
        batch_size=batch,
        target_agg="mean",
    )
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec.of(data["observations"]), action_dim=5)
    placed = make_sampler(data, agent.batch_keys)
    states = init_states(agent, list(range(seeds)))
    t = time.perf_counter()
    states = train(agent, placed, states, steps=steps, log_every=steps, progress=False)
    jax.block_until_ready(states)
    first = time.perf_counter() - t
    t = time.perf_counter()
    states = train(agent, placed, states, steps=2 * steps, log_every=steps, progress=False)
    jax.block_until_ready(states)
    rate = steps / (time.perf_counter() - t)
    return {
        "encoder": encoder,
        "seeds": seeds,
        "batch": batch,
        "dims": dims,
        "placement": "host" if not isinstance(placed, dict) else "device",
        "compile_and_first_chunk_s": first,
        "updates_per_s_per_seed": rate,
        "device": str(jax.devices()[0]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("render")
    r.add_argument("--env", default="cube-single")
    r.add_argument("--steps", type=int, default=20)
    g = sub.add_parser("generate")
    g.add_argument("--name", default="visual-cube-single-play-v0")
    g.add_argument("--episodes", type=int, default=2)
    g.add_argument("--length", type=int, default=51)
    g.add_argument("--workers", type=int, default=1)
    s = sub.add_parser("sampler")
    s.add_argument("--frames", type=int, default=100_000)
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--frame-stack", type=int, default=3)
    s.add_argument("--seconds", type=float, default=10.0)
    ld = sub.add_parser("load")
    ld.add_argument("--frames", type=int, default=100_000)
    t = sub.add_parser("train")
    t.add_argument("--encoder", default="impala_small")
    t.add_argument("--seeds", type=int, default=1)
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--frames", type=int, default=20_000)
    t.add_argument("--dims", default="512x512x512x512")
    t.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    if a.what == "render":
        out = bench_render(a.env, a.steps)
    elif a.what == "generate":
        out = bench_generate(a.name, a.episodes, a.length, a.workers)
    elif a.what == "sampler":
        out = bench_sampler(a.frames, a.batch, a.frame_stack, a.seconds)
    elif a.what == "load":
        out = bench_load(a.frames)
    else:
        out = bench_train(a.encoder, a.seeds, a.steps, a.frames, a.dims, a.batch)
    out["command"] = " ".join(sys.argv)
    out["cpus"] = len(os.sched_getaffinity(0))
    out["loadavg"] = os.getloadavg()
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
