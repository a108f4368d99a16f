"""A readable summary of a dataset, printed by ``gfp data info TASK_OR_PATH``.

It loads the data exactly as training would (:func:`gfp.data.load.load_dataset`, so validation
and any reward shift apply) and reports sizes, dimensions, reward and mask statistics, episode
counts and the distribution of episode returns; for a LeRobot dataset also where its rewards came
from (`--reward`, gfp.data.rewards), its success rate and its terminal transitions. A folder of
OGBench shards (gfp.data.sharded, e.g. cube-quadruple-play-100m-v0/) is described from the
shards' headers alone, without reading any array: its shards, rows, dimensions and each shard's
size, every shard checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gfp.data import sharded
from gfp.data.load import Dataset, load_dataset
from gfp.data.scores import normalized_score, reference_scores
from gfp.errors import ConfigError, DataError
from gfp.tasks import FILE_SUFFIXES, parse_task

_MAX_DISTINCT = 10  # list reward values individually when there are at most this many
_HIST_BINS = 10
_HIST_WIDTH = 40


def episode_bounds(terminals: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of the episodes, split after each ``terminals == 1`` row."""
    ends = np.flatnonzero(np.asarray(terminals) > 0.5) + 1
    if len(terminals) and (not len(ends) or ends[-1] != len(terminals)):
        ends = np.append(ends, len(terminals))  # a trailing unterminated piece is an episode too
    starts = np.concatenate([[0], ends[:-1]])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def episode_returns(data: dict[str, np.ndarray]) -> np.ndarray:
    """Undiscounted return of every episode (sum of rewards between terminals), float64."""
    rewards = np.asarray(data["rewards"], dtype=np.float64)
    bounds = episode_bounds(data["terminals"])
    if not bounds:
        return np.zeros(0)
    cums = np.concatenate([[0.0], np.cumsum(rewards)])
    return np.array([cums[b] - cums[a] for a, b in bounds])


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _histogram(values: np.ndarray) -> list[str]:
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return [f"    all {len(values)} episodes: {_fmt(lo)}"]
    counts, edges = np.histogram(values, bins=_HIST_BINS, range=(lo, hi))
    top = counts.max()
    lines = []
    for i, c in enumerate(counts):
        bar = "#" * (round(_HIST_WIDTH * c / top) if c else 0)
        close = "]" if i == len(counts) - 1 else ")"
        lines.append(
            f"    [{_fmt(edges[i]):>10}, {_fmt(edges[i + 1]):>10}{close} {c:>7}  {bar}".rstrip()
        )
    return lines


def _split_report(
    title: str, data: dict[str, np.ndarray], score_task: str | None, shift: float
) -> list[str]:
    rewards = data["rewards"].astype(np.float64)
    masks = data["masks"]
    lines = [f"{title}:"]
    lines.append(f"  transitions: {len(rewards):,}")
    lines.append(
        f"  rewards: min {_fmt(rewards.min())}  mean {_fmt(rewards.mean())}  "
        f"max {_fmt(rewards.max())}"
    )
    values, counts = np.unique(rewards, return_counts=True)
    if len(values) <= _MAX_DISTINCT:
        shares = ", ".join(
            f"{_fmt(v)} ({100 * c / len(rewards):.1f}%)"
            for v, c in zip(values, counts, strict=True)
        )
        lines.append(f"  distinct rewards: {shares}")
    else:
        lines.append(f"  distinct rewards: {len(values):,} values")
    zero = int(np.sum(masks == 0))
    lines.append(
        f"  masks: {zero:,} zero ({100 * zero / len(masks):.2f}%, no bootstrap past these rows)"
    )
    bounds = episode_bounds(data["terminals"])
    lengths = np.array([b - a for a, b in bounds])
    lines.append(
        f"  episodes: {len(bounds):,} (length min {lengths.min()}  mean "
        f"{_fmt(lengths.mean())}  max {lengths.max()})"
    )
    returns = episode_returns(data)
    q = np.quantile(returns, [0.0, 0.25, 0.5, 0.75, 1.0])
    lines.append(
        f"  episode returns: min {_fmt(q[0])}  25% {_fmt(q[1])}  median {_fmt(q[2])}  "
        f"75% {_fmt(q[3])}  max {_fmt(q[4])}  mean {_fmt(returns.mean())}"
    )
    # Reference scores are in the environment's own reward units: undo the loader's shift.
    env_returns = returns - shift * lengths
    score = normalized_score(score_task, float(env_returns.mean())) if score_task else None
    if score is not None:
        lines.append(f"  mean episode return, D4RL-normalized (x100): {score:.1f}")
    lines.extend(_histogram(returns))
    return lines


_RULES = {
    "success": "-1 per step, 0 at the first success, the episode ends there",
    "episode-end": "-1 per step, 0 at each episode's last frame (its success)",
}


def _reward_lines(ds: Dataset) -> list[str]:
    """Where a LeRobot dataset's rewards came from (gfp.data.rewards: the loader's record), how
    many of its episodes reached success, and how its transitions end: terminal (mask 0) or cut
    off. The splits' reports below give the episodes' lengths and returns the rule produced."""
    record = ds.info.get("reward")
    if not record:
        return []
    column = f" ({record['column']})" if record.get("column") else ""
    if record["rule"] in _RULES:
        lines = [f"rewards: {record['rule']}{column}: {_RULES[record['rule']]}"]
    else:
        lines = [f"rewards: the column {record['column']}"]
    episodes = int(record["episodes"])
    if "succeeded" in record:
        won = int(record["succeeded"])
        lines.append(f"success: {won} of {episodes} episodes ({100 * won / max(episodes, 1):.1f}%)")
    for title, split in (("train", ds.train), ("val", ds.val)):
        if split is not None:
            ends = np.flatnonzero(np.asarray(split["terminals"]) > 0.5)
            terminal = int(np.count_nonzero(np.asarray(split["masks"]) == 0))
            cut = int(np.count_nonzero(np.asarray(split["masks"])[ends] != 0))
            lines.append(
                f"{title} terminals (mask 0): {terminal:,}    episodes cut off (mask 1 at "
                f"their end: no success, no next.done): {cut:,}"
            )
    return lines


def format_info(ds: Dataset) -> str:
    """The report for an already loaded dataset."""
    obs_shape = ds.train["observations"].shape[1:]
    val_size = f"{len(ds.val['observations']):,}" if ds.val is not None else "none"
    lines = [
        f"dataset: {ds.name}",
        f"source: {ds.source}    evaluation env: {ds.env_name or 'unknown'}",
        f"observation dim: {ds.obs_dim}"
        + (f" (shape {obs_shape})" if len(obs_shape) > 1 else "")
        + f"    action dim: {ds.act_dim}",
        f"train transitions: {ds.size:,}    val transitions: {val_size}",
        f"reward shift applied: {_fmt(ds.reward_shift)}",
        *_reward_lines(ds),
    ]
    # Scored as the task it was loaded as (the registry knows e.g. a Minari id's reference),
    # else as the environment the data names (a file of unknown origin has no reference).
    score_task = next((t for t in (ds.name, ds.env_name) if t and reference_scores(t)), None)
    for title, split in (("train", ds.train), ("val", ds.val)):
        if split is not None:
            lines.extend(_split_report(title, split, score_task, ds.reward_shift))
    return "\n".join(lines)


_USAGE = (
    "`gfp data info` takes a dataset file (.npz, .hdf5, .h5), a Minari dataset directory or a "
    "task name (`gfp data info TASK`, e.g. cube-single-noisy-singletask-task1-v0, with "
    "--dataset-dir DIR where its files are); to make an OGBench dataset: "
    "`gfp data generate NAME --out DIR`"
)


def _check_argument(text: str) -> None:
    """The arguments that are no dataset at all, each with the command that fits it: a path that
    does not exist, or a gfp run directory (the registry explains the other directories)."""
    path = Path(text).expanduser()
    if path.is_dir():
        configs = [c for c in (path / "config.json", *sorted(path.glob("seed*/config.json")))
                   if c.is_file()]  # fmt: skip
        if configs:
            try:
                task = json.loads(configs[0].read_text()).get("task")
            except (OSError, ValueError, AttributeError):
                task = None  # the suggestion then names no task
            data = f"gfp data info {task}" if isinstance(task, str) else "gfp data info TASK"
            raise ConfigError(
                f"{text} is a gfp run directory, not a dataset: `gfp eval {text}` evaluates "
                f"it, and `{data}` describes its data"
            )
    elif not path.exists() and (
        text.startswith(("/", "./", "../", "~")) or path.suffix in FILE_SUFFIXES
    ):
        raise DataError(f"{text}: no such file or directory; {_USAGE}")


def sharded_info(folder: Path) -> str:
    """The report of a folder of OGBench shards, from the ``.npy`` headers only (a 100M-row
    dataset is described in a moment); a broken shard is the one-line error naming it."""
    shard_set = sharded.find(folder)
    headers = sharded.read_headers(shard_set)
    first = headers[0].arrays
    total = sum(h.rows for h in headers)
    lines = [
        f"dataset: {folder} (OGBench shards of {shard_set.stem}; read from the headers only)",
        f"shards: {len(headers)}    train rows: {total:,} (steps; training drops each "
        "episode's last row)",
    ]
    if shard_set.val is not None:
        val = sharded.read_header(shard_set.val)
        sharded.check_header(val)
        lines.append(f"val rows: {val.rows:,} ({shard_set.val.name})")
    else:
        lines.append(f"val rows: none (no {sharded.val_name(shard_set.stem)})")
    obs, act = first["observations"][0][1:], first["actions"][0][1:]
    lines.append(
        f"observation dim: {int(np.prod(obs))}"
        + (f" (shape {obs})" if len(obs) > 1 else "")
        + f"    action dim: {int(np.prod(act))}"
    )
    keys = ", ".join(f"{k} {dtype} {shape[1:]}" for k, (shape, dtype) in sorted(first.items()))
    lines.append(f"keys (dtype, row shape): {keys}")
    lines.append("per shard:")
    lines.extend(f"  {h.path.name}  {h.rows:,} rows" for h in headers)
    return "\n".join(lines)


def dataset_info(
    task_or_path: str,
    dataset_dir: str | Path | None = None,
    *,
    obs_keys: str | None = None,
    reward: str | None = None,
) -> str:
    """Load ``task_or_path`` like training does and return the readable report. An argument
    that is no dataset is a one-line error suggesting the command that fits (a misspelled
    task name: the closest known ones). ``obs_keys`` and ``reward`` are training's (a LeRobot
    dataset's observation and rewards; gfp.data.load.load_dataset refuses them elsewhere): the
    report shows what the reward rule produced before any training."""
    from gfp.presets import close_tasks

    text = str(task_or_path).strip()
    _check_argument(text)
    if dataset_dir is None and sharded.is_sharded(Path(text).expanduser()):
        return sharded_info(Path(text).expanduser())
    try:
        return format_info(
            load_dataset(task_or_path, dataset_dir, obs_keys=obs_keys, reward=reward)
        )
    except DataError as e:
        # a plain name the registry does not know reads as a D4RL-style file name, which is
        # then not found: a misspelling of a known task is far more likely
        if parse_task(text).benchmark != "other" or not close_tasks(text):
            raise
        raise DataError(
            f"no dataset found for {text!r}, and it is no known task; did you mean "
            f"{' or '.join(close_tasks(text))}?"
        ) from e
