"""gfp: Guided Flow Policy (GFP, ICLR 2026) for offline RL, in JAX.

Layout (the package is a picture of the architecture):
    gfp.data      -> datasets: offline generation, loading, validation
    gfp.agents    -> one file per agent (GFP, FQL, ReBRAC, IQL, BC) on shared networks
    gfp.train     -> the jitted training loop (K updates fused with lax.scan)
    gfp.evaluate  -> vectorised evaluation in OGBench / Gymnasium environments
    gfp.cli       -> the `gfp` command
"""

__version__ = "0.1.0"
