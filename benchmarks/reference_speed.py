"""gfp's FQL and GFP updates against the reference implementations', side by side in one process.

    .venv/bin/python benchmarks/reference_speed.py --fql /tmp/refs/fql --gfp-ref /tmp/refs/gfpref \
        [--sizes 2x256,4x512] [--k 8] [--reps 5] [--out FILE]

--fql: a checkout of the FQL authors' code (agents/fql.py); --gfp-ref: a checkout of the GFP
authors' code (agents/gfp.py, adapted from FQL's). Their agents are imported by path, never
installed. Every agent runs the same loop: K updates fused in one jitted `lax.scan`, each drawing
a minibatch of 256 rows uniformly from the same synthetic dataset on the device (obs 28, action
5, as cube-single), one seed, no vmap; the cases are timed interleaved A B B A ... and medians are
compared (gfp.bench.timing). Configurations: the references' defaults (FQL: alpha 10, M = 10;
GFP: the adapted FQL plus guidance, target_agg 'actor', eta 1e-3, normalized Q loss), and gfp's
agents with the same sizes. The references import `distrax` for their Gaussian actors, which FQL
and GFP never build: a stand-in module is put in its place when distrax is not installed. They
need `ml_collections` (FQL's get_config): pass its folder with --site if it is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OBS, ACT, BATCH = 28, 5, 256


def _distrax_stand_in() -> None:
    """A module named distrax whose names exist (the references subclass distrax.Transformed at
    import time) but refuse to be used: FQL's and GFP's networks never reach them."""
    if importlib.util.find_spec("distrax") is not None:
        return
    mod = types.ModuleType("distrax")

    class Unused:
        def __init__(self, *a: Any, **k: Any):
            raise RuntimeError("distrax stand-in: a Gaussian actor was built")

    for name in ("Transformed", "MultivariateNormalDiag", "Block", "Tanh", "Distribution"):
        setattr(mod, name, Unused)
    sys.modules["distrax"] = mod


def import_reference(checkout: Path, agent_file: str, tag: str) -> types.ModuleType:
    """agents/<agent_file> of a reference checkout as module `tag`, with that checkout's `utils`
    package (each checkout has its own, so earlier ones are dropped from sys.modules first)."""
    for name in [m for m in sys.modules if m == "utils" or m.startswith("utils.")]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    try:
        spec = importlib.util.spec_from_file_location(tag, checkout / "agents" / agent_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(checkout))
    return module


def reference_configs(fql_module: types.ModuleType, hidden: tuple[int, ...]) -> dict[str, dict]:
    """The references' default configurations at `hidden` (FQL's get_config; GFP's Hydra
    defaults, config/main.yaml and config/agent/gfp.yaml of its checkout)."""
    fql = dict(fql_module.get_config())
    fql |= {"actor_hidden_dims": hidden, "value_hidden_dims": hidden, "batch_size": BATCH}
    gfp = {k: v for k, v in fql.items() if k != "agent_name"} | {
        "agent_name": "gfp", "alpha": 1.0, "eta_temperature": 1e-3, "eta_temperature_online": None,
        "q_agg": "mean", "target_agg": "actor", "guidance_agg": "actor", "guidance_fn": "softmax",
        "normalize_q_loss": True, "target_use_next": False, "encode_time_dim": 64,
        "log_metrics": True,
    }  # fmt: skip
    return {"fql": fql, "gfp": gfp}


class RefScan:
    """K updates of a reference agent in one jitted lax.scan, minibatches gathered on the device
    (the same loop as gfp's `ScanOnly`)."""

    def __init__(self, agent_cls: Any, config: dict, data: dict, k: int):
        import jax
        import jax.numpy as jnp

        self.k, self.data = k, data
        n = data["actions"].shape[0]
        ex_obs, ex_act = data["observations"][:1], data["actions"][:1]
        # create() shares the target critic's buffers with the critic's: copies, so that the
        # state can be donated
        self.agent = jax.tree.map(jnp.array, agent_cls.create(0, ex_obs, ex_act, dict(config)))

        def chunk(agent, data):
            def body(agent, _):
                rng, batch_rng = jax.random.split(agent.rng)
                idx = jax.random.randint(batch_rng, (BATCH,), 0, n)
                batch = jax.tree.map(lambda x: x[idx], data)
                agent, info = agent.replace(rng=rng).update(batch)
                return agent, info

            return jax.lax.scan(body, agent, None, length=k)

        self.compiled = jax.jit(chunk, donate_argnums=0).lower(self.agent, data).compile()
        self()

    def __call__(self) -> None:
        import jax

        self.agent, info = self.compiled(self.agent, self.data)
        jax.block_until_ready((self.agent, info))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fql", type=Path, required=True, help="checkout of the FQL reference")
    ap.add_argument("--gfp-ref", type=Path, required=True, help="checkout of the GFP reference")
    ap.add_argument("--site", type=Path, help="extra folder for sys.path (ml_collections)")
    ap.add_argument("--sizes", default="2x256,4x512", help="hidden layers x width, comma-separated")
    ap.add_argument("--k", type=int, default=8, help="updates per timed call")
    ap.add_argument("--reps", type=int, default=5, help="interleaved timed calls per case")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    for path, flag in ((a.fql, "--fql"), (a.gfp_ref, "--gfp-ref")):
        if not (path / "agents").is_dir():
            sys.exit(f"gfp: error: {flag} {path}: not a reference checkout (no agents/ folder)")
    if a.site:
        sys.path.insert(1, str(a.site))
    _distrax_stand_in()

    import jax

    from gfp.bench.config import BenchConfig
    from gfp.bench.paths import ScanOnly, make_bench_agent, synthetic_transitions, to_device
    from gfp.bench.suite import machine, versions
    from gfp.bench.timing import interleave, summary

    ref_fql = import_reference(a.fql, "fql.py", "reference_fql")
    ref_gfp = import_reference(a.gfp_ref, "gfp.py", "reference_gfp")
    data = to_device(synthetic_transitions(1_000_000, OBS, ACT))
    results: dict[str, Any] = {"k": a.k, "reps": a.reps, "sizes": {}}
    for size in a.sizes.split(","):
        layers, width = (int(x) for x in size.split("x"))
        hidden = (width,) * layers
        cfg = BenchConfig(paper_hidden=hidden)
        refs = reference_configs(ref_fql, hidden)
        print(f"[reference_speed] compiling {size}", file=sys.stderr, flush=True)
        cases = {
            "gfp/fql": ScanOnly(make_bench_agent("fql", hidden, cfg), data, a.k),
            "ref/fql": RefScan(ref_fql.FQLAgent, refs["fql"], data, a.k),
            "gfp/gfp": ScanOnly(make_bench_agent("gfp", hidden, cfg), data, a.k),
            "ref/gfp": RefScan(ref_gfp.GFPAgent, refs["gfp"], data, a.k),
        }
        print(f"[reference_speed] timing {size}", file=sys.stderr, flush=True)
        w = interleave(cases, a.reps)
        s = {name: summary(ws, a.k) for name, ws in w.items()}
        results["sizes"][size] = {
            "ms_per_update": {n: v["wall_s"] * 1e3 for n, v in s.items()},
            "cpu_ms_per_update": {n: v["cpu_s"] * 1e3 for n, v in s.items()},
            "foreign_cores": {n: v["foreign_cores"] for n, v in s.items()},
            "loadavg1": {n: v["loadavg1"] for n, v in s.items()},
            "fql_gfp_over_ref": s["gfp/fql"]["wall_s"] / s["ref/fql"]["wall_s"],
            "gfp_gfp_over_ref": s["gfp/gfp"]["wall_s"] / s["ref/gfp"]["wall_s"],
        }
        r = results["sizes"][size]
        print(f"{size}: ms/update " + ", ".join(f"{n} {v:.2f}" for n, v in
              r["ms_per_update"].items()) + f"; gfp/ref FQL {r['fql_gfp_over_ref']:.3f}, "
              f"GFP {r['gfp_gfp_over_ref']:.3f}", flush=True)  # fmt: skip
    results |= {"machine": machine(), "versions": versions(), "loadavg": os.getloadavg(),
                "backend": jax.default_backend()}  # fmt: skip
    if a.out:
        a.out.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
