"""Loader for LeRobot datasets in a local folder (source `lerobot`): `--task lerobot:PATH`, or a
folder holding `meta/info.json` given as the task. Format v3.0 (lerobot >= 0.4) and v2.1 (and
v2.0) (lerobot 0.1 - 0.3). Read with pyarrow (the parquet files) and PyAV (the mp4 files); neither
torch nor lerobot is imported. Never downloaded; nothing is written.

What is read
------------
* `meta/info.json`: the features, fps, `data_path` / `video_path` templates, the format version.
* the data parquet files: each chosen state feature, `action`, `episode_index`, `frame_index`,
  `timestamp`, `index`, and `next.reward` / `next.done` where present.
* each chosen camera (a `video` feature), decoded from its mp4 at each frame's timestamp (v3.0:
  the episode's `from_timestamp` in its file, from meta/episodes/, plus the frame's `timestamp`),
  the nearest decoded frame within `TOLERANCE_S` (lerobot's own default tolerance), as uint8
  RGB, at the stored resolution or the one asked for (`KEY@HxW` in the observation keys).
  lerobot's 'pyav' backend returns the same frames (tests/test_lerobot.py checks them).
* the action statistics, `meta/stats.json` (v3.0, v2.0) or the per-episode
  `meta/episodes_stats.jsonl` combined (v2.1): actions are normalised to [-1, 1] by their min and
  max per dimension, and the record of that map (`action_normalization`, with the inverse that
  turns the policy's actions back into robot units: `unnormalize_actions`) is returned in the
  loader's `info`.

Observations (`obs_keys`, "observation.state,observation.images.top" style): by default
`observation.state` if the dataset has it, else its one camera. Several state features are
concatenated; a camera is held in the frame form (gfp.data.frame_layout). State features and a
camera together make a combined observation: the camera's frame form plus the concatenated
state at each transition and at its next frame (`observations_state`, `next_observations_state`,
float32), which the networks see as {"pixels": the frame stack, "state": the current state}
(gfp.agents.base.combined_obs). Two cameras are not supported yet.

Transitions: within an episode, frame t's next observation is frame t + 1, its reward
`next.reward[t]`, its mask `1 - next.done[t]` (1 without `next.done`). An episode's last frame
has no next frame in the data: it is kept (as a terminal, mask 0, its own observation as the
unused next one) when `next.done` marks it, else dropped (the episode was cut off).

Rewards (`reward`, `--reward`; gfp.data.rewards): a column (default `next.reward`), or a sparse
success rule, OGBench's convention: `success` (from `next.success`, or `success:COLUMN`) or
`episode-end` (success at each episode's last frame): -1 per step, 0 at the first success, whose
transition is terminal (mask 0) and ends the episode (later frames dropped); an episode that never
succeeds keeps -1 and is cut off as above. A dataset without `next.reward` and no `reward` is
refused, naming the rules. The rule used is in `info["reward"]`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from gfp.data import rewards as R
from gfp.data import validate as V
from gfp.data.frame_layout import STATE_KEYS
from gfp.data.load import Loaded
from gfp.errors import ConfigError, DataError
from gfp.tasks import Task, lerobot_path

TOLERANCE_S = 1e-4  # lerobot's LeRobotDataset(tolerance_s=1e-4): a frame this close is "at" a time
STATE_KEY, ACTION_KEY, DONE_KEY = "observation.state", "action", "next.done"
REWARD_KEY, SUCCESS_KEY = R.REWARD_KEY, R.SUCCESS_KEY  # the rewards' columns: gfp.data.rewards
_INDEX_KEYS = ("episode_index", "frame_index", "timestamp", "index")
FORMATS = ("v2.0", "v2.1", "v3.0")


# ---- the dataset's metadata -----------------------------------------------------------------
class Meta:
    """meta/info.json of a LeRobot dataset folder, checked."""

    def __init__(self, root: Path):
        self.root = root
        self.info_path = root / "meta" / "info.json"
        if not root.is_dir():
            raise DataError(f"LeRobot dataset {root}: no such directory")
        if not self.info_path.is_file():
            raise DataError(f"{root}: no meta/info.json, so not a LeRobot dataset folder")
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{self.info_path}: cannot be read as JSON ({e})") from e
        self.file = str(self.info_path)
        for key in ("codebase_version", "features", "fps", "data_path"):
            if key not in info:
                V.fail(self.file, key, "is missing")
        self.version = str(info["codebase_version"])
        if self.version not in FORMATS:
            V.fail(
                self.file,
                "codebase_version",
                f"is {self.version!r}; gfp reads LeRobot formats {', '.join(FORMATS)}",
            )
        self.info = info
        self.features: dict[str, dict[str, Any]] = info["features"]
        self.fps = float(info["fps"])

    @property
    def v3(self) -> bool:
        return self.version == "v3.0"

    def feature(self, key: str, why: str) -> dict[str, Any]:
        if key not in self.features:
            V.fail(
                self.file,
                f"features.{key}",
                f"is missing ({why}); the dataset's features: {', '.join(self.features)}",
            )
        return self.features[key]

    def is_video(self, key: str) -> bool:
        return self.features[key].get("dtype") in ("video", "image")

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.features[key].get("shape", ()))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as JSON lines ({e})") from e


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: file not found (named by the dataset's meta/)")
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except Exception as e:  # noqa: BLE001  (arrow raises many types)
        raise DataError(f"{path}: cannot be read as parquet ({e})") from e


def episodes_table(meta: Meta) -> list[dict[str, Any]]:
    """One dict per episode, in order: `episode_index`, `length`, and (v3.0) where its data and
    videos are (`data/chunk_index`, ..., `videos/KEY/from_timestamp`)."""
    if meta.v3:
        files = sorted((meta.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{meta.root}: no meta/episodes/chunk-*/file-*.parquet (format v3.0)")
        rows: list[dict[str, Any]] = []
        for f in files:
            table = _read_parquet(f)
            keep = [c for c in table.column_names if not c.startswith("stats/")]
            rows.extend(table.select(keep).to_pylist())
    else:
        rows = _read_jsonl(meta.root / "meta" / "episodes.jsonl")
    return sorted(rows, key=lambda r: int(r["episode_index"]))


# ---- the parquet data -----------------------------------------------------------------------
def _data_files(meta: Meta, episodes: list[dict[str, Any]]) -> list[Path]:
    template = meta.info["data_path"]
    if meta.v3:
        pairs = dict.fromkeys(
            (int(e["data/chunk_index"]), int(e["data/file_index"])) for e in episodes
        )
        names = [template.format(chunk_index=c, file_index=f) for c, f in pairs]
    else:
        size = int(meta.info.get("chunks_size", 1000))
        names = [
            template.format(episode_chunk=int(e["episode_index"]) // size, **_ep(e))
            for e in episodes
        ]
    return [meta.root / n for n in names]


def _ep(e: Mapping[str, Any]) -> dict[str, int]:
    return {"episode_index": int(e["episode_index"])}


def _column(table: Any, key: str, shape: tuple[int, ...], file: str) -> np.ndarray:
    """A parquet column as an array of rows of `shape` (a (1,) feature is a scalar column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(key).combine_chunks()
    n = len(col)
    while pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        col = pc.list_flatten(col)
    values = col.to_numpy(zero_copy_only=False)
    width = int(np.prod(shape)) if shape else 1
    if values.size != n * width:
        V.fail(file, key, f"has {values.size // max(n, 1)} values per row, expected shape {shape}")
    return values.reshape(n, *shape) if shape and shape != (1,) else values.reshape(n)


def read_columns(root: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The non-video features `keys` of every frame (plus the index columns), in the dataset's
    order: what lerobot's dataset returns per item, as arrays (a (1,) feature as one value)."""
    meta = Meta(Path(root))
    return _read_columns(meta, episodes_table(meta), keys)


def _read_columns(
    meta: Meta, episodes: list[dict[str, Any]], keys: Sequence[str]
) -> dict[str, np.ndarray]:
    wanted = list(dict.fromkeys([*keys, *_INDEX_KEYS]))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
    files = []  # (file, its first row)
    for path in _data_files(meta, episodes):
        table = _read_parquet(path)
        files.append((path, sum(len(p) for p in parts[wanted[0]])))
        for key in wanted:
            if key not in table.column_names:
                V.fail(str(path), key, "is missing from the data (meta/info.json lists it)")
            shape = meta.shape(key) if key in meta.features else ()
            parts[key].append(_column(table, key, shape, str(path)))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    _check_order(out, files, meta)
    return out


def _check_order(cols: dict[str, np.ndarray], files: list[tuple[Path, int]], meta: Meta) -> None:
    """Rows grouped by episode, and frame_index 0, 1, 2, ... within each."""

    def fail(key: str, problem: str, row: int) -> NoReturn:
        path, first = next((p, r) for p, r in reversed(files) if r <= row)
        V.fail(str(path), key, problem, row - first)

    ep, frame = cols["episode_index"].astype(np.int64), cols["frame_index"].astype(np.int64)
    if len(ep) == 0:
        raise DataError(f"{meta.root}/data: has no frames")
    starts = np.flatnonzero(np.concatenate([[True], ep[1:] != ep[:-1]]))
    seen: set[int] = set()
    for s in starts.tolist():
        if int(ep[s]) in seen:
            fail("episode_index", f"returns to episode {int(ep[s])} (rows not grouped)", s)
        seen.add(int(ep[s]))
    expected = np.arange(len(ep)) - np.repeat(starts, np.diff(np.append(starts, len(ep))))
    bad = np.flatnonzero(frame != expected)
    if bad.size:
        row = int(bad[0])
        fail(
            "frame_index",
            f"is {int(frame[row])}, expected {int(expected[row])} (frame_index must count 0, 1, "
            f"2, ... within each episode; episode {int(ep[row])})",
            row,
        )


# ---- the videos -----------------------------------------------------------------------------
def read_frames(root: str | Path, key: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of camera `key`, decoded at its timestamp, (N, H, W, 3) uint8 in the
    dataset's order (what lerobot's dataset returns per item, as uint8 HWC)."""
    meta = Meta(Path(root))
    episodes = episodes_table(meta)
    return _read_frames(meta, episodes, _read_columns(meta, episodes, ()), key, size)


def _read_frames(
    meta: Meta,
    episodes: list[dict[str, Any]],
    cols: dict[str, np.ndarray],
    key: str,
    size: tuple[int, int] | None,
) -> np.ndarray:
    if "video_path" not in meta.info or not meta.info["video_path"]:
        V.fail(meta.file, "video_path", f"is missing (feature {key!r} is a video)")
    if meta.features[key].get("dtype") != "video":
        V.fail(meta.file, f"features.{key}", "is stored as images, not videos: not supported yet")
    height, width, _ = _hwc(meta, key)
    h, w = size or (height, width)
    out = np.empty((len(cols["index"]), h, w, 3), np.uint8)
    by_episode = {int(e["episode_index"]): e for e in episodes}
    ep_col = cols["episode_index"].astype(np.int64)
    # (video file) -> [(query time, row)], each file decoded once
    queries: dict[Path, list[tuple[float, int]]] = {}
    for episode in np.unique(ep_col):
        if int(episode) not in by_episode:
            V.fail(meta.file, "episode_index", f"{int(episode)} is not in meta/episodes")
        path, offset = _video_of(meta, by_episode[int(episode)], key)
        rows = np.flatnonzero(ep_col == episode)
        times = [offset + float(t) for t in cols["timestamp"][rows]]
        queries.setdefault(path, []).extend(zip(times, rows.tolist(), strict=True))
    for path, wanted in queries.items():
        _decode_at(path, sorted(wanted), out, (h, w) if size else None)
    return out


def _hwc(meta: Meta, key: str) -> tuple[int, int, int]:
    ft = meta.features[key]
    shape = meta.shape(key)
    names = ft.get("names") or ["height", "width", "channels"]
    if len(shape) != 3:
        V.fail(meta.file, f"features.{key}.shape", f"is {list(shape)}, not an image's 3 sizes")
    dims = dict(zip(names, shape, strict=False))
    if {"height", "width"} <= dims.keys():
        return int(dims["height"]), int(dims["width"]), int(dims.get("channels", 3))
    return shape  # type: ignore[return-value]


def _video_of(meta: Meta, episode: Mapping[str, Any], key: str) -> tuple[Path, float]:
    """An episode's video file of camera `key` and the time its frame 0 is at in that file."""
    template = meta.info["video_path"]
    if meta.v3:
        prefix = f"videos/{key}/"
        for part in ("chunk_index", "file_index", "from_timestamp"):
            if prefix + part not in episode:
                V.fail(
                    f"{meta.root}/meta/episodes",
                    prefix + part,
                    f"is missing (episode {episode['episode_index']})",
                )
        name = template.format(
            video_key=key,
            chunk_index=int(episode[prefix + "chunk_index"]),
            file_index=int(episode[prefix + "file_index"]),
        )
        return meta.root / name, float(episode[prefix + "from_timestamp"])
    chunk = int(episode["episode_index"]) // int(meta.info.get("chunks_size", 1000))
    name = template.format(episode_chunk=chunk, video_key=key, **_ep(episode))
    return meta.root / name, 0.0


def _decode_at(
    path: Path,
    wanted: list[tuple[float, int]],
    out: np.ndarray,
    size: tuple[int, int] | None,
) -> None:
    """Decode `path` once, writing into out[row] the frame nearest to each (time, row) of
    `wanted` (sorted by time), within TOLERANCE_S, as lerobot's decoders choose them."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: file not found (named by the dataset's meta/)")
    kw = {"format": "rgb24"}
    if size is not None:
        kw.update(height=size[0], width=size[1])

    def put(frame: Any, row: int) -> None:
        image = frame.to_ndarray(**kw)
        if image.shape != out.shape[1:]:
            V.fail(str(path), "frames", f"are {image.shape}, meta/info.json says {out.shape[1:]}")
        out[row] = image

    i, prev, prev_t, last_t = 0, None, -np.inf, None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # the decoded frames are the same; only faster
            for frame in container.decode(stream):
                t = float(frame.pts * frame.time_base)
                last_t = t
                while i < len(wanted) and wanted[i][0] <= t:
                    q, row = wanted[i]
                    best, best_t = (prev, prev_t) if q - prev_t <= t - q else (frame, t)
                    _check_near(path, q, best_t, row)
                    put(best, row)
                    i += 1
                prev, prev_t = frame, t
                if i == len(wanted):
                    break
    except av.FFmpegError as e:
        raise DataError(f"{path}: cannot be decoded ({e})") from e
    for q, row in wanted[i:]:  # times after the last frame: the last frame, if near enough
        if prev is None or q - prev_t >= TOLERANCE_S:
            ends = f"its last frame is at {last_t:.4f} s" if last_t is not None else "no frames"
            V.fail(
                str(path),
                "timestamp",
                f"{q:.4f} s has no frame: the video is shorter than its timestamps ({ends})",
                row,
            )
        put(prev, row)


def _check_near(path: Path, query: float, found: float, row: int) -> None:
    if abs(found - query) >= TOLERANCE_S:
        V.fail(
            str(path),
            "timestamp",
            f"{query:.4f} s has no frame within {TOLERANCE_S} s (nearest at {found:.4f} s)",
            row,
        )


# ---- action normalisation -------------------------------------------------------------------
def action_stats(meta: Meta) -> tuple[np.ndarray, np.ndarray, str]:
    """The actions' min and max per dimension from the dataset's stats, and the file read."""
    stats = meta.root / "meta" / "stats.json"
    if stats.is_file():
        try:
            entry = json.loads(stats.read_text()).get(ACTION_KEY)
        except (OSError, ValueError) as e:
            raise DataError(f"{stats}: cannot be read as JSON ({e})") from e
        if not entry or "min" not in entry or "max" not in entry:
            V.fail(str(stats), f"{ACTION_KEY}.min/max", "is missing")
        lo, hi = entry["min"], entry["max"]
        where = str(stats)
    else:
        per_episode = meta.root / "meta" / "episodes_stats.jsonl"
        if not per_episode.is_file():
            raise DataError(
                f"{meta.root}: no meta/stats.json or meta/episodes_stats.jsonl, so no action "
                "statistics to normalise the actions with"
            )
        entries = [r.get("stats", {}).get(ACTION_KEY) for r in _read_jsonl(per_episode)]
        if not entries or any(not e or "min" not in e or "max" not in e for e in entries):
            V.fail(str(per_episode), f"stats.{ACTION_KEY}.min/max", "is missing for an episode")
        lo = np.min([e["min"] for e in entries], axis=0)
        hi = np.max([e["max"] for e in entries], axis=0)
        where = str(per_episode)
    lo, hi = np.asarray(lo, np.float64).reshape(-1), np.asarray(hi, np.float64).reshape(-1)
    if lo.shape != hi.shape or not np.all(hi >= lo):
        V.fail(where, f"{ACTION_KEY}.min/max", f"is not a range ({lo.tolist()}, {hi.tolist()})")
    return lo, hi, where


def normalization_record(lo: np.ndarray, hi: np.ndarray, stats: str) -> dict[str, Any]:
    """What is stored with a run: actions a = 2 (x - min) / (max - min) - 1 per dimension (0 where
    max == min); the inverse `unnormalize_actions` gives robot units back."""
    return {
        "key": ACTION_KEY,
        "kind": "min_max",
        "min": [float(v) for v in lo],
        "max": [float(v) for v in hi],
        "stats": stats,  # the file they came from, in the dataset's folder
    }


def normalize_actions(actions: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """Robot units -> [-1, 1] (the loader's map)."""
    lo, hi = np.asarray(record["min"]), np.asarray(record["max"])
    span = hi - lo
    scaled = 2.0 * (np.asarray(actions, np.float64) - lo) / np.where(span > 0, span, 1.0) - 1.0
    return np.where(span > 0, scaled, 0.0).astype(np.float32)


def unnormalize_actions(actions: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """[-1, 1] -> robot units: what an exported policy's action means on the robot."""
    lo, hi = np.asarray(record["min"]), np.asarray(record["max"])
    return ((np.asarray(actions, np.float64) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)


# ---- observation keys -----------------------------------------------------------------------
def parse_obs_keys(
    text: str | Sequence[str] | None, meta: Meta
) -> tuple[list[str], str | None, tuple[int, int] | None]:
    """(state keys, camera key, camera size) of `--obs-keys` ("KEY,KEY", a camera as KEY or
    KEY@HxW for a resolution other than the stored one; state keys and a camera together: a
    combined observation); None: the default (module docstring)."""
    if text is None:
        if STATE_KEY in meta.features:
            return [STATE_KEY], None, None
        cameras = [k for k in meta.features if meta.is_video(k)]
        if len(cameras) == 1:
            return [], cameras[0], None
        raise ConfigError(
            f"{meta.root}: no {STATE_KEY!r} and {len(cameras)} cameras; choose the observation "
            f"with --obs-keys (features: {', '.join(meta.features)})"
        )
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    if not any(items):
        raise ConfigError("--obs-keys is empty: name the features, e.g. observation.state")
    states, cameras = [], []
    for item in filter(None, items):
        key, at, res = item.partition("@")
        meta.feature(key, "named by --obs-keys")
        if meta.is_video(key):
            cameras.append((key, _resolution(res, item) if at else None))
        elif at:
            raise ConfigError(f"--obs-keys {item!r}: only a camera takes a resolution (@HxW)")
        else:
            states.append(key)
    if len(cameras) > 1:
        raise ConfigError(
            f"--obs-keys {','.join(items)}: one camera at a time is supported for now"
        )
    if cameras:  # with states too: a combined observation (module docstring)
        return states, cameras[0][0], cameras[0][1]
    return states, None, None


def _resolution(text: str, item: str) -> tuple[int, int]:
    h, x, w = text.lower().partition("x")
    if not (x and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
        raise ConfigError(f"--obs-keys {item!r}: the resolution must be HxW, e.g. 64x64")
    return int(h), int(w)


# ---- the loader -----------------------------------------------------------------------------
def load(
    task: Task,
    dataset_dir: Path | None,
    *,
    validation: bool,
    antmaze: bool,
    obs_keys: str | Sequence[str] | None = None,
    reward: str | None = None,
) -> Loaded:
    """A LeRobot dataset folder as transitions (module docstring); no validation split."""
    root = lerobot_path(task, dataset_dir)
    meta = Meta(root)
    states, camera, size = parse_obs_keys(obs_keys, meta)
    meta.feature(ACTION_KEY, "the actions")
    rule = R.parse_reward(reward, meta.features, meta.file, f"LeRobot dataset {root}")
    for key in states:
        if len(meta.shape(key)) > 1:
            V.fail(meta.file, f"features.{key}.shape", f"is {list(meta.shape(key))}, not a vector")
    has_done = DONE_KEY in meta.features
    keys = [*states, ACTION_KEY, *filter(None, [rule.column]), *([DONE_KEY] if has_done else [])]
    episodes = episodes_table(meta)
    cols = _read_columns(meta, episodes, keys)
    n = len(cols["index"])
    label = f"LeRobot dataset {root}"

    lo, hi, stats = action_stats(meta)
    raw_actions = np.asarray(cols[ACTION_KEY], np.float64).reshape(n, -1)
    if raw_actions.shape[1] != lo.size:
        V.fail(
            stats, f"{ACTION_KEY}.min", f"has {lo.size} values for {raw_actions.shape[1]}-d actions"
        )
    span = np.maximum(hi - lo, 1e-12)
    outside = ((raw_actions < lo - 1e-6 * span) | (raw_actions > hi + 1e-6 * span)).any(axis=1)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        V.fail(
            stats, f"{ACTION_KEY}.min/max", "does not bound the data's actions (stale stats?)", row
        )
    record = normalization_record(lo, hi, str(Path(stats).relative_to(root)))
    actions = normalize_actions(raw_actions, record)

    # Transition rows: every frame but each episode's last, which is kept when next.done marks it.
    ep = cols["episode_index"].astype(np.int64)
    last = np.append(ep[1:] != ep[:-1], True)
    done = cols[DONE_KEY].astype(bool).reshape(n) if has_done else np.zeros(n, bool)
    labels = R.label(rule, last, done, cols.get(rule.column or ""), meta.file)  # gfp.data.rewards
    rows = np.flatnonzero(labels.keep)
    if rows.size < V.MIN_TRANSITIONS:
        raise DataError(f"{label}: has {rows.size} transitions (an episode's last frame has none)")
    ends = np.append(ep[rows][1:] != ep[rows][:-1], True)  # the last transition of an episode
    # next frame: the following one, or (a kept last frame) the frame itself
    nxt = np.where(last[rows], rows, rows + 1)
    train: dict[str, np.ndarray] = {
        "actions": actions[rows],
        "rewards": labels.rewards[rows],
        "masks": labels.masks[rows],
        "terminals": ends.astype(np.float32),
    }
    state = None
    if states:
        state = np.concatenate(
            [np.asarray(cols[k], np.float32).reshape(n, -1) for k in states], axis=1
        )
    if camera is None:
        train["observations"], train["next_observations"] = state[rows], state[nxt]
    else:
        if state is not None:  # validate_transitions checks a frame form's frames, not this
            V.check_finite(label, ",".join(states), state)
        frames = _read_frames(meta, episodes, cols, camera, size)
        train.update(_frame_form(frames, rows, nxt, ends, state))
    info = {
        "lerobot": {
            "root": str(root),
            "codebase_version": meta.version,
            "fps": meta.fps,
            "obs_keys": [*states, *([camera] if camera else [])],
            "image_size": list(size or _hwc(meta, camera)[:2]) if camera else None,
            "episodes": len(np.unique(ep)),
            "frames": n,
        },
        "action_normalization": record,
        "reward": labels.info,
    }
    return Loaded(train, None, "lerobot", None, info)


def _frame_form(
    frames: np.ndarray,
    rows: np.ndarray,
    nxt: np.ndarray,
    ends: np.ndarray,
    state: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Pixel transitions in the frame form (gfp.data.frame_layout): observations = the frames
    of `rows`, each episode's final next frame in `tail_frames`; with the `state` of every frame,
    also its rows at `rows` and at their next frames (`STATE_KEYS`, a combined observation)."""
    n = len(rows)
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    episode = np.cumsum(np.concatenate([[0], ends[:-1]]))
    tails = frames[nxt[ends]]
    frame_next = np.where(ends, n + episode, np.arange(1, n + 1))
    out = {
        "observations": frames[rows],
        "tail_frames": np.ascontiguousarray(tails),
        "frame_start": starts[episode].astype(np.int32),
        "frame_next": frame_next.astype(np.int32),
    }
    if state is not None:
        out.update(zip(STATE_KEYS, (state[rows], state[nxt]), strict=True))
    return out
