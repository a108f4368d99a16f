"""gfp: Guided Flow Policy (GFP, ICLR 2026) for offline RL, in JAX.

Layout (the package is a picture of the architecture):
    gfp.data      -> datasets: offline generation, loading, validation
    gfp.agents    -> one file per agent (GFP, FQL, ReBRAC, IQL, BC) on shared networks
    gfp.presets   -> the paper's per-task hyperparameters (a table) and the cpu preset
    gfp.train     -> the jitted training loop (K updates fused with lax.scan, seeds vmapped)
    gfp.evaluate  -> vectorised evaluation in OGBench / Gymnasium environments
    gfp.run       -> experiments: run directories, summaries; what the `gfp` command calls

Python API:
    data = gfp.load_dataset(task, dataset_dir)
    config, sources = gfp.resolve_config("gfp", task, preset="cpu")
    agent = gfp.make_agent("gfp", config, obs_dim=data.obs_dim, action_dim=data.act_dim)
    states = gfp.fit(agent, data, steps=20_000, seeds=[0])
    gfp.evaluate_policies(agent, gfp.unstack(states, 0).params, data.env_name, episodes=50)
"""

__version__ = "0.1.0"

# The API is imported lazily: `import gfp` (and the data-generation worker processes, which
# import gfp.data) should not pay for importing JAX and the agents.
_API = {
    "AGENTS": "gfp.agents",
    "make_agent": "gfp.agents",
    "Dataset": "gfp.data.load",
    "load_dataset": "gfp.data.load",
    "evaluate_policies": "gfp.run",
    "fit": "gfp.run",
    "load_run": "gfp.run",
    "resolve_config": "gfp.run",
    "unstack": "gfp.train",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gfp' has no attribute {name!r}")
