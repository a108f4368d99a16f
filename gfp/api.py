"""The Python API's trained policy: `load_run(RUN_DIR)` gives a `Policy` (the agent, its final
parameters and the run's config.json) that acts, evaluates and saves itself as a run directory;
`Policy.from_fit` makes one from `gfp.fit`'s result, `ensure_dataset` generates a task's dataset.

Actions are evaluation's (gfp.evaluate): `agent.act(params, obs, key)` through the same jitted
`agent.policy_fn`, with the noise key `jax.random.PRNGKey(seed)`, so the same observation and seed
always give the same action. Pixel runs trained with frame_stack K > 1 see the last K frames
stacked along channels, oldest first, an episode's first frame repeated (gfp.engine.frames);
`Policy.act` takes single frames and stacks them the same way (`reset()` at each episode start),
as gfp_deploy's `policy.reset()` / `policy.act(frame)` do; `Policy.act_stacked` takes inputs that
are already stacked.

Action chunks (Q-chunking, Li, Zhou & Levine 2025, Sec. 4): an agent trained with
action_chunking outputs k = `chunk_len` actions at once. `act` executes them open loop, as
evaluation does (gfp.evaluate): a queue per policy and batch row holds the chunk's actions not
yet taken, the policy is called only when it is empty, and `reset()` clears it; `act_chunk`
returns the whole chunk (k, A). With k = 1 (every agent without action chunking) `act` calls the
policy at every step, as before.

Runs trained on a LeRobot dataset (gfp.data.lerobot_loader): `Policy.act_raw(obs_dict)` takes the
raw observation dict a robot produces ({feature name: value}), makes the observation as training
did (`robot_record`, applied by gfp.deploy.RawObservation: the state features concatenated in
the recorded order, or the camera frame at the training size), stacks and executes it as `act`,
and returns the action in robot units (`unnormalize`: the inverse of the loader's min/max
normalisation); gfp.deploy's `policy.act_raw` does the same with the exported model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gfp.agents.base import Agent, TrainState
from gfp.data.load import Dataset
from gfp.errors import ConfigError, DataError
from gfp.job import DEFAULT_EPISODES, default_data_dir

PARAMS = "params.msgpack"
SUMMARY = "summary.json"


def ensure_dataset(
    task: str, dataset_dir: str | Path | None = None, episodes: int = DEFAULT_EPISODES
) -> Path:
    """Generate `task`'s OGBench dataset (`episodes` train episodes with OGBench's scripted
    oracles, a tenth as many for validation) into `dataset_dir` unless it is there already;
    returns the directory to pass to `load_dataset`. None: the gfp cache that `gfp train`'s default
    job uses (~/.cache/gfp/data, or GFP_DATA_DIR)."""
    from gfp.run import ensure_default_dataset

    where = default_data_dir() if dataset_dir is None else Path(dataset_dir).expanduser()
    ensure_default_dataset(task, where, episodes)
    return where


@dataclasses.dataclass(eq=False, repr=False)
class Policy:
    """A trained agent: `agent` (gfp.agents), `params` (its final parameters, host arrays),
    `config` (the run's config.json as a dict), `summary` (its summary.json, None if it has
    none) and `path` (the run directory it was loaded from or last saved to)."""

    agent: Agent
    params: Any
    config: dict[str, Any]
    summary: dict[str, Any] | None = None
    path: Path | None = None
    # One jitted policy function per policy name, reused by every call (jax.jit compiles once per
    # input shape); the parameters put on the device once.
    _fns: dict[str, Callable] = dataclasses.field(default_factory=dict, init=False)
    _device_params: Any = dataclasses.field(default=None, init=False)
    _stack: Any = dataclasses.field(default=None, init=False)
    # Per policy name: the open-loop action queue of the chunks `act` executes (gfp.deploy's).
    _queues: dict[str, Any] = dataclasses.field(default_factory=dict, init=False)
    _raw: Any = dataclasses.field(default=None, init=False)  # gfp.deploy.RawObservation

    def __repr__(self) -> str:
        spec = self.agent.obs_spec
        where = f" from {self.path}" if self.path is not None else ""
        out = f"action[{self.env_action_dim}]"
        if self.chunk_len > 1:
            out = f"chunk[{self.chunk_len}, {self.env_action_dim}]"
        return (
            f"Policy({self.agent.name} on {self.config.get('task')}{where}: obs "
            f"{spec.dtype}{list(spec.shape)} -> {out}, policies "
            f"{', '.join(self.agent.policies)})"
        )

    # ---- making one ----------------------------------------------------------------------------
    @classmethod
    def from_fit(
        cls, agent: Agent, states: TrainState, dataset: Dataset, *, seed_index: int = 0
    ) -> Policy:
        """The policy of seed number `seed_index` of `gfp.fit(agent, dataset, ...)`'s stacked
        `states`, with a config.json record as `gfp train` writes one (task, agent, agent_config,
        dataset) so that `save` and `load_run` round-trip it."""
        from gfp.engine.chunk import unstack

        n = int(np.shape(states.step)[0]) if np.ndim(states.step) else 1
        if not 0 <= seed_index < n:
            raise ConfigError(f"seed_index {seed_index} is out of range: the states hold {n} seeds")
        state = unstack(states, seed_index) if np.ndim(states.step) else states
        params = jax.device_get(state.params)
        return cls(agent, params, fit_config(agent, dataset, int(jax.device_get(state.step))))

    # ---- acting --------------------------------------------------------------------------------
    @property
    def frame_stack(self) -> int:
        """K: how many observations (frames, oldest first) make one input of the networks."""
        return int(self.agent.config.frame_stack)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One observation as the environment gives it (for frame_stack K > 1: one frame)."""
        shape = tuple(self.agent.obs_spec.shape)
        return (*shape[:-1], shape[-1] // self.frame_stack)

    @property
    def chunk_len(self) -> int:
        """k: the actions one call of the policy gives (action chunking; 1 otherwise)."""
        return int(self.agent.chunk_len)

    @property
    def env_action_dim(self) -> int:
        """A: the size of one action, as the environment takes it."""
        return int(self.agent.env_action_dim)

    def reset(self, rows: Any = None) -> None:
        """Start an episode: the next `act` fills the frame stack with its frame (pixel runs with
        frame_stack > 1) and plans a new chunk (chunk_len > 1); a no-op otherwise. `rows`
        (indices or a boolean mask of the batch axis): only those environments start one."""
        if rows is None:
            self._stack = None
            self._queues.clear()
            return
        if self._stack is not None:
            self._stack.reset(rows)
        for queue in self._queues.values():
            queue.reset(rows)

    def act(self, obs: Any, policy: str = "actor", seed: int = 0) -> np.ndarray:
        """The action of `policy` ('actor' or 'vabc' for GFP; `agent.policies`) for one
        observation `obs` of shape `obs_shape`, or (N, *obs_shape) for N environments, as a numpy
        array (A,) or (N, A) (A = `env_action_dim`). Deterministic: the noise comes from
        `jax.random.PRNGKey(seed)`, as at evaluation. With frame_stack K > 1, `obs` is the newest
        frame: it is pushed onto the episode's stack (the first after `reset()` fills it) and the
        policy acts on the K frames stacked. With chunk_len k > 1 the action is the next one of
        the chunk being executed open loop: the policy (with `seed`) plans a new chunk only for
        rows that have taken all k of theirs, or after `reset()`. A combined observation (a
        camera and a state vector) is the dict {'pixels': the newest frame, 'state': the state}:
        the frame is stacked, the state taken as it is."""
        return self.act_stacked(self._observe(obs), policy, seed)

    def act_stacked(self, obs: Any, policy: str = "actor", seed: int = 0) -> np.ndarray:
        """`act` for inputs already stacked as the networks take them (`agent.obs_spec.shape`, or
        (N, *that)); the same as `act` when frame_stack is 1."""
        from gfp.deploy import ActionQueue

        batch, single = self._as_batch(obs)
        queue = self._queues.setdefault(policy, ActionQueue(self.chunk_len))
        try:
            action = queue.pop(lambda: self._chunks(batch, policy, seed))
        except ValueError as e:  # another batch size in the middle of a chunk
            raise DataError(f"{e}; call reset() before a new episode") from None
        return action[0] if single else action

    def act_chunk(self, obs: Any, policy: str = "actor", seed: int = 0) -> np.ndarray:
        """The whole chunk of `policy` for `obs` (as `act` takes it: with frame_stack K > 1 the
        newest frame, pushed onto the stack), shape (k, A) or (N, k, A) with k = `chunk_len`
        (k = 1 without action chunking). The action queue of `act` is left alone: in one
        episode, call either `act` or `act_chunk` at each step."""
        return self.act_chunk_stacked(self._observe(obs), policy, seed)

    def _observe(self, obs: Any) -> Any:
        """The network's input after observation `obs` (the frame pushed onto the stack)."""
        if _state_dim(self.agent):
            from gfp.agents.base import PIXELS, STATE

            if not isinstance(obs, Mapping) or not {PIXELS, STATE} <= set(obs):
                raise DataError(
                    f"this policy takes a camera's frames and a state vector: pass "
                    f"{{{PIXELS!r}: frame, {STATE!r}: state}}, not {type(obs).__name__}"
                )
            pixels = self._push(obs[PIXELS]) if self.frame_stack > 1 else obs[PIXELS]
            return {PIXELS: pixels, STATE: obs[STATE]}
        return self._push(obs) if self.frame_stack > 1 else obs

    def act_chunk_stacked(self, obs: Any, policy: str = "actor", seed: int = 0) -> np.ndarray:
        """`act_chunk` for inputs already stacked (`agent.obs_spec.shape`, or (N, *that))."""
        batch, single = self._as_batch(obs)
        chunks = self._chunks(batch, policy, seed)
        return chunks[0] if single else chunks

    def _chunks(self, batch: np.ndarray, policy: str, seed: int) -> np.ndarray:
        """The policy's output for `batch` as chunks (N, k, A): step i = [..., i*A:(i+1)*A]."""
        fn = self._policy_fn(policy)
        if self._device_params is None:
            self._device_params = jax.device_put(self.params)
        actions = np.asarray(fn(self._device_params, batch, jax.random.PRNGKey(seed)))
        return actions.reshape(-1, self.chunk_len, self.env_action_dim)

    def _policy_fn(self, policy: str) -> Callable:
        if policy not in self.agent.policies:
            raise ConfigError(
                f"agent {self.agent.name!r} has no policy {policy!r}; its policies: "
                + ", ".join(self.agent.policies)
            )
        if policy not in self._fns:
            self._fns[policy] = self.agent.policy_fn(policy)  # evaluation's function
        return self._fns[policy]

    def _as_batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        """(a batch as evaluation feeds the policy, whether `obs` was one observation): pixels stay
        uint8 (the encoders scale them), anything else becomes float32; a combined observation
        is the dict of both (gfp.agents.base.combined_obs)."""
        d = _state_dim(self.agent)
        if d:
            from gfp.agents.base import PIXELS, STATE, combined_obs

            if not isinstance(obs, Mapping) or not {PIXELS, STATE} <= set(obs):
                raise DataError(f"this policy takes {{{PIXELS!r}: frames, {STATE!r}: state}}")
            pixels, single = self._as_batch_image(obs[PIXELS])
            state = np.asarray(obs[STATE], np.float32)
            want = (d,) if single else (len(pixels), d)
            if state.shape != want:
                raise DataError(f"state has shape {state.shape}; this policy takes {list(want)}")
            return combined_obs(pixels, state[None] if single else state), single
        return self._as_batch_image(obs)

    def _as_batch_image(self, obs: Any) -> tuple[np.ndarray, bool]:
        spec = self.agent.obs_spec
        obs = np.asarray(obs)
        shape = tuple(spec.shape)
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise DataError(
                f"observations have shape {obs.shape}; this policy takes {list(shape)} or "
                "(N, *that)"
            )
        if spec.dtype == "uint8":
            if obs.dtype != np.uint8:
                raise DataError(
                    f"observations are {obs.dtype}; this pixel policy takes the uint8 frames"
                )
        else:
            obs = obs.astype(np.float32)
        return (obs[None] if single else obs), single

    def _push(self, frame: Any) -> np.ndarray:
        """The stacked input after `frame` (gfp_deploy's FrameStack: the rule of training)."""
        from gfp.deploy import FrameStack

        frame = np.asarray(frame)
        want = self.obs_shape
        if frame.shape[frame.ndim - len(want) :] != want or frame.ndim > len(want) + 1:
            raise DataError(
                f"frame has shape {frame.shape}; this policy takes single frames of {list(want)} "
                f"(or (N, *that)), {self.frame_stack} stacked; act_stacked takes stacked inputs"
            )
        if self._stack is None:
            self._stack = FrameStack(self.frame_stack)
        try:
            return self._stack.push(frame)
        except ValueError as e:  # another batch size in the middle of an episode
            raise DataError(f"{e}; call reset() before a new episode") from None

    # ---- raw robot observations (runs trained on a LeRobot dataset) -----------------------------
    @property
    def robot(self) -> dict[str, Any] | None:
        """The run's observation preprocessing and action normalisation (`robot_record`, the
        record `gfp export` writes into the sidecar's `robot`); None for a run not trained on a
        LeRobot dataset."""
        return robot_record(self.config, self._config_path)

    @property
    def action_normalization(self) -> dict[str, Any] | None:
        """The loader's map of the dataset's actions to [-1, 1] (config.json's
        dataset.info.action_normalization); None for other runs."""
        info = (self.config.get("dataset") or {}).get("info") or {}
        return info.get("action_normalization") if info.get("lerobot") else None

    @property
    def _config_path(self) -> str:
        return str(self.path / "config.json") if self.path is not None else "config.json"

    def unnormalize(self, actions: Any) -> np.ndarray:
        """Policy actions in [-1, 1] -> robot units (gfp.data.lerobot_loader.unnormalize_actions
        with the run's record)."""
        from gfp.data.lerobot_loader import unnormalize_actions

        record = self.action_normalization
        if record is None:
            raise ConfigError(
                f"{self._config_path}: records no action normalisation (only runs on a LeRobot "
                "dataset do): this policy's actions are already the environment's"
            )
        return unnormalize_actions(np.asarray(actions), record)

    def act_raw(self, obs: Mapping[str, Any], policy: str = "actor", seed: int = 0) -> np.ndarray:
        """The action in robot units for the raw observation dict `obs` a robot produces
        ({feature name: value}: the state features as float vectors, a camera as a uint8
        (H, W, 3) RGB frame at the training size; one leading batch axis allowed), for a run
        trained on a LeRobot dataset: the observation is made as training made it
        (gfp.deploy.RawObservation: the state features concatenated in the recorded order),
        stacked and executed as `act` does (`reset()` at every episode start), and the action
        un-normalised (`unnormalize`). The same as gfp.deploy's `policy.act_raw` on the
        exported model. A missing key, a wrong shape or dtype, NaN or inf: DataError naming it."""
        from gfp.deploy import RawObservation

        if self._raw is None:
            record = self.robot
            if record is None:
                raise ConfigError(
                    f"{self._config_path}: records no raw-observation preprocessing: act_raw is "
                    "for runs trained on a LeRobot dataset; call act(obs)"
                )
            self._raw = RawObservation(record["observation"], self._config_path)
        try:
            prepared = self._raw(obs)
        except ValueError as e:  # gfp.deploy.InvalidInput: already one line naming the key
            raise DataError(str(e)) from None
        return self.unnormalize(self.act(prepared, policy, seed))

    # ---- evaluating and saving -----------------------------------------------------------------
    def evaluate(
        self,
        episodes: int = 50,
        *,
        seed: int = 0,
        policies: Sequence[str] | None = None,
        video_dir: str | Path | None = None,
    ) -> dict[str, float]:
        """`gfp.evaluate_policies` in the run's environment, with its success timing: mean
        'POLICY/success', 'POLICY/return', 'POLICY/length' (and 'POLICY/normalized_score' where
        the task has reference scores) for each policy."""
        from gfp.run import evaluate_policies

        env_name = (self.config.get("dataset") or {}).get("env_name")
        if not env_name:
            raise ConfigError(
                "config.json: dataset.env_name is missing: the run names no environment to "
                "evaluate in"
            )
        for policy in policies or ():
            self._policy_fn(policy)  # an unknown name: one line, before any environment starts
        return evaluate_policies(
            self.agent,
            self.params,
            env_name,
            episodes=episodes,
            seed=seed,
            policies=policies,
            video_dir=Path(video_dir) if video_dir is not None else None,
            success_timing=self.config.get("success_timing"),
            task=self.config.get("task"),
        )

    def save(self, run_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write the policy as a run directory (config.json, params.msgpack, summary.json, with
        gfp.rundir's atomic writes) that `load_run`, `gfp eval` and `gfp export` read; returns its
        path. A directory that already holds a run is refused unless `overwrite`."""
        from gfp.rundir import RunDir

        path = Path(run_dir).expanduser()
        if self.path is not None and path.resolve() == self.path.resolve():
            raise ConfigError(
                f"{path} is the run directory this policy was loaded from; save it elsewhere "
                "(overwriting would remove the run's logs and checkpoints)"
            )
        held = [n for n in ("config.json", PARAMS, SUMMARY) if (path / n).exists()]
        if held and not overwrite:
            raise ConfigError(
                f"{path} already holds a run ({', '.join(held)}); pass overwrite=True to replace "
                "it, or choose another directory"
            )
        summary = self.summary or {
            "task": self.config.get("task"),
            "agent": self.agent.name,
            **({"steps": self.config["steps"]} if "steps" in self.config else {}),
        }
        run = RunDir(path, overwrite=overwrite)
        try:
            run.write_config(self.config)
            run.save_params(self.params)
            run.write_summary(summary)  # a finished run: never taken for one to --resume
        finally:
            run.close()
        self.path = path
        return path


def load_run(run_dir: str | Path) -> Policy:
    """The `Policy` of a finished run directory (`gfp train`'s, or one `Policy.save` wrote):
    its agent rebuilt from config.json and its final parameters, checked against that agent.
    ConfigError (one line naming the file) for a directory that is not such a run."""
    from gfp.run import load_run as load_tuple

    path = Path(run_dir).expanduser()
    try:
        agent, params, config = load_tuple(path)
    except ValueError as e:  # a params.msgpack that does not decode, where RunDir lets it through
        raise ConfigError(f"{path / PARAMS}: cannot be read as gfp parameters ({e})") from None
    check_params(agent, params, path / PARAMS)
    summary = None
    if (path / SUMMARY).exists():
        try:
            summary = json.loads((path / SUMMARY).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path / SUMMARY}: cannot be read ({e})") from None
    return Policy(agent, params, config, summary, path)


def _state_dim(agent: Agent) -> int:
    """d > 0 for a combined observation (gfp.agents.base.ObsSpec.state_dim), 0 otherwise."""
    return int(getattr(agent.obs_spec, "state_dim", 0))


def check_params(agent: Agent, params: Any, where: Path) -> None:
    """ConfigError unless `params` has exactly the arrays (names, shapes, dtypes) of `agent`'s
    parameters: a params.msgpack of another agent or configuration fails here, not inside jit."""
    want = jax.eval_shape(agent.init, jax.random.PRNGKey(0)).params

    def leaves(tree: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
        flat, _ = jax.tree_util.tree_flatten_with_path(tree)
        return {jax.tree_util.keystr(k): (str(np.dtype(a.dtype)), tuple(a.shape)) for k, a in flat}

    if not isinstance(params, dict):
        raise ConfigError(f"{where}: holds {type(params).__name__}, not a parameter tree")
    need, have = leaves(want), leaves(jax.tree.map(np.asarray, params))
    for name in sorted(need.keys() | have.keys()):
        if need.get(name) != have.get(name):
            got = "missing" if name not in have else f"{have[name][0]}{list(have[name][1])}"
            wanted = "absent" if name not in need else f"{need[name][0]}{list(need[name][1])}"
            raise ConfigError(
                f"{where}: array {name} is {got}, the {agent.name} agent of config.json needs "
                f"{wanted}: not this run's parameters"
            )


def fit_config(agent: Agent, dataset: Dataset, steps: int) -> dict[str, Any]:
    """config.json for parameters trained in Python: what `load_run` rebuilds the agent from
    (agent, agent_config, dataset shapes) and what evaluation reads (task, environment, success
    timing: gfp train's default), in the keys `gfp train` writes (gfp.run.run_config)."""
    from gfp.run import dataset_record, versions_record
    from gfp.settings import RunSettings

    defaults = {f.name: f.default for f in dataclasses.fields(RunSettings)}
    return {
        "task": dataset.name,
        "agent": agent.name,
        "steps": steps,
        "success_timing": defaults["success_timing"],
        "agent_config": json.loads(json.dumps(dataclasses.asdict(agent.config))),
        "dataset": dataset_record(dataset),
        "versions": versions_record(),
    }


# ---- the preprocessing of a LeRobot run ----------------------------------------------------------
UNNORMALIZE_RULE = (
    "the model outputs robot units: action = a * (max - min) / 2 + (max + min) / 2 per "
    "dimension, a = the policy's action in [-1, 1] (the loader normalised the dataset's actions "
    "as a = 2 (x - min) / (max - min) - 1; a dimension with max == min gives min)"
)


def robot_record(config: Mapping[str, Any], where: str = "config.json") -> dict[str, Any] | None:
    """For a run trained on a LeRobot dataset (config.json's dataset.info holds `lerobot` and
    `action_normalization`, gfp.data.lerobot_loader), what turns a robot's raw observation dict
    into the policy's input and its actions into robot units: {"source", "dataset" (root,
    format, fps), "observation": {"features": [{"key", "kind" ('state' | 'camera'), "shape",
    "dtype"}, ...] in the order training concatenated them, "rule"}, "action_normalization",
    "action"}; None for every other run. gfp.deploy.RawObservation applies it."""
    ds = config.get("dataset") or {}
    info = ds.get("info") or {}
    lerobot, norm = info.get("lerobot"), info.get("action_normalization")
    if not lerobot or not norm:
        return None
    features = _observation_features(ds, lerobot, where)
    cameras = [f["key"] for f in features if f["kind"] == "camera"]
    if cameras and len(features) > 1:
        camera = next(f for f in features if f["kind"] == "camera")
        h, w, _ = camera["shape"]
        rule = (
            f"a combined observation: the camera frame {cameras[0]!r}, uint8 RGB (H, W, 3) at "
            f"{h}x{w} (stacked as a camera-only run), and the state features concatenated in "
            "this order into one float32 vector (the current step's, not stacked): the model's "
            "inputs 'obs' and 'state'"
        )
    elif cameras:
        h, w, _ = features[0]["shape"]
        rule = (
            f"the camera frame {cameras[0]!r}, uint8 RGB (H, W, 3) at {h}x{w} (training decoded "
            f"its video at that size with FFmpeg's scaler; gfp.deploy refuses another size "
            "rather than resize differently)"
        )
    else:
        rule = (
            "the state features concatenated in this order into one float32 vector, as the "
            "loader concatenated the dataset's columns"
        )
    return {
        "source": "lerobot",
        "dataset": {
            "root": lerobot.get("root"),
            "codebase_version": lerobot.get("codebase_version"),
            "fps": lerobot.get("fps"),
        },
        "observation": {"features": features, "rule": rule},
        "action_normalization": dict(norm),
        "action": UNNORMALIZE_RULE,
    }


def _observation_features(
    ds: Mapping[str, Any], lerobot: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:
    """Each observation feature of a LeRobot run with its shape and dtype, in the loader's order
    (config.json's dataset.info.lerobot.obs_keys; the widths of several state features from the
    dataset's meta/info.json, which config.json does not record)."""
    keys = list(lerobot.get("obs_keys") or [])
    shape = [int(n) for n in ds.get("obs_shape") or [ds.get("obs_dim", 0)]]
    if not keys:
        raise ConfigError(f"{where}: dataset.info.lerobot.obs_keys is missing or empty")
    size = lerobot.get("image_size")
    d = int(ds.get("obs_state_dim") or 0)
    if size and d:  # state features, then one camera (gfp.data.lerobot_loader.parse_obs_keys)
        camera = {"key": keys[-1], "kind": "camera", "shape": shape, "dtype": "uint8"}
        if shape != [*map(int, size), 3]:
            raise ConfigError(
                f"{where}: dataset.info.lerobot records the camera at {size}, the dataset's "
                f"frames are {shape}"
            )
        return [*_state_features(ds, lerobot, keys[:-1], [d], where), camera]
    if size:  # one camera (gfp.data.lerobot_loader.parse_obs_keys)
        if len(keys) != 1 or shape != [*map(int, size), 3]:
            raise ConfigError(
                f"{where}: dataset.info.lerobot records the camera {keys} at {size}, the "
                f"dataset's observations are {shape}: not one camera's frames"
            )
        return [{"key": keys[0], "kind": "camera", "shape": shape, "dtype": "uint8"}]
    return _state_features(ds, lerobot, keys, shape, where)


def _state_features(
    ds: Mapping[str, Any], lerobot: Mapping[str, Any], keys: list[str], shape: list[int], where: str
) -> list[dict[str, Any]]:
    """The state features `keys`, concatenated into the run's (d,) = `shape` state vector."""
    if len(keys) == 1:
        widths = [shape]
    else:
        widths = _state_shapes(lerobot, keys, where)
        total = sum(int(np.prod(w)) for w in widths)
        if [total] != shape:
            raise ConfigError(
                f"{where}: the state features {keys} have {total} values in the dataset's "
                f"meta/info.json, the run's state {shape}: not the dataset it trained on"
            )
    return [
        {"key": k, "kind": "state", "shape": list(w), "dtype": "float32"}
        for k, w in zip(keys, widths, strict=True)
    ]


def _state_shapes(lerobot: Mapping[str, Any], keys: list[str], where: str) -> list[list[int]]:
    """The recorded shape of each state feature `keys` from the dataset's meta/info.json."""
    root = Path(str(lerobot.get("root")))
    meta = root / "meta" / "info.json"
    try:
        features = json.loads(meta.read_text())["features"]
        return [[int(n) for n in features[k]["shape"]] for k in keys]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"{where}: the run concatenates the state features {', '.join(keys)}, and config.json "
            f"does not record each one's size; the dataset's {meta} gives them, but cannot be "
            f"read ({type(e).__name__}: {e})"
        ) from None
