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

from gfp.agents import AGENTS, make_agent
from gfp.data.load import Dataset, load_dataset
from gfp.run import evaluate_policies, fit, load_run, resolve_config
from gfp.train import unstack

__all__ = [
    "AGENTS",
    "Dataset",
    "evaluate_policies",
    "fit",
    "load_dataset",
    "load_run",
    "make_agent",
    "resolve_config",
    "unstack",
]
