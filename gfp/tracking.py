"""Experiment tracking beside a run directory's own files: Weights & Biases (`gfp train --wandb
[PROJECT]`, the `wandb` run setting in gfp/settings.py).

A `Tracker` is one W&B run for one run directory (one seed), started by `gfp.rundir.RunDir` and
fed by it alongside TensorBoard: the same scalars (metrics.csv's rows, eval.csv's figures under
`eval/`, online exploration episodes under `explore/`), config.json as the W&B config, the final
figures of summary.json as the W&B summary, and the `<policy>.mp4` videos of `--video`. Every
scalar is logged against gfp's own step (`step`), so figures that arrive out of order (an
exploration episode that ended before the last log row) keep their place.

The wandb client is optional (`pip install -e ".[wandb]"`): this module imports it only when a
tracker starts. WANDB_MODE=offline keeps the run in WANDB_DIR (default: ./wandb) for a later
`wandb sync`. A resumed run is a new W&B run with the same name and group, from the checkpoint's
step on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gfp.errors import ConfigError

INSTALL = 'pip install -e ".[wandb]"'


def wandb_client() -> Any:
    """The wandb module; ConfigError saying how to install it if it is missing."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            f"--wandb needs the Weights & Biases client, which is not installed: {INSTALL}"
        ) from None
    return wandb


class Tracker:
    """One run directory's W&B run (module docstring)."""

    def __init__(self, project: str, run_dir: Path, config: Mapping[str, Any]):
        wandb = wandb_client()
        self._wandb = wandb
        try:
            with warnings.catch_warnings():
                # wandb starts its service process with fork + exec: JAX's warning about forking
                # a multithreaded process concerns a fork that goes on running Python, not this
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                self.run = wandb.init(
                    project=project,
                    # the run directory names the run; its task and agent group a grid's seeds
                    name=str(run_dir),
                    group="/".join(str(config[k]) for k in ("task", "agent") if k in config)
                    or None,
                    config=dict(config),
                    # one W&B run per seed of a vmapped job, all in this process
                    reinit="create_new",
                )
        except Exception as e:  # wandb's own errors (no API key, no network, a bad setting)
            raise ConfigError(
                f"--wandb: Weights & Biases could not start a run for {run_dir} ({e}); log in "
                "with `wandb login`, or set WANDB_MODE=offline to keep the run on this machine"
            ) from None
        _open.add(self)
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, figures: Mapping[str, float]) -> None:
        """Scalars at gfp's `step`."""
        if figures:
            self.run.log({**figures, "step": step})

    def video(self, step: int, policy: str, path: Path) -> None:
        """A `--video` file, as `video/<policy>`."""
        self.run.log({f"video/{policy}": self._wandb.Video(str(path), format="mp4"), "step": step})

    def summary(self, figures: Mapping[str, Any]) -> None:
        """The run's final figures (summary.json) as its W&B summary."""
        self.run.summary.update(dict(figures))

    def close(self) -> None:
        """Finish the W&B run. With the last of gfp's runs, W&B's service is shut down, which
        waits until everything logged is written (offline: the run folder is complete; finishing
        a run alone may return before), unless the process has a W&B run of its own."""
        self.run.finish()
        _open.discard(self)
        if not _open and self._wandb.run is None:
            self._wandb.teardown()


_open: set[Tracker] = set()  # the trackers of this process that are not closed yet
