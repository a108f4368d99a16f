"""Validation metrics on a held-out split (`Dataset.val`), for runs with no environment to
evaluate in (LeRobot data, `--no-eval`) and beside success where there is one.

A fixed set of `VAL_BATCHES` minibatches of the agent's batch size is drawn once from the
validation transitions with a fixed key (`VAL_SEED`), by the sampler training would use
(gfp.engine.placement.agent_sampler: frame stacks, h-step windows, ReBRAC's next actions), with
no augmentation (p_aug = 0); the noise the metrics use is drawn from fixed keys too. So every
evaluation of a run, and every run on the same data, scores the same samples: the numbers are
comparable across evaluation steps. One jitted call computes them for every seed (vmapped over
seeds as the training chunk is, gfp.engine.chunk.over_seeds). Each metric is the mean over the
batches of:

* `val_td_error`: the critic's loss term as the agent computes it (its own Bellman target, its
  h-step weights), as the mean over the ensemble (IQL's loss sums its two critics: divided by 2);
* `val_flow_loss`: the flow-matching loss of the BC flow (FQL, QC, flow_bc) or the VaBC flow
  (GFP), unweighted (GFP's guidance weight g left out), chunks masked as in training;
* `POLICY/val_action_mse`: mean over samples and action dimensions of (pi(s) - a)^2, pi the
  policy's action (`Agent.action`: the one-step actor of GFP/FQL, the flow's Euler output for
  flow policies, the Gaussian's mean, best-of-N for QC) for fixed noise z; a chunk's steps after a
  terminal masked out;
* `val_q_data`, `POLICY/val_q_actor`: the ensemble's mean Q at the dataset actions and at the
  policy's actions.

Agents without a critic have no TD error or Q; agents without a flow no flow loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import Agent, Batch, Params, TrainState
from gfp.agents.networks import flow_matching_error
from gfp.engine.chunk import over_seeds
from gfp.engine.placement import agent_sampler

VAL_BATCHES = 8  # minibatches of the agent's batch size
VAL_SEED = 0  # the key the minibatches and the metrics' noise are drawn with
# Agents whose critic loss term sums its ensemble's errors instead of averaging them.
_SUMMED_CRITIC = ("iql",)

# The metrics that are a policy's ('POLICY/name' columns in eval.csv); the others are the agent's.
PER_POLICY = ("val_action_mse", "val_q_actor")


def flow_module(agent: Agent) -> str | None:
    """The name of the agent's BC/VaBC flow network, or None without one."""
    name = getattr(agent, "flow_module", "flow")
    return name if name in agent.nets else None


def metric_names(agent: Agent) -> list[str]:
    """The eval.csv columns `Validation` writes for `agent`."""
    names = []
    critic = "critic" in agent.nets
    if critic:
        names.append("val_td_error")
    if flow_module(agent):
        names.append("val_flow_loss")
    if critic:
        names.append("val_q_data")
    for policy in agent.policies:
        names.append(f"{policy}/val_action_mse")
        if critic:
            names.append(f"{policy}/val_q_actor")
    return names


def fixed_batches(agent: Agent, transitions: Mapping[str, np.ndarray], batches: int) -> Batch:
    """`batches` minibatches (leading axis) drawn once from `transitions` with the fixed key, as
    training draws them but without augmentation; on the device."""
    config = dataclasses.replace(agent.config, p_aug=0.0)
    sampler = agent_sampler(transitions, agent).for_agent(agent)
    keys = jax.random.split(jax.random.PRNGKey(VAL_SEED), batches)
    if not sampler.fed:
        draw = lambda key, data: sampler.minibatch(config, data, key)[0]  # noqa: E731
        return jax.jit(jax.vmap(draw, in_axes=(0, None)))(keys, sampler.data)
    # host-fed data: the rows of `batches` updates from one key chain, then finished as training
    # finishes a fed minibatch
    blocks = [fed for _, fed in sampler.feed(np.asarray(keys[:1]), batches, config)]
    fed = jax.tree.map(lambda *b: jnp.concatenate(b, axis=1)[0], *blocks)
    finish = lambda key, f: sampler.minibatch(config, None, key, f)[0]  # noqa: E731
    return jax.jit(jax.vmap(finish))(keys, fed)


def batch_metrics(
    agent: Agent, params: Params, target_params: Params, batch: Batch, key: jax.Array
) -> dict[str, jax.Array]:
    """The metrics (module docstring) of one minibatch for one seed's parameters; `key` draws
    the loss terms' noise, the flow-matching eps and t and the policies' z."""
    k_loss, k_flow, k_z = jax.random.split(key, 3)
    s, a = batch["observations"], agent.batch_actions(batch)
    mask = agent.step_mask(batch)  # a chunk's steps after a terminal (None: nothing masked)

    def masked_mean(err: jax.Array) -> jax.Array:
        return jnp.mean(err if mask is None else err * mask)

    out: dict[str, jax.Array] = {}
    critic = "critic" in agent.nets
    if critic:
        terms, _ = agent.losses(params, target_params, batch, k_loss)
        members = agent.nets["critic"][0].num
        out["val_td_error"] = terms["critic"] / (members if agent.name in _SUMMED_CRITIC else 1)

        def q(actions: jax.Array) -> jax.Array:
            return agent.nets["critic"][0].apply({"params": params["critic"]}, s, actions).mean()

        out["val_q_data"] = q(a)
    flow = flow_module(agent)
    if flow is not None:
        k_eps, k_t = jax.random.split(k_flow)
        eps, t = jax.random.normal(k_eps, a.shape), jax.random.uniform(k_t, a.shape[:1])
        net, p = agent.nets[flow][0], {"params": params[flow]}
        err = flow_matching_error(net, p, s, a, eps, t, *([] if mask is None else [mask]))
        out["val_flow_loss"] = err.mean()
    z = jax.random.normal(k_z, agent.noise_shape(a.shape[:1]))
    for policy in agent.policies:
        pi = agent.action(params, s, z, policy)
        out[f"{policy}/val_action_mse"] = masked_mean((pi - a) ** 2)
        if critic:
            out[f"{policy}/val_q_actor"] = q(pi)
    return out


class Validation:
    """`validation(states) -> [row per seed]`: the metrics of every seed's parameters on the
    fixed validation minibatches of `transitions` (module docstring)."""

    def __init__(
        self, agent: Agent, transitions: Mapping[str, np.ndarray], batches: int = VAL_BATCHES
    ):
        self.agent = agent
        self.names = metric_names(agent)
        self.batches = fixed_batches(agent, transitions, batches)
        self.keys = jax.random.split(jax.random.PRNGKey(VAL_SEED + 1), batches)

        def per_seed(params: Params, target_params: Params, batches: Batch, keys: jax.Array):
            rows = jax.vmap(lambda b, k: batch_metrics(agent, params, target_params, b, k))(
                batches, keys
            )
            return jax.tree.map(jnp.mean, rows)

        def all_seeds(params, target_params, batches, keys):
            return over_seeds(per_seed, (params, target_params, batches, keys), (0, 0, None, None))

        self._run = jax.jit(all_seeds)

    def __call__(self, states: TrainState) -> list[dict[str, float]]:
        out = jax.device_get(
            self._run(states.params, states.target_params, self.batches, self.keys)
        )
        seeds = len(np.asarray(states.step).reshape(-1))
        return [{k: float(out[k][i]) for k in self.names} for i in range(seeds)]


# ---- --select-by ---------------------------------------------------------------------------------
# What `--select-by` may name, and its direction: higher is better for the environment's scores,
# lower for the validation errors (Q values rank nothing: a critic can overestimate).
SELECT_BY: dict[str, bool] = {  # True: lower is better
    "success": False,
    "return": False,
    "normalized_score": False,
    "val_td_error": True,
    "val_flow_loss": True,
    "val_action_mse": True,
}
PER_POLICY_SELECT = ("success", "return", "normalized_score", "val_action_mse")


def select_column(metric: str, agent: Agent, environment: bool, validation: bool) -> str:
    """The eval.csv column `--select-by metric` follows (METRIC, or POLICY/METRIC; a per-policy
    metric without a policy is the agent's first, deployed, policy's); ConfigError in one line
    for a metric that is unknown, or that this run does not compute."""
    from gfp.errors import ConfigError

    policy, _, name = metric.rpartition("/")
    valid = ", ".join(SELECT_BY)
    if name not in SELECT_BY or (policy and name not in PER_POLICY_SELECT):
        raise ConfigError(
            f"select_by (--select-by) = {metric!r} is not a metric gfp selects by; valid: {valid} "
            f"(higher is better for success/return/normalized_score, lower for val_*), or "
            f"POLICY/METRIC for a policy's success, return, normalized_score or val_action_mse"
        )
    if policy and policy not in agent.policies:
        raise ConfigError(
            f"select_by (--select-by) = {metric!r}: agent {agent.name!r} has no policy "
            f"{policy!r} (its policies: {', '.join(agent.policies)})"
        )
    if name.startswith("val_"):
        if not validation:
            raise ConfigError(
                f"select_by (--select-by) = {metric!r} needs a validation split: hold out "
                "episodes with --val-episodes N (or a fraction)"
            )
        column = f"{policy or agent.policies[0]}/{name}" if name in PER_POLICY else name
        if column not in metric_names(agent):
            raise ConfigError(
                f"select_by (--select-by) = {metric!r}: agent {agent.name!r} has no {name} "
                f"(its validation metrics: {', '.join(metric_names(agent))})"
            )
        return column
    if not environment:
        raise ConfigError(
            f"select_by (--select-by) = {metric!r} needs environment evaluation, which this run "
            "has not (no environment, or --no-eval); select by a validation metric "
            "(val_td_error, val_flow_loss, val_action_mse) with --val-episodes"
        )
    return f"{policy or agent.policies[0]}/{name}"


def improves(value: float, best: Mapping[str, Any] | None, lower: bool) -> bool:
    """Whether `value` is strictly better than the `best` record so far (ties keep the earlier
    step; a NaN never improves)."""
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value < best["value"] if lower else value > best["value"]
