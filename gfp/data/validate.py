"""Checks that a dataset is well formed before any training sees it.

Every loader in :mod:`gfp.data.load` runs these checks on each load: first on the raw arrays
read from the file (OGBench ``.npz``, D4RL-style HDF5 / ``.npz``, flattened Minari episodes),
then on the final transition dictionary handed to the training loop. A problem raises exactly
one :class:`gfp.errors.DataError` whose message names the file, the key and, where it makes
sense, the first offending row index, e.g.::

    /data/pen-human-v1.hdf5: key 'actions' has a value outside [-1, 1] (1.7) at index 4113

The checks only read the arrays; nothing is ever written back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import NoReturn

import numpy as np

from gfp.data.frame_layout import is_frame_form
from gfp.errors import DataError

# Actions are expected in [-1, 1]; a little slack absorbs float round-off in stored files
# (FQL clips to 1 - 1e-5 anyway) while still catching unnormalised action spaces.
ACTION_TOLERANCE = 1e-3

# Two observations closer than this (L2) are "the same state". FQL's d4rl_utils uses the same
# threshold to detect episode boundaries from next_observations[t] != observations[t + 1].
CONTINUITY_TOLERANCE = 1e-6

# A split needs at least this many transitions. A single one is a truncated or wrong file (one
# step of one episode), not something to train on or validate with.
MIN_TRANSITIONS = 2

# The keys the training loop reads; see gfp.data.load.Dataset.
TRANSITION_KEYS = (
    "observations",
    "actions",
    "rewards",
    "masks",
    "terminals",
    "next_observations",
)

# The frame form of pixel transitions (gfp.data.frame_layout): next frames indexed, not stored.
_ROW_KEYS = tuple(k for k in TRANSITION_KEYS if k != "next_observations")
_FRAME_FORM_KEYS = (*_ROW_KEYS, "tail_frames", "frame_start", "frame_next")

# numpy dtype kinds: b bool, i signed int, u unsigned int, f float.
_FLOAT = frozenset("f")
_NUMBER = frozenset("fiu")
_FLAG = frozenset("biuf")  # 0/1 flags may be stored as bool, int or float; values are checked


def fail(file: str, key: str, problem: str, index: int | None = None) -> NoReturn:
    """Raise the one DataError format used everywhere: file, key, problem, first bad index."""
    where = f" at index {index}" if index is not None else ""
    raise DataError(f"{file}: key '{key}' {problem}{where}")


def check_present(data: Mapping[str, object], keys: Iterable[str], file: str) -> None:
    """Every key in ``keys`` must be in ``data``."""
    for key in keys:
        if key not in data:
            have = ", ".join(sorted(map(str, data))) or "nothing"
            fail(file, key, f"is missing (the file has: {have})")


def check_array(
    file: str,
    key: str,
    arr: object,
    kinds: frozenset[str],
    ranks: tuple[int, ...],
    what: str,
) -> None:
    """``arr`` must be a numpy array of one of the dtype ``kinds`` with a rank in ``ranks``, and
    rows of at least one value (a zero-width observation or action has nothing to learn from)."""
    if not isinstance(arr, np.ndarray):
        fail(file, key, f"is a {type(arr).__name__}, expected a numpy array of {what}")
    if arr.dtype.kind not in kinds:
        fail(file, key, f"has dtype {arr.dtype}, expected {what}")
    if arr.ndim not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        fail(file, key, f"has rank {arr.ndim} (shape {arr.shape}), expected rank {expected}")
    if 0 in arr.shape[1:]:
        fail(file, key, f"has zero width (shape {arr.shape}): each row needs at least one value")


def check_exact_dtype(file: str, key: str, arr: np.ndarray, dtypes: tuple[str, ...]) -> None:
    """``arr.dtype`` must be exactly one of ``dtypes`` (used on the final float32 dictionary)."""
    if arr.dtype.name not in dtypes:
        fail(file, key, f"has dtype {arr.dtype}, expected {' or '.join(dtypes)}")


def check_lengths(data: Mapping[str, np.ndarray], keys: Iterable[str], file: str) -> int:
    """All arrays must have the same number of rows; return it.

    The reference length is the most common one, so the key named in the error is the odd one
    out even when it is ``observations``. The index is the first row that one key lacks (or has
    in excess).
    """
    keys = [k for k in keys if k in data]
    lengths = {k: len(data[k]) for k in keys}
    common, _ = Counter(lengths.values()).most_common(1)[0]
    for key in keys:
        if lengths[key] != common:
            fail(
                file,
                key,
                f"has {lengths[key]} rows but the other arrays have {common}",
                min(lengths[key], common),
            )
    if common == 0:
        fail(file, keys[0], "is empty (0 rows)")
    return common


def _first_row(bad: np.ndarray) -> int | None:
    """Index of the first row with any True entry in a boolean array of shape (N, ...)."""
    if bad.ndim > 1:
        bad = bad.reshape(len(bad), -1).any(axis=1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def check_finite(file: str, key: str, arr: np.ndarray) -> None:
    """No NaN or inf anywhere (only meaningful for float arrays)."""
    if arr.dtype.kind != "f":
        return
    row = _first_row(~np.isfinite(arr))
    if row is not None:
        value = arr[row][~np.isfinite(arr[row])].flat[0] if arr.ndim > 1 else arr[row]
        fail(file, key, f"contains a non-finite value ({value})", row)


def check_action_range(
    file: str, key: str, arr: np.ndarray, tolerance: float = ACTION_TOLERANCE
) -> None:
    """Actions must lie in [-1, 1] up to ``tolerance``: the agents squash to that box."""
    bad = np.abs(arr) > 1.0 + tolerance
    row = _first_row(bad)
    if row is not None:
        value = arr[row][bad[row]].flat[0] if arr.ndim > 1 else arr[row]
        fail(file, key, f"has a value outside [-1, 1] ({value})", row)


def check_binary(file: str, key: str, arr: np.ndarray) -> None:
    """A flag array (terminals, timeouts, masks) must hold only 0 and 1."""
    if arr.dtype.kind == "b":
        return
    row = _first_row((arr != 0) & (arr != 1))
    if row is not None:
        fail(file, key, f"must contain only 0/1 but has {arr[row]}", row)


def check_last_is_terminal(file: str, key: str, terminals: np.ndarray) -> None:
    """The last row must close an episode, otherwise the final episode is cut off."""
    if not terminals[-1]:
        fail(
            file,
            key,
            "is 0 on the last row, so the last episode never ends (truncated or corrupt file?)",
            len(terminals) - 1,
        )


def discontinuities(observations: np.ndarray, next_observations: np.ndarray) -> np.ndarray:
    """``out[t]`` is True when ``next_observations[t]`` is not ``observations[t + 1]``.

    Length N - 1. Rows that are bitwise equal (the common case) skip the distance computation;
    the rest are compared in float64 against :data:`CONTINUITY_TOLERANCE`.
    """
    n = len(observations)
    width = int(np.prod(observations.shape[1:]))  # explicit: reshape(0, -1) is ambiguous
    a = next_observations[:-1].reshape(max(n - 1, 0), width)
    b = observations[1:].reshape(max(n - 1, 0), width)
    out = np.zeros(max(n - 1, 0), bool)
    step = max(1, 2**24 // max(width, 1))  # blocks: a bounded bool temporary, not N x width
    for lo in range(0, len(out), step):
        out[lo : lo + step] = (a[lo : lo + step] != b[lo : lo + step]).any(axis=1)
    rows = np.flatnonzero(out)
    for start in range(0, len(rows), 65536):  # chunked: bounded float64 temporaries
        r = rows[start : start + 65536]
        dist = np.linalg.norm(a[r].astype(np.float64) - b[r].astype(np.float64), axis=1)
        out[r] = dist > CONTINUITY_TOLERANCE
    return out


def check_next_observation_shape(data: Mapping[str, np.ndarray], file: str) -> None:
    """next_observations must have the same per-row shape as observations."""
    if data["next_observations"].shape[1:] != data["observations"].shape[1:]:
        fail(
            file,
            "next_observations",
            f"has per-row shape {data['next_observations'].shape[1:]} but 'observations' "
            f"has {data['observations'].shape[1:]}",
        )


def validate_transitions(data: Mapping[str, np.ndarray], file: str) -> None:
    """Check a final transition dictionary (the form ``Dataset.train`` / ``Dataset.val`` have).

    Required: the six :data:`TRANSITION_KEYS`, float32 (observations may be uint8 for pixel
    tasks), at least :data:`MIN_TRANSITIONS` rows, none of zero width,
    observations/next_observations of rank 2 (or 4 for images) with equal shapes,
    actions of rank 2, rewards/masks/terminals of rank 1, equal lengths, no NaN/inf, actions in
    [-1, 1] (+ :data:`ACTION_TOLERANCE`), masks and terminals 0/1, the last row a terminal, and
    ``next_observations[t] == observations[t + 1]`` wherever ``terminals[t] == 0``. Pixel
    transitions in the frame form (gfp.data.frame_layout) have ``tail_frames``, ``frame_start``
    and ``frame_next`` instead of ``next_observations``, each index inside its frames.
    """
    if is_frame_form(data):
        _validate_frame_form(data, file)
        return
    check_present(data, TRANSITION_KEYS, file)
    for key in ("observations", "next_observations"):
        check_array(file, key, data[key], frozenset("fu"), (2, 4), "float32")
        check_exact_dtype(file, key, data[key], ("float32", "uint8"))
    check_next_observation_shape(data, file)
    _check_common(data, TRANSITION_KEYS, file)
    inside = data["terminals"][:-1] == 0
    jumps = discontinuities(data["observations"], data["next_observations"]) & inside
    row = _first_row(jumps)
    if row is not None:
        fail(
            file,
            "next_observations",
            "differs from observations[t + 1] inside an episode (terminals[t] == 0)",
            row,
        )


def _check_common(data: Mapping[str, np.ndarray], keys: tuple[str, ...], file: str) -> None:
    """What every transition dictionary must satisfy beyond its observations' own form."""
    for key, rank in (("actions", 2), ("rewards", 1), ("masks", 1), ("terminals", 1)):
        check_array(file, key, data[key], _FLOAT, (rank,), "float32")
        check_exact_dtype(file, key, data[key], ("float32",))
    n = check_lengths(data, keys, file)
    if n < MIN_TRANSITIONS:
        fail(
            file,
            "observations",
            f"has only {n} transition; a dataset needs at least {MIN_TRANSITIONS} (a truncated "
            "or wrong file?)",
        )
    for key in keys:
        check_finite(file, key, data[key])
    check_action_range(file, "actions", data["actions"])
    check_binary(file, "masks", data["masks"])
    check_binary(file, "terminals", data["terminals"])
    check_last_is_terminal(file, "terminals", data["terminals"])


def _validate_frame_form(data: Mapping[str, np.ndarray], file: str) -> None:
    """Pixel transitions whose next frames are indexed (gfp.data.frame_layout): uint8 frames,
    tails of the same shape, and every index inside the frames it points into."""
    check_present(data, _FRAME_FORM_KEYS, file)
    for key in ("observations", "tail_frames"):
        check_array(file, key, data[key], frozenset("u"), (4,), "uint8 images")
        check_exact_dtype(file, key, data[key], ("uint8",))
    obs, tails = data["observations"], data["tail_frames"]
    if tails.shape[1:] != obs.shape[1:]:
        fail(file, "tail_frames", f"has frames of shape {tails.shape[1:]}, not {obs.shape[1:]}")
    _check_common(data, _ROW_KEYS, file)
    n, rows = len(obs), np.arange(len(obs))
    for key, end in (("frame_start", rows + 1), ("frame_next", n + len(tails))):
        idx = np.asarray(data[key])
        if idx.shape != (n,) or idx.dtype.kind not in "iu":
            fail(file, key, f"must be {n} integer indices, got shape {idx.shape} {idx.dtype}")
        row = _first_row((idx < 0) | (idx >= end))
        if row is not None:
            fail(file, key, f"points outside the frames ({int(idx[row])})", row)


def validate_ogbench_arrays(
    data: Mapping[str, np.ndarray],
    file: str,
    *,
    info_keys: Iterable[str] = ("qpos",),
    visual: bool = False,
) -> None:
    """Check the raw arrays of an OGBench ``.npz`` (official layout) before OGBench converts it.

    Layout: observations (N, ob_dim) float (uint8 (N, H, W, C) for ``visual-*``), actions
    (N, act_dim) float, terminals (N,) 0/1 with 1 on each episode's last row, and the info
    arrays that singletask reward relabelling reads (qpos, plus button_states for scene and
    puzzle; qvel is checked when present). ``data`` may be a lazy ``np.load`` result: each key
    is read when checked.
    """
    info_keys = tuple(info_keys)
    check_present(data, ("observations", "actions", "terminals", *info_keys), file)
    optional = tuple(k for k in ("qvel", "button_states") if k in data and k not in info_keys)
    keys = ("observations", "actions", "terminals", *info_keys, *optional)
    arrays = {k: np.asarray(data[k]) for k in keys}
    if visual:
        check_array(file, "observations", arrays["observations"], frozenset("u"), (4,), "uint8")
    else:
        check_array(file, "observations", arrays["observations"], _FLOAT, (2,), "floats")
    check_array(file, "actions", arrays["actions"], _FLOAT, (2,), "floats")
    check_array(file, "terminals", arrays["terminals"], _FLAG, (1,), "bool (0/1)")
    for key in (*info_keys, *optional):
        kinds = frozenset("biu") if key == "button_states" else _FLOAT
        check_array(
            file, key, arrays[key], kinds, (2,), "integers" if key == "button_states" else "floats"
        )
    check_lengths(arrays, keys, file)
    for key in keys:
        check_finite(file, key, arrays[key])
    check_action_range(file, "actions", arrays["actions"])
    check_binary(file, "terminals", arrays["terminals"])
    check_last_is_terminal(file, "terminals", arrays["terminals"])


def validate_d4rl_arrays(data: Mapping[str, np.ndarray], file: str) -> None:
    """Check the raw arrays of a D4RL-style file (HDF5 or plain ``.npz``) before conversion.

    Required: observations (N, d) float, actions (N, a) float, rewards (N,) number, terminals
    (N,) 0/1 and timeouts (N,) 0/1; optional next_observations (N, d) float.
    """
    check_present(data, ("observations", "actions", "rewards", "terminals", "timeouts"), file)
    keys = ["observations", "actions", "rewards", "terminals", "timeouts"]
    check_array(file, "observations", data["observations"], _FLOAT, (2,), "floats")
    check_array(file, "actions", data["actions"], _FLOAT, (2,), "floats")
    check_array(file, "rewards", data["rewards"], _NUMBER, (1,), "numbers")
    check_array(file, "terminals", data["terminals"], _FLAG, (1,), "bool (0/1)")
    check_array(file, "timeouts", data["timeouts"], _FLAG, (1,), "bool (0/1)")
    if "next_observations" in data:
        keys.append("next_observations")
        check_array(file, "next_observations", data["next_observations"], _FLOAT, (2,), "floats")
        check_next_observation_shape(data, file)
    check_lengths(data, keys, file)
    for key in keys:
        check_finite(file, key, data[key])
    check_action_range(file, "actions", data["actions"])
    check_binary(file, "terminals", data["terminals"])
    check_binary(file, "timeouts", data["timeouts"])


# Flattened Minari-style step arrays, in the order the loader collects them.
EPISODE_KEYS = (
    "observations",
    "next_observations",
    "actions",
    "rewards",
    "terminations",
    "truncations",
)


def validate_episode_arrays(data: Mapping[str, np.ndarray], file: str) -> None:
    """Check flattened Minari-style step arrays (one row per step, episodes concatenated).

    Keys: observations, next_observations, actions, rewards, terminations, truncations.
    """
    keys = EPISODE_KEYS
    check_present(data, keys, file)
    for key in ("observations", "next_observations", "actions"):
        check_array(file, key, data[key], _FLOAT, (2,), "floats")
    check_array(file, "rewards", data["rewards"], _NUMBER, (1,), "numbers")
    for key in ("terminations", "truncations"):
        check_array(file, key, data[key], _FLAG, (1,), "bool (0/1)")
    check_lengths(data, keys, file)
    for key in keys:
        check_finite(file, key, data[key])
    check_action_range(file, "actions", data["actions"])
    check_binary(file, "terminations", data["terminations"])
    check_binary(file, "truncations", data["truncations"])


# ---- OGBench: do the info arrays belong to the observations? -----------------------------------
# ogbench.relabel_utils computes a singletask dataset's rewards from qpos (cube positions, drawer,
# window) and button_states, never from the observations the agent trains on. A file whose qpos
# rows are shuffled, shifted or from another dataset therefore trains on wrong rewards silently.
# Where an OGBench state observation holds the same quantity, the two must agree row by row. The
# layouts below were read off datasets made by `gfp data generate` (OGBench's own oracles and
# environments; tests/test_data_errors.py checks them on generated data): in the manipulation
# environments observations[:, 0:6] are qpos[:, 0:6] (the arm joints), cube i's position
# qpos[:, 14+7i : 17+7i] is observations[:, 19+9i : 22+9i] as (xyz - (0.425, 0, 0)) * 10; in
# scene, button i's state is observations[:, 29+4i] (the 1 of its one-hot), the drawer qpos[:, 23]
# is observations[:, 36] / 18 and the window qpos[:, 24] observations[:, 38] / 15; in puzzle,
# button i is observations[:, 20+4i]; in pointmaze the observation is qpos. Locomotion mazes with
# other bodies (ant, humanoid, soccer) and pixel observations are not checked.
_XYZ_CENTER = (0.425, 0.0, 0.0)
_XYZ_SCALE = 10.0
_ARM_JOINTS = 6
_OBJ_QPOS = 14  # qpos index of the first object (after the arm and gripper joints)
_CUBE_QPOS, _CUBE_OB = 7, 9  # qpos entries and observation entries per cube
_PROPRIO_OB = 19  # observation entries before the first object
# observations vs the quantity from qpos, in the observation's units (float32 round-off is ~1e-6)
_INFO_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class _Link:
    """observations[:, ob] == (source[:, cols] - center) * scale, for one quantity."""

    what: str  # what the columns hold, for the error message
    source: str  # 'qpos' or 'button_states'
    cols: slice
    ob: slice
    scale: float = 1.0
    center: tuple[float, ...] | float = 0.0


def _col(i: int) -> slice:
    return slice(i, i + 1)


def _ogbench_links(family: str, ob_dim: int, nq: int, buttons: int) -> list[_Link] | None:
    """The observation/info correspondences of an OGBench family, or None where the widths are
    not the family's layout (the loader's shape check against the environment names that)."""
    arm = _Link("arm joint positions", "qpos", slice(0, _ARM_JOINTS), slice(0, _ARM_JOINTS))

    def cube(i: int) -> _Link:
        q, o = _OBJ_QPOS + _CUBE_QPOS * i, _PROPRIO_OB + _CUBE_OB * i
        return _Link(
            f"cube {i} position", "qpos", slice(q, q + 3), slice(o, o + 3), _XYZ_SCALE, _XYZ_CENTER
        )

    def button(i: int, first_ob: int) -> _Link:
        return _Link(f"button {i} state", "button_states", _col(i), _col(first_ob + 4 * i + 1))

    if family == "pointmaze":
        return [_Link("position", "qpos", slice(0, 2), slice(0, 2))] if ob_dim == nq == 2 else None
    if family == "cube":
        n, extra = divmod(nq - _OBJ_QPOS, _CUBE_QPOS)
        if n < 1 or extra or ob_dim != _PROPRIO_OB + _CUBE_OB * n:
            return None
        return [arm, *(cube(i) for i in range(n))]
    if family == "scene":  # one cube, two buttons, a drawer and a window
        if (ob_dim, nq, buttons) != (40, 25, 2):
            return None
        drawer = _OBJ_QPOS + _CUBE_QPOS + buttons  # qpos: the drawer, then the window
        first_button = _PROPRIO_OB + _CUBE_OB
        after = first_button + 4 * buttons  # observations: drawer pos, vel, window pos, vel
        return [
            arm,
            cube(0),
            *(button(i, first_button) for i in range(buttons)),
            _Link("drawer position", "qpos", _col(drawer), _col(after), 18.0),
            _Link("window position", "qpos", _col(drawer + 1), _col(after + 2), 15.0),
        ]
    if family == "puzzle":
        if buttons < 1 or ob_dim != _PROPRIO_OB + 4 * buttons or nq < _ARM_JOINTS:
            return None
        return [arm, *(button(i, _PROPRIO_OB) for i in range(buttons))]
    return None


def _show(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in np.ravel(values)) + "]"


def check_ogbench_info(data: Mapping[str, np.ndarray], file: str, family: str) -> None:
    """The qpos (and button_states) rows of an OGBench state dataset must be those of its
    observations (section comment above): a DataError naming the file, the first row that
    disagrees and the quantity otherwise. Vectorised over every row (0.5 s per 1M rows of
    cube-double on a loaded 2-core machine)."""
    obs, qpos = data["observations"], data["qpos"]
    buttons = data["button_states"].shape[1] if "button_states" in data else 0
    links = _ogbench_links(family, obs.shape[1], qpos.shape[1], buttons)
    for link in links or ():
        source = data[link.source]
        have = obs[:, link.ob]
        # in float32, as both are stored: about 1e-6 apart at these magnitudes (|values| < 10)
        center, scale = np.asarray(link.center, np.float32), np.float32(link.scale)
        want = (source[:, link.cols] - center) * scale
        diff = np.abs(have - want, out=want)
        row = _first_row(diff > _INFO_TOLERANCE)
        if row is not None:
            expect = (source[row, link.cols] - np.asarray(link.center)) * link.scale
            cols = f"{link.cols.start}:{link.cols.stop}"
            obc = f"{link.ob.start}:{link.ob.stop}"
            mapped = f" gives {_show(expect)}" if (link.scale, link.center) != (1.0, 0.0) else ""
            raise DataError(
                f"{file}: row {row}: observations[{obc}] = {_show(obs[row, link.ob])} but "
                f"{link.source}[{cols}] ({link.what}) = {_show(source[row, link.cols])}{mapped}: "
                f"the {link.source} rows do not belong to the "
                f"observations (OGBench's singletask rewards are computed from {link.source})"
            )
