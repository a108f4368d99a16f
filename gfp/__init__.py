"""gfp: Guided Flow Policy (GFP, ICLR 2026) for offline RL, in JAX.

Layout (the package is a picture of the architecture):
    gfp.datagen   -> datasets generated offline with OGBench's oracles
    gfp.data      -> datasets: loading, validation, checks, reference scores
    gfp.agents    -> one file per agent (GFP, FQL, ReBRAC, IQL, BC) on shared networks
    gfp.presets   -> the paper's per-task hyperparameters (a table) and the cpu preset
    gfp.engine    -> samplers, the jitted chunk (K updates fused with lax.scan, seeds vmapped),
                     the boundary driver of the offline and online phases
    gfp.evaluate  -> vectorised evaluation in OGBench / Gymnasium environments
    gfp.run       -> experiments: run directories, summaries; what the `gfp` command calls

Python API (README.md, "Python API"):
    data = gfp.load_dataset(task, gfp.ensure_dataset(task, "data", episodes=10))
    config, sources = gfp.resolve_config("gfp", task, preset="cpu")
    agent = gfp.make_agent("gfp", config, obs_dim=data.obs_dim, action_dim=data.act_dim)
    states = gfp.fit(agent, data, steps=2_000, seeds=[0])
    policy = gfp.Policy.from_fit(agent, states, data)   # or gfp.load_run(RUN_DIR)
    policy.evaluate(episodes=10); policy.save(RUN_DIR); policy.act(obs)
"""

__version__ = "0.1.0"

# The API is imported lazily: `import gfp` (and the data-generation worker processes, which
# import gfp.datagen) should not pay for importing JAX and the agents.
# name -> "module", or "module:attribute" where the module calls it otherwise
_API = {
    "AGENTS": "gfp.agents",
    "make_agent": "gfp.agents",
    "Dataset": "gfp.data.load",
    "load_dataset": "gfp.data.load",
    "evaluate_policies": "gfp.run",
    "fit": "gfp.run",
    "ensure_dataset": "gfp.api",
    "load_run": "gfp.api",  # a Policy; gfp.run.load_run keeps the (agent, params, config) tuple
    "Policy": "gfp.api",
    "resolve_config": "gfp.presets:resolve",
    "unstack": "gfp.engine.chunk",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, _, attr = _API[name].partition(":")
        return getattr(importlib.import_module(module), attr or name)
    raise AttributeError(f"module 'gfp' has no attribute {name!r}")
