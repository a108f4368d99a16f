"""Off-policy evaluation: fitted Q evaluation (FQE) of a finished run's policy from data alone.

FQE (Le, Voloshin & Yue 2019, "Batch Policy Learning under Constraints", Alg. 3; Paine et al.
2020 use it to select offline-RL checkpoints) evaluates a fixed policy pi by iterated regression:

    Q_{k+1} = argmin_Q  E_(s,a,r,s',m) ~ D [ (Q(s, a) - (r + gamma * m * Qbar(s', pi(s'))))^2 ]

with Qbar a Polyak-averaged target copy of Q (one gradient step per regression, as a critic is
trained). Its value is the mean over the evaluation episodes' initial states of Q(s0, pi(s0)):

    V^pi = 1/E * sum_e Q(s0_e, pi(s0_e)),

and a 95% interval comes from B bootstrap resamples of those episodes (the percentile interval
of the resampled means; the fitted Q is kept fixed: the interval is over which initial states
the data happens to hold, not over the fit itself).

pi is the run's policy exactly as evaluation acts (`agent.act`: the one-step actor, or the flow
with `policy='vabc'` / 'flow'), for every agent. Its actions at the data's next states do not
change while Q is fitted, so they are drawn once before the fit, `policy_samples` noise draws per
row (deterministic policies give the same action each draw); each update's target averages one
of them, drawn with its minibatch inside the jitted scan, so the fit regresses on
E_z[Qbar(s', pi(s', z))].

Which data: FQE fits on the evaluation split's transitions (`fit_on='val'`: the dataset's own
validation file, or `val_episodes` whole episodes held out of the training data), or on the
training data, or on both; the initial states are always the evaluation split's episodes'.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gfp.agents.base import TrainState, polyak
from gfp.agents.networks import Critic, FlattenObs
from gfp.data.info import episode_bounds
from gfp.engine.samplers import sample_rows
from gfp.errors import ConfigError, DataError

OPE_FILE = "ope.json"
FIT_ON = ("val", "train", "all")
# (params, observations (N, *obs), key) -> actions (N, A): the policy evaluated.
PolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class FQEConfig:
    """FQE's hyperparameters (`gfp ope`'s flags; their defaults are stated in its --help)."""

    steps: int = 20_000  # gradient steps of the regression
    batch_size: int = 256
    hidden_dims: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    gamma: float | None = None  # None: the run's agent config discount (run_ope)
    tau: float = 0.005  # Polyak rate of the target Qbar
    seed: int = 0
    bootstrap: int = 1000  # B resamples of the evaluation episodes
    policy_samples: int = 4  # noise draws of pi(s') per row
    chunk: int = 1000  # updates fused into one jitted lax.scan

    def check(self) -> None:
        for name, low in (("steps", 1), ("batch_size", 1), ("bootstrap", 1),
                          ("policy_samples", 1), ("chunk", 1)):  # fmt: skip
            if getattr(self, name) < low:
                raise ConfigError(f"FQE {name} must be >= {low}, got {getattr(self, name)}")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"FQE hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.gamma is not None and not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"FQE gamma must be in [0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"FQE tau must be in (0, 1], got {self.tau}")
        if not self.lr > 0.0:
            raise ConfigError(f"FQE lr must be > 0, got {self.lr}")


# ---- episodes -----------------------------------------------------------------------------------
def behaviour_returns(
    transitions: Mapping[str, np.ndarray], gamma: float, bounds: list[tuple[int, int]]
) -> np.ndarray:
    """The data's own discounted return from each episode's first state (Monte Carlo:
    G_t = r_t + gamma * m_t * G_{t+1}, 0 after the episode's last row): the behaviour policy's
    value where the episode is long enough, a reference for V^pi."""
    r = np.asarray(transitions["rewards"], np.float64)
    m = np.asarray(transitions["masks"], np.float64)
    out = np.zeros(len(bounds))
    for e, (a, b) in enumerate(bounds):
        g = 0.0
        for t in range(b - 1, a - 1, -1):
            g = r[t] + gamma * m[t] * g
        out[e] = g
    return out


# ---- the policy's actions -----------------------------------------------------------------------
def policy_actions(
    policy: PolicyFn, params: Any, obs: np.ndarray, rng: jax.Array, samples: int,
    block: int = 8192,
) -> np.ndarray:  # fmt: skip
    """pi(s) for every row of `obs`, `samples` noise draws each: (N, samples, A), float32."""
    fn = jax.jit(policy)
    out = []
    for lo in range(0, len(obs), block):
        x = jnp.asarray(obs[lo : lo + block])
        keys = jax.random.split(jax.random.fold_in(rng, lo), samples)
        out.append(np.stack([np.asarray(fn(params, x, k)) for k in keys], axis=1))
    return np.concatenate(out).astype(np.float32)


# ---- the regression ----------------------------------------------------------------------------
class FQE:
    """Q^pi fitted by FQE on `data` (observations, actions, rewards, masks, next_observations,
    and `next_pi`: (N, samples, A) actions of pi at next_observations)."""

    def __init__(self, config: FQEConfig, obs_shape: tuple[int, ...]):
        self.config = config
        self.critic = Critic(tuple(config.hidden_dims), layer_norm=True,
                             encoder=FlattenObs(len(obs_shape)))  # fmt: skip
        self.obs_shape = obs_shape
        self.tx = optax.adam(config.lr)

    def q(self, params: Any, obs: jax.Array, actions: jax.Array) -> jax.Array:
        """Q(s, a): the mean of the ensemble's 2 members (an estimate, not a pessimistic min)."""
        return self.critic.apply({"params": params}, obs, actions).mean(0)

    def init(self, rng: jax.Array, action_dim: int) -> TrainState:
        rng, key = jax.random.split(rng)
        obs = jnp.zeros((1, *self.obs_shape))
        params = self.critic.init(key, obs, jnp.zeros((1, action_dim)))["params"]
        return TrainState(params, params, self.tx.init(params), rng,
                          jnp.zeros((), jnp.int32))  # fmt: skip

    def loss(self, params: Any, target: Any, batch: Mapping[str, jax.Array], j: jax.Array):
        """The regression's loss on one minibatch; `j` picks each row's draw of pi(s')."""
        a_next = jnp.take_along_axis(batch["next_pi"], j[:, None, None], axis=1)[:, 0]
        q_next = self.q(target, batch["next_observations"], a_next)
        y = jax.lax.stop_gradient(batch["rewards"] + self.config.gamma * batch["masks"] * q_next)
        q = self.critic.apply({"params": params}, batch["observations"], batch["actions"])
        return jnp.mean((q - y) ** 2)  # each ensemble member regresses on the same target

    def update(self, state: TrainState, data: Mapping[str, jax.Array]):
        rng, batch_rng, j_rng = jax.random.split(state.rng, 3)
        batch = sample_rows(data, batch_rng, self.config.batch_size)
        samples = data["next_pi"].shape[1]
        j = jax.random.randint(j_rng, (self.config.batch_size,), 0, samples)
        loss, grads = jax.value_and_grad(self.loss)(state.params, state.target_params, batch, j)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Qbar <- tau * Q_before + (1 - tau) * Qbar (pre-step, as gfp's critics' targets)
        target = polyak(state.params, state.target_params, self.config.tau)
        return TrainState(params, target, opt_state, rng, state.step + 1), loss

    def fit(
        self, data: Mapping[str, np.ndarray], log: Callable[[int, float], None] | None = None
    ) -> tuple[TrainState, float]:
        """`config.steps` updates, `config.chunk` at a time in one jitted lax.scan; returns the
        state and the mean TD loss of the last chunk."""
        c = self.config
        device_data = {k: jnp.asarray(v) for k, v in data.items()}
        state = self.init(jax.random.PRNGKey(c.seed), data["actions"].shape[1])

        run = jax.jit(
            lambda state, data, length: jax.lax.scan(
                lambda s, _: self.update(s, data), state, None, length=length
            ),
            static_argnums=2,
        )
        done, loss = 0, float("nan")
        while done < c.steps:
            k = min(c.chunk, c.steps - done)
            state, losses = run(state, device_data, k)
            done += k
            loss = float(jnp.mean(losses))
            if not np.isfinite(loss):
                raise DataError(f"FQE diverged at step {done} (TD loss {loss}); try a lower --lr")
            if log is not None:
                log(done, loss)
        return state, loss


def bootstrap_interval(
    values: np.ndarray, resamples: int, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """The percentile interval of the mean of `values` (one per episode) over `resamples`
    resamples of the episodes with replacement."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def estimate(
    fit_data: Mapping[str, np.ndarray],
    eval_data: Mapping[str, np.ndarray],
    policy: PolicyFn,
    params: Any,
    config: FQEConfig,
    log: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """FQE of `policy` (with `params`) fitted on `fit_data`, evaluated on the initial states of
    `eval_data`'s episodes. Returns V^pi with its bootstrap interval, (1 - gamma) V^pi, the mean of
    Q(s, pi(s)) over every state of the evaluation episodes (with its interval: episodes
    resampled), the behaviour's Monte Carlo return from the same initial states, and the fit's
    last TD loss."""
    config.check()
    if config.gamma is None:
        raise ConfigError("FQE gamma must be given (gfp ope takes the run's)")
    rng = jax.random.PRNGKey(config.seed)
    pi_rng, start_rng, all_rng = jax.random.split(jax.random.fold_in(rng, 1), 3)
    keys = ("observations", "actions", "rewards", "masks", "next_observations")
    data = {k: np.asarray(fit_data[k], np.float32) for k in keys}
    data["next_pi"] = policy_actions(
        policy, params, data["next_observations"], pi_rng, config.policy_samples
    )
    fqe = FQE(config, tuple(data["observations"].shape[1:]))
    started = time.perf_counter()
    state, loss = fqe.fit(data, log)

    bounds = episode_bounds(eval_data["terminals"])
    obs = np.asarray(eval_data["observations"], np.float32)
    q_pi = jax.jit(lambda p, s, a: jax.vmap(lambda a_j: fqe.q(p, s, a_j), 1, 1)(a).mean(1))
    starts = obs[[a for a, _ in bounds]]
    v0 = np.asarray(q_pi(state.params, starts,
                         policy_actions(policy, params, starts, start_rng,
                                        config.policy_samples)))  # fmt: skip
    q_all = np.asarray(q_pi(state.params, obs,
                            policy_actions(policy, params, obs, all_rng,
                                           config.policy_samples)))  # fmt: skip
    per_episode = np.array([q_all[a:b].mean() for a, b in bounds])
    behaviour = behaviour_returns(eval_data, config.gamma, bounds)
    value = float(v0.mean())
    return {
        "value": value,
        "interval": list(bootstrap_interval(v0, config.bootstrap, config.seed)),
        "value_per_step": (1.0 - config.gamma) * value,
        "states_value": float(per_episode.mean()),
        "states_interval": list(bootstrap_interval(per_episode, config.bootstrap, config.seed)),
        "behaviour_value": float(behaviour.mean()),
        "episodes": len(bounds),
        "fit_transitions": int(len(data["observations"])),
        "td_loss": loss,
        "fit_seconds": round(time.perf_counter() - started, 1),
    }


# ---- a run directory ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What `gfp ope` evaluates: a run's policy, the data FQE fits on and where its initial
    states come from (set from the CLI's options)."""

    run_dir: Path
    policy: str = "actor"
    fit_on: str = "val"
    val_episodes: float | None = None  # None: the run's own setting (0: the dataset's val file)
    dataset_dir: Path | None = None  # None: the run's


def load_data(policy: Any, ev: Evaluation) -> tuple[dict, dict, str]:
    """(train, evaluation split, where the evaluation split came from) of a run's dataset, the
    training part checked against the fingerprint config.json records."""
    from gfp.data.checks import dataset_fingerprint

    cfg = policy.config
    own = float(cfg.get("val_episodes") or 0.0)
    n = own if ev.val_episodes is None else float(ev.val_episodes)
    data = _load(cfg, ev, own)
    recorded = (cfg.get("dataset") or {}).get("fingerprint")
    got = dataset_fingerprint(data)
    if recorded and got != recorded:
        where = ev.dataset_dir or cfg.get("dataset_dir") or "its default place"
        raise DataError(
            f"the dataset of {cfg['task']} at {where} is not the data {ev.run_dir} trained on "
            f"(fingerprint {got}, config.json records {recorded}); pass --dataset-dir with the "
            "run's data"
        )
    if n != own:  # another evaluation split than the run's: episodes the run may have trained on
        data = _load(cfg, ev, n)
    if n:
        source = f"{'the run' if n == own else 'gfp ope'}'s val_episodes = {n:g} (gfp.data.split)"
    else:
        source = "the dataset's validation split"
    if data.val is None:
        raise ConfigError(
            f"{cfg['task']} has no validation split; pass --val-episodes N to hold out N of its "
            "episodes (the run trained on them unless it was trained with the same "
            "--val-episodes)"
        )
    return data.train, data.val, source


def _load(cfg: Mapping[str, Any], ev: Evaluation, val_episodes: float) -> Any:
    """The run's dataset as gfp train loaded it, `val_episodes` held out (0: its own split)."""
    from gfp.data.load import load_dataset

    task = cfg.get("task")
    if not isinstance(task, str):
        raise ConfigError(f"{ev.run_dir / 'config.json'}: missing key 'task': no dataset named")
    directory = ev.dataset_dir if ev.dataset_dir is not None else cfg.get("dataset_dir")
    hold = {"val_episodes": val_episodes, "validation": False} if val_episodes else {}
    try:
        data = load_dataset(task, directory, obs_keys=cfg.get("obs_keys"),
                            reward=cfg.get("reward"), **hold)  # fmt: skip
    except (DataError, ConfigError) as e:
        hint = "" if ev.dataset_dir is not None else "; pass --dataset-dir where it is now"
        raise DataError(f"the dataset of {ev.run_dir} cannot be loaded: {e}{hint}") from None
    if "frame_start" in data.train or data.train["observations"].dtype == np.uint8:
        raise ConfigError(f"{ev.run_dir} is a pixel run; gfp ope evaluates state-based runs only")
    return data


def run_ope(
    ev: Evaluation, config: FQEConfig | None = None, log: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """FQE of a finished run's policy; the result is also written to RUN_DIR/ope.json (atomic,
    one entry per policy: another policy's entry is kept)."""
    from gfp.api import load_run
    from gfp.io import atomic_write_json

    if ev.fit_on not in FIT_ON:
        raise ConfigError(f"--fit-on must be one of {', '.join(FIT_ON)}, got {ev.fit_on!r}")
    if not ev.run_dir.is_dir():
        raise ConfigError(f"{ev.run_dir} is not a directory: no run to evaluate")
    if not (ev.run_dir / "config.json").is_file() and list(ev.run_dir.glob("seed*/config.json")):
        raise ConfigError(
            f"{ev.run_dir} is a multi-seed run's folder; pass one of its seedS directories"
        )
    policy = load_run(ev.run_dir)
    policy._policy_fn(ev.policy)  # an unknown policy: one line naming the agent's
    agent = policy.agent
    if agent.chunk_len > 1:
        raise ConfigError(
            f"{ev.run_dir}'s policy acts in chunks of {agent.chunk_len} actions (open loop); FQE "
            "evaluates policies that act at every step"
        )
    if agent.obs_spec.dtype == "uint8":
        raise ConfigError(f"{ev.run_dir} is a pixel run; gfp ope evaluates state-based runs only")
    config = config or FQEConfig()
    if config.gamma is None:
        config = dataclasses.replace(config, gamma=float(agent.config.gamma))
    train, val, source = load_data(policy, ev)
    fit = {"val": val, "train": train}.get(ev.fit_on)
    if fit is None:
        fit = {k: np.concatenate([train[k], val[k]]) for k in val if k in train}
    name = ev.policy
    pi: PolicyFn = lambda params, obs, key: agent.act(params, obs, key, name)  # noqa: E731
    params = jax.device_put(policy.params)
    result = estimate(fit, val, pi, params, config, log)
    result = {
        "agent": agent.name,
        "task": policy.config.get("task"),
        "policy": name,
        "run_steps": policy.config.get("steps"),
        **result,
        "fit_on": ev.fit_on,
        "initial_states": f"the first state of each of the {result['episodes']} episodes of "
        f"{source}",
        "fqe": {**dataclasses.asdict(config), "hidden_dims": list(config.hidden_dims)},
    }
    path = ev.run_dir / OPE_FILE
    held: dict[str, Any] = {}
    if path.is_file():
        try:
            held = json.loads(path.read_text()).get("policies", {})
        except (OSError, ValueError, AttributeError):
            held = {}
    atomic_write_json(path, {"policies": {**held, name: result}})
    return result


def format_result(result: Mapping[str, Any]) -> str:
    """The table `gfp ope` prints."""
    lo, hi = result["interval"]
    slo, shi = result["states_interval"]
    rows = [
        ("policy", f"{result['agent']} {result['policy']}"),
        ("V^pi (initial states)", f"{result['value']:.3f}"),
        ("95% bootstrap interval", f"[{lo:.3f}, {hi:.3f}]"),
        ("(1 - gamma) V^pi", f"{result['value_per_step']:.4f}"),
        ("mean Q(s, pi(s)), all states", f"{result['states_value']:.3f}  [{slo:.3f}, {shi:.3f}]"),
        ("behaviour's return (data)", f"{result['behaviour_value']:.3f}"),
        ("gamma", f"{result['fqe']['gamma']:g}"),
        ("fitted on", f"{result['fit_on']}: {result['fit_transitions']} transitions, "
                      f"{result['fqe']['steps']} steps, TD loss {result['td_loss']:.4g}"),
        ("initial states", result["initial_states"]),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
