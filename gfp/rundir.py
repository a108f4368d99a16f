"""A run directory: config.json, metrics.csv, eval.csv, TensorBoard events, summary.json, params.

Every whole-file write is atomic (temp file in the same directory, fsync, os.replace), so a kill
never leaves a half-written file; the CSV logs are appended row by row and flushed.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import numpy as np

from gfp.errors import ConfigError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


class CsvLog:
    """Append-only CSV with a fixed header taken from the first row."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open() as f:
                self.fields = next(csv.reader(f))

    def write(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            return list(csv.DictReader(f))


class RunDir:
    """Files of one training run (one seed)."""

    def __init__(self, path: str | Path, *, overwrite: bool = False, create: bool = True):
        self.path = Path(path)
        if create:
            if (self.path / "summary.json").exists() and not overwrite:
                raise ConfigError(
                    f"{self.path} holds a finished run; pass --overwrite to replace it or choose "
                    "another --out"
                )
            if overwrite:
                for name in ("metrics.csv", "eval.csv", "summary.json", "params.msgpack"):
                    (self.path / name).unlink(missing_ok=True)
            self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = CsvLog(self.path / "metrics.csv")
        self.evals = CsvLog(self.path / "eval.csv")
        self._tb = None

    @property
    def tensorboard(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.path / "tb"), flush_secs=30)
        return self._tb

    def log_metrics(self, step: int, row: Mapping[str, float]) -> None:
        self.metrics.write({"step": step, **row})
        for k, v in row.items():
            self.tensorboard.add_scalar(k, v, step)

    def log_eval(self, step: int, row: Mapping[str, float]) -> None:
        self.evals.write({"step": step, **row})
        for k, v in row.items():
            self.tensorboard.add_scalar(f"eval/{k}", v, step)
        self.tensorboard.flush()

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "config.json", config)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    def save_params(self, params: Any) -> None:
        atomic_write_bytes(self.path / "params.msgpack", flax.serialization.msgpack_serialize(params))

    def load_params(self) -> Any:
        return flax.serialization.msgpack_restore((self.path / "params.msgpack").read_bytes())

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
