"""What one run of a sweep asks Ray for: CPUs, GPUs, memory and retries, in `remote_options`.

Ray packs tasks onto nodes by their declared resources, so each run declares the memory it needs
(`estimate_memory`: its dataset, networks and replay buffer over its seeds, and the process
itself); a node then never receives more runs than fit in its memory. Ray's memory monitor kills a
worker that still runs the node out of memory, and such a kill (like SIGKILL or a lost node) is a
system failure that Ray retries up to `max_retries` times; the retry resumes from the run's
checkpoint. Exceptions are not retried (`retry_exceptions=False`): the worker turns every error
a retry cannot fix into the run's failed.json and returns normally (gfp/sweep/worker.py).

This module imports neither JAX nor Ray.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from gfp.job import TrainJob

GIB = 1 << 30
# The Python, JAX and XLA runtime of a worker process, its compiled programs and its evaluation
# pool (environment worker processes), before any data: a tiny CPU run's worker measures about
# 0.8 GiB resident with its environments; rounded up.
PROCESS_BYTES = 1 * GIB
MARGIN = 1.25  # XLA's temporaries, the minibatches and the host copies made while loading
F32 = 4
TRAINED_COPIES = 4  # a trained parameter: itself, its gradient, Adam's two moments
# Parameters of one network's observation encoder (gfp/agents/encoders.py), rounded up: the
# paper's IMPALA CNN ends in a 512-unit dense layer over its feature map.
ENCODER_PARAMS = {"none": 0, "impala_small": 2_000_000, "impala_cpu": 150_000}


@dataclasses.dataclass(frozen=True)
class DatasetSize:
    """A dataset's training transitions and the bytes of all its arrays (train and validation),
    as gfp/sweep/datasets.py records them when it checks the dataset."""

    rows: int
    obs_dim: int
    act_dim: int
    nbytes: int


def mlp_params(inputs: int, hidden: tuple[int, ...], outputs: int, layer_norm: bool) -> int:
    """Weights and biases of an MLP (plus LayerNorm's scale and offset after each hidden layer)."""
    sizes = [inputs, *hidden, outputs]
    dense = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    return dense + (2 * sum(hidden) if layer_norm else 0)


def estimate_memory(job: TrainJob, data: DatasetSize, *, gpu: bool = False) -> int:
    """Bytes of host memory one run (a unit of the sweep: `job`, its seeds vmapped) needs: Ray's
    `memory` resource for its task. An upper bound over the agents, from sizes alone:

    * the process: PROCESS_BYTES;
    * the dataset: its arrays on the host as loaded, and once more on the device where the
      device is the CPU (`gpu=False`): the minibatch sampler keeps every array on the device
      (docs/architecture.md, "One minibatch through an update"); shared by the seeds;
    * per seed, the networks as GFP has them (the largest set; paper section 3): two policy
      networks (VaBC's flow and the one-step actor, on observation + action + flow time) with
      `actor_hidden_dims`, a two-member critic ensemble (observation + action) with
      `value_hidden_dims` and LayerNorm as configured, and its Polyak target; each with its
      encoder's parameters. Trained parameters count TRAINED_COPIES times (gradient and Adam's
      moments), the target once; float32;
    * per seed, an online run's replay buffer: `buffer_size` rows with balanced sampling, else
      max(buffer_size, dataset rows + 1) (gfp/engine/replay.py), each the size of a dataset row;

    the data, networks and buffer times MARGIN. On a GPU most of it lives in device memory
    instead, which Ray does not schedule by; the bound then stays on the safe side."""
    cfg = job.config
    obs, act = data.obs_dim, data.act_dim
    enc = ENCODER_PARAMS.get(getattr(cfg, "encoder", "none"), 0)
    hidden_p, hidden_v = tuple(cfg.actor_hidden_dims), tuple(cfg.value_hidden_dims)
    policy = mlp_params(obs + act + 1, hidden_p, act, layer_norm=False) + enc
    critic = 2 * (mlp_params(obs + act, hidden_v, 1, layer_norm=bool(cfg.layer_norm)) + enc)
    nets = F32 * (TRAINED_COPIES * (2 * policy + critic) + critic)
    replay = 0
    if job.online_steps:
        capacity = job.buffer_size if job.balanced_sampling else max(job.buffer_size, data.rows + 1)
        replay = capacity * math.ceil(data.nbytes / max(data.rows, 1))
    dataset = data.nbytes * (1 if gpu else 2)
    seeds = len(job.seeds)
    return int(PROCESS_BYTES + MARGIN * (dataset + seeds * (nets + replay)))


def worker_env(opts: Any, sweep_dir: Path) -> dict[str, str]:
    """Environment of a run's worker process, set before it imports JAX: thread counts of the
    numeric libraries at its CPU share, XLA's Eigen single-threaded for runs of one CPU, CPU-only
    JAX for runs without a GPU (and a memory share for a fraction of one), and a persistent XLA
    compilation cache in the sweep folder (a retried or resumed run compiles nothing again)."""
    n = str(max(1, int(opts.cpus_per_run)))
    env = {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    flags = os.environ.get("XLA_FLAGS", "")
    if opts.cpus_per_run <= 1 and "xla_cpu_multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false"
    if flags.strip():
        env["XLA_FLAGS"] = flags.strip()
    if opts.gpus_per_run == 0:
        env["JAX_PLATFORMS"] = "cpu"
    elif opts.gpus_per_run < 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * opts.gpus_per_run:.3f}"
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        env["JAX_COMPILATION_CACHE_DIR"] = str((sweep_dir / ".jax_cache").resolve())
    return env


def remote_options(opts: Any, sweep_dir: Path, memory: int) -> dict[str, Any]:
    """The Ray remote options of one run's task (module docstring): its CPUs, GPUs and `memory`
    bytes, `max_retries` from --max-retries for worker deaths (out-of-memory kills, SIGKILL, a
    lost node), no retries of exceptions, and its worker environment (`worker_env`)."""
    return {
        "num_cpus": opts.cpus_per_run,
        "num_gpus": opts.gpus_per_run,
        "memory": int(memory),
        "max_retries": opts.max_retries,
        "retry_exceptions": False,
        "runtime_env": {"env_vars": worker_env(opts, sweep_dir)},
    }
