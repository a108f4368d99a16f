"""gfp's action-chunked agents against Q-chunking's own code (QC; Li, Zhou, Levine 2025), one update
at a time from identical parameters, batch and noise.

  * fql with horizon 5 (QC-FQL) against QC's ACFQLAgent, actor_type 'distill-ddpg';
  * qc (best-of-N) against ACFQLAgent, actor_type 'best-of-n'.

Both agents get the same 2x64 networks; gfp's initial parameters are copied into QC's parameter tree
(module names mapped, layer names are the same), QC's optimizer state is rebuilt on them, and gfp's
state takes QC's RNG key. gfp's `sample_noise` is replaced by one that draws from the key it gets
exactly the noises QC's total_loss draws (the same splits and shapes), so both updates see the
same z', z, eps and t. Printed: the losses, the largest |difference| of each module's gradient,
and of its parameters after 1 and 10 updates (10 different batches).

QC's code is read from a checkout (not part of gfp, not a dependency):
    git -C <QC's repo> worktree add --no-checkout /tmp/qc HEAD
    git -C /tmp/qc checkout HEAD -- agents utils __init__.py
    pip install --no-deps --target /tmp/qcdeps ml_collections==1.1.0
    PYTHONPATH=/tmp/qcdeps:/tmp/qc .venv/bin/python benchmarks/compare_qc.py [--qc-dir /tmp/qc]
QC's utils/networks.py imports distrax for its Gaussian actor, which acfql.py does not use;
distrax's tensorflow-probability does not import under this JAX, so a stub module stands in.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents import make_agent
from gfp.agents.configs import FQLConfig, QCConfig

OBS, ACT, H, B, HIDDEN = 10, 4, 5, 64, (64, 64)
GAMMA = 0.99


def load_acfql(qc_dir: str):
    sys.modules.setdefault("distrax", types.SimpleNamespace(Transformed=object))
    sys.path.insert(0, qc_dir)
    spec = importlib.util.spec_from_file_location("qc_acfql", f"{qc_dir}/agents/acfql.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def windows(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n batches in QC's sample_sequence format (per-step cumulative rewards, masks, valid, and the
    window's next observations), each with a few terminals inside its windows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = rng.normal(size=(B, H)).astype(np.float32)
        term = (rng.uniform(size=(B, H)) < 0.08).astype(np.float32)
        masks_step = 1.0 - term
        cum_term = np.maximum.accumulate(term, axis=1)
        valid = np.ones((B, H), np.float32)
        valid[:, 1:] = 1.0 - cum_term[:, :-1]
        disc = GAMMA ** np.arange(H)
        out.append(
            {
                "observations": rng.normal(size=(B, OBS)).astype(np.float32),
                "actions": rng.uniform(-1, 1, (B, H, ACT)).astype(np.float32),
                "rewards": np.cumsum(r * disc, axis=1).astype(np.float32),
                "masks": np.minimum.accumulate(masks_step, axis=1).astype(np.float32),
                "next_observations": rng.normal(size=(B, H, OBS)).astype(np.float32),
                "valid": valid,
            }
        )
    return out


def gfp_batch(w: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """The same window in gfp's agent batch format (the engine's window sampler's)."""
    return {
        "observations": jnp.asarray(w["observations"]),
        "actions": jnp.asarray(w["actions"]),
        "rewards": jnp.asarray(w["rewards"][:, -1]),
        "masks": jnp.asarray(w["masks"][:, -1]),
        "next_observations": jnp.asarray(w["next_observations"][:, -1]),
        "valid": jnp.asarray(w["valid"]),
    }


# gfp module -> QC module; the layers inside have the same names (Dense_i, LayerNorm_i), only the
# wrapper differs: gfp's Critic holds VmapMLP_0, QC's Value value_net; gfp's MLP_0, QC's mlp.
MAPS = {
    "fql": {"critic": "critic", "actor": "actor_onestep_flow", "flow": "actor_bc_flow"},
    "qc": {"critic": "critic", "flow": "actor_bc_flow"},
}
INNER = {"critic": ("VmapMLP_0", "value_net"), "actor": ("MLP_0", "mlp"), "flow": ("MLP_0", "mlp")}


def to_qc(params, which: str):
    out = {}
    for ours, theirs in MAPS[which].items():
        a, b = INNER[ours]
        out[f"modules_{theirs}"] = {b: params[ours][a]}
    return out


def from_qc(qc_params, which: str):
    out = {}
    for ours, theirs in MAPS[which].items():
        a, b = INNER[ours]
        out[ours] = {a: qc_params[f"modules_{theirs}"][b]}
    return out


def qc_noise_fn(agent, actor_type: str):
    """gfp's sample_noise drawing QC's noises from the key QC's total_loss gets."""
    d, n = agent.action_dim, getattr(agent.config, "num_samples", None)

    def sample_noise(rng, batch):
        b = batch["observations"].shape[0]
        _, actor_rng, critic_rng = jax.random.split(rng, 3)
        _, sample_rng = jax.random.split(critic_rng)  # critic_loss -> sample_actions(s')
        shape = (b, d) if actor_type == "distill-ddpg" else (b, n, d)
        z_next = jax.random.normal(sample_rng, shape)
        rest, x_rng, t_rng = jax.random.split(actor_rng, 3)  # actor_loss
        eps = jax.random.normal(x_rng, (b, d))
        t = jax.random.uniform(t_rng, (b, 1))[:, 0]
        noise = {"z_next": z_next, "eps": eps, "t": t}
        if actor_type == "distill-ddpg":
            _, noise_rng = jax.random.split(rest)
            noise["z"] = jax.random.normal(noise_rng, (b, d))
        return noise

    return sample_noise


def maxdiff(a, b) -> float:
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def compare(acfql, which: str) -> None:
    actor_type = "distill-ddpg" if which == "fql" else "best-of-n"
    common = dict(actor_hidden_dims=HIDDEN, value_hidden_dims=HIDDEN, batch_size=B, horizon=H)
    if which == "fql":
        config = FQLConfig(**common, alpha=100.0)  # QC's default alpha; QC never normalises Q
    else:
        config = QCConfig(**common, num_samples=32)
    ours = make_agent(which, config, obs_dim=OBS, action_dim=ACT)
    ours.sample_noise = qc_noise_fn(ours, actor_type)

    qc_config = acfql.get_config()
    qc_config.update(
        actor_hidden_dims=HIDDEN,
        value_hidden_dims=HIDDEN,
        batch_size=B,
        horizon_length=H,
        alpha=100.0,
        actor_type=actor_type,
        actor_num_samples=32,
        discount=GAMMA,
    )
    theirs = acfql.ACFQLAgent.create(
        0, np.zeros((OBS,), np.float32), np.zeros((ACT,), np.float32), qc_config
    )

    state = ours.init(jax.random.PRNGKey(1))
    qc_params = dict(theirs.network.params)
    mapped = to_qc(state.params, which)
    qc_params.update(mapped)
    qc_params["modules_target_critic"] = mapped["modules_critic"]
    # best-of-n: QC still builds its one-step actor (no loss reaches it): it keeps its own init
    net = theirs.network.replace(params=qc_params, opt_state=theirs.network.tx.init(qc_params))
    theirs = theirs.replace(network=net)
    state = state.replace(rng=theirs.rng)

    print(f"\n=== gfp {which} (horizon {H}) vs QC ACFQLAgent actor_type={actor_type!r} ===")
    data = windows(10)
    # losses and gradients on the first batch
    _, loss_rng = jax.random.split(state.rng)
    grads_ours, m_ours = jax.grad(ours.total_loss, has_aux=True)(
        state.params, state.target_params, gfp_batch(data[0]), loss_rng
    )
    _, qc_rng = jax.random.split(theirs.rng)
    qc_batch = {k: jnp.asarray(v) for k, v in data[0].items()}
    grads_qc, m_qc = jax.grad(lambda p: theirs.total_loss(qc_batch, p, rng=qc_rng), has_aux=True)(
        theirs.network.params
    )
    rows = [
        ("critic loss", m_ours["critic/loss"], m_qc["critic/critic_loss"]),
        ("BC flow loss", m_ours["flow/loss"], m_qc["actor/bc_flow_loss"]),
    ]
    if which == "fql":
        rows += [
            ("distillation", m_ours["actor/distill"], m_qc["actor/distill_loss"]),
            (
                "actor Q loss",
                m_ours["actor/q_loss"],
                m_qc["actor/actor_loss"]
                - m_qc["actor/bc_flow_loss"]
                - 100.0 * m_qc["actor/distill_loss"],
            ),
        ]
    rows.append(
        ("total loss", m_ours["loss/total"], m_qc["critic/critic_loss"] + m_qc["actor/actor_loss"])
    )
    print(f"{'':14s} {'gfp':>14s} {'QC':>14s} {'|diff|':>10s}")
    for name, a, b in rows:
        print(f"{name:14s} {float(a):14.7f} {float(b):14.7f} {abs(float(a) - float(b)):10.2e}")
    g_qc = from_qc(grads_qc, which)
    for module in MAPS[which]:
        scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(grads_ours[module]))
        diff = maxdiff(grads_ours[module], g_qc[module])
        print(f"grad {module:7s} max|diff| {diff:.2e}  (max|grad| {scale:.2e})")

    update = jax.jit(ours.update)
    qc_update = jax.jit(type(theirs)._update)
    for i, w in enumerate(data, 1):
        state, _ = update(state, gfp_batch(w))
        theirs, _ = qc_update(theirs, {k: jnp.asarray(v) for k, v in w.items()})
        if i in (1, 10):
            p_qc = from_qc(theirs.network.params, which)
            t_qc = {"VmapMLP_0": theirs.network.params["modules_target_critic"]["value_net"]}
            parts = [f"{m} {maxdiff(state.params[m], p_qc[m]):.2e}" for m in MAPS[which]]
            parts.append(f"target critic {maxdiff(state.target_params['critic'], t_qc):.2e}")
            print(f"after {i:2d} update(s), params max|diff|: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qc-dir", default="/tmp/qc", help="a checkout of QC's code")
    args = parser.parse_args()
    acfql = load_acfql(args.qc_dir)
    where = f"jax {jax.__version__}, {jax.devices()[0].platform}"
    print(f"{where}; obs {OBS}, action {ACT}, horizon {H}, batch {B}, nets {HIDDEN}")
    for which in ("fql", "qc"):
        compare(acfql, which)


if __name__ == "__main__":
    main()
