"""Rewards for LeRobot datasets (`--reward`, gfp.settings.RunSettings.reward): a column, or a
sparse success rule. NumPy only; gfp.data.lerobot_loader applies it to the frames it read.

The specification
-----------------
* `COLUMN`: the rewards are that feature of the dataset (any scalar feature, e.g. `next.reward`).
  Masks and kept frames follow the loader's rule: frame t's mask is `1 - next.done[t]`; an
  episode's last frame (no next frame in the data) is kept, as a terminal, when `next.done` marks
  it, else dropped (the episode was cut off).
* `success` (from `next.success`) or `success:COLUMN` (another boolean / 0-1 column): OGBench's
  sparse convention. `COLUMN[t]` says the transition from frame t reaches success; reward -1 per
  step and 0 at the episode's first success, whose transition is terminal (mask 0, the episode's
  last transition) and ends the episode: the frames after it are dropped. An episode whose
  success never fires keeps -1 on every row and is cut off as a column's would be: no terminal
  (mask 0) unless `next.done` marks its last frame, which is otherwise dropped.
* `episode-end`: the same, with success at each episode's last frame (every episode is a
  success, of its length): every frame is kept, the last one terminal.

Unset: `next.reward` when the dataset has it; a dataset without it is refused with the rules to
choose from. What was used goes in the loader's `info["reward"]` (config.json's dataset record):
the specification given, the rule, the column read, the episodes and how many reached success.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gfp.data import validate as V
from gfp.errors import ConfigError, DataError

REWARD_KEY, SUCCESS_KEY = "next.reward", "next.success"
SUCCESS, EPISODE_END, COLUMN = "success", "episode-end", "column"
RULES = (SUCCESS, EPISODE_END)
_FORMS = "a scalar feature (e.g. next.reward), success, success:COLUMN or episode-end"


@dataclass(frozen=True)
class RewardRule:
    """A parsed `--reward`: `rule` is 'column', 'success' or 'episode-end'; `column` the
    feature read (the rewards, or the success flags; None for 'episode-end')."""

    spec: str | None  # as given; None: the default
    rule: str
    column: str | None


class Labels(NamedTuple):
    """Per frame of the dataset (in its order): the reward and mask of the transition from that
    frame, and whether the frame is a transition at all (`keep`)."""

    rewards: np.ndarray  # float32
    masks: np.ndarray  # float32, 0 = terminal (no bootstrap)
    keep: np.ndarray  # bool
    info: dict[str, Any]  # the record for Dataset.info["reward"]


def parse_reward(
    spec: str | None, features: Mapping[str, Mapping[str, Any]], info_file: str, dataset: str
) -> RewardRule:
    """`spec` checked against the dataset's features (meta/info.json, `info_file`); `dataset`
    names it in the refusal of a dataset without rewards."""
    if spec is None:
        if REWARD_KEY not in features:
            raise DataError(
                f"{dataset} has no {REWARD_KEY} feature, so no rewards: choose them with --reward "
                f"success (sparse: -1 per step, 0 at the first {SUCCESS_KEY}; success:COLUMN for "
                "another flag) or --reward episode-end (success at each episode's last frame), "
                "or --reward COLUMN"
            )
        return RewardRule(None, COLUMN, _scalar(REWARD_KEY, features, info_file, "the rewards"))
    text = spec.strip()
    name, colon, column = text.partition(":")
    if not text:
        raise ConfigError(f"--reward is empty: give {_FORMS}")
    if name == SUCCESS:
        if colon and not column.strip():
            raise ConfigError(
                f"--reward {spec!r}: name the success column, e.g. success:{SUCCESS_KEY}"
            )
        key = column.strip() or SUCCESS_KEY
        _scalar(key, features, info_file, f"the success flags of --reward {text}")
        dtype = str(features[key].get("dtype"))
        if dtype != "bool" and np.dtype(dtype).kind not in "iuf":
            V.fail(info_file, f"features.{key}.dtype", f"is {dtype!r}, not a boolean or 0/1 flag")
        return RewardRule(text, SUCCESS, key)
    if name == EPISODE_END:
        if colon:
            raise ConfigError(f"--reward {spec!r}: episode-end takes no column")
        return RewardRule(text, EPISODE_END, None)
    return RewardRule(text, COLUMN, _scalar(text, features, info_file, "named by --reward"))


def _scalar(key: str, features: Mapping[str, Mapping[str, Any]], info_file: str, why: str) -> str:
    """`key` if it is a scalar numeric feature, else the one-line error naming the field."""
    if key not in features:
        V.fail(
            info_file,
            f"features.{key}",
            f"is missing ({why}; --reward takes {_FORMS}); the dataset's features: "
            f"{', '.join(features)}",
        )
    ft = features[key]
    shape = [int(d) for d in ft.get("shape", ())]
    if shape not in ([], [1]):
        V.fail(info_file, f"features.{key}.shape", f"is {shape}, not a scalar ({why})")
    try:
        kind = np.dtype(str(ft.get("dtype"))).kind
    except TypeError:
        kind = "O"
    if kind not in "biuf":
        V.fail(info_file, f"features.{key}.dtype", f"is {ft.get('dtype')!r}, not a number ({why})")
    return key


def label(
    rule: RewardRule,
    last: np.ndarray,
    done: np.ndarray,
    values: np.ndarray | None,
    info_file: str,
) -> Labels:
    """Rewards, masks and kept frames of every frame (module docstring). `last` marks each
    episode's last frame, `done` next.done (all False without it), `values` the rule's column."""
    n = len(last)
    record: dict[str, Any] = {"spec": rule.spec, "rule": rule.rule, "column": rule.column}
    record["episodes"] = int(np.count_nonzero(last))
    if rule.rule == COLUMN:
        assert values is not None
        rewards = np.asarray(values, np.float32).reshape(n)
        return Labels(rewards, (~done).astype(np.float32), ~last | done, record)
    if rule.rule == EPISODE_END:
        success = last
    else:
        assert values is not None
        success = _flags(np.asarray(values).reshape(n), rule.column or "", info_file)
    # successes before frame t in its episode: the global running count less the count at the
    # episode's start
    before = np.cumsum(success) - success
    starts = np.concatenate([[True], last[:-1]])
    before = before - np.maximum.accumulate(np.where(starts, before, 0))
    first = success & (before == 0)  # the episode's first success: its terminal transition
    after = before > 0  # frames after it: the episode ended there
    keep = (~last | done | first) & ~after
    rewards = np.where(first, 0.0, -1.0).astype(np.float32)
    masks = (~(done | first)).astype(np.float32)
    record["succeeded"] = int(np.count_nonzero(first))
    return Labels(rewards, masks, keep, record)


def _flags(values: np.ndarray, key: str, info_file: str) -> np.ndarray:
    """A success column as booleans; one that holds other values than 0/1 is refused."""
    if values.dtype == bool:
        return values
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        row = int(bad[0])
        V.fail(
            info_file,
            f"features.{key}",
            f"is not a success flag: it holds {values[row].item()!r} (a success column holds "
            "true/false or 0/1)",
            row,  # the frame's row in the dataset's order
        )
    return values == 1
