"""Rewards for LeRobot datasets (`--reward`, gfp/data/rewards.py): each rule on episodes checked
by hand, the refusals, `gfp data info`'s report of what a rule produced, and a run's record.

The datasets are copies of the lerobot-written fixture (tests/fixtures/lerobot/v3.0: 3 episodes
of 69, 67 and 69 frames in one data parquet, rows 0-68, 69-135, 136-204; next.done marks each
episode's last frame) with their next.success / next.done / next.reward columns rewritten.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from gfp.cli import main  # noqa: E402
from gfp.data import lerobot_loader as L  # noqa: E402
from gfp.data import rewards as R  # noqa: E402
from gfp.data.frame_layout import next_frames  # noqa: E402
from gfp.data.load import load_dataset  # noqa: E402
from gfp.errors import ConfigError, DataError  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lerobot" / "v3.0"
DATA = Path("data") / "chunk-000" / "file-000.parquet"
EPISODES = ((0, 69), (69, 136), (136, 205))  # [start, stop) rows of episodes 0, 1, 2
N = 205


def make(tmp_path: Path, *, drop: tuple[str, ...] = (), **columns: np.ndarray) -> Path:
    """A copy of the fixture whose data parquet has `columns` (name with '.' as '__') set, new
    ones also declared as scalar features in meta/info.json, and the features `drop` removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "robot"
    shutil.copytree(FIXTURE, root)
    table = pq.read_table(root / DATA)
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    for name, values in columns.items():
        key = name.replace("__", ".")
        array = pa.array(np.asarray(values))
        if key in table.column_names:
            table = table.set_column(table.schema.get_field_index(key), key, array)
        else:
            table = table.append_column(key, array)
            dtype = "bool" if array.type == pa.bool_() else str(np.asarray(values).dtype)
            info["features"][key] = {"dtype": dtype, "shape": [1], "names": None}
    for key in drop:
        table = table.drop_columns([key])
        del info["features"][key]
    pq.write_table(table, root / DATA)
    info_path.write_text(json.dumps(info, indent=4))
    return root


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


def flags(*frames_by_episode: tuple[int, ...]) -> np.ndarray:
    """A boolean column true at the given frames of each episode (frame numbers within it)."""
    out = np.zeros(N, bool)
    for (start, _), frames in zip(EPISODES, frames_by_episode, strict=True):
        out[[start + f for f in frames]] = True
    return out


def done_at_ends(*episodes: int) -> np.ndarray:
    """next.done true at the last frame of the given episodes only."""
    out = np.zeros(N, bool)
    for e in episodes:
        out[EPISODES[e][1] - 1] = True
    return out


# ---- the success rule ---------------------------------------------------------------------------
# Episode 0: no success, next.done at its end -> 69 rows of -1, the last terminal (mask 0).
# Episode 1: success at frames 10, 11 and 30 -> the first one ends it: frames 0-10, 11 rows,
#            -1 x 10 then 0, mask 0 at frame 10, whose next observation is frame 11.
# Episode 2: no success, no next.done -> cut off: frames 0-67 (68 rows), all -1, mask 1 at the end.
SUCCESS = flags((), (10, 11, 30), ())
DONE = done_at_ends(0, 1)
KEPT = [*range(0, 69), *range(69, 80), *range(136, 204)]  # the frames that are transitions


def check_hand_checked_success(ds, root: Path) -> None:
    t = ds.train
    assert ds.size == 69 + 11 + 68
    states = L.read_columns(root, ["observation.state"])["observation.state"]
    assert np.array_equal(t["observations"], states[KEPT])
    expected_rewards = np.r_[-np.ones(69), -np.ones(10), 0.0, -np.ones(68)]
    assert np.array_equal(t["rewards"], expected_rewards.astype(np.float32))
    masks = np.ones(148, np.float32)
    masks[[68, 79]] = 0.0  # episode 0's next.done, episode 1's success; episode 2: cut off
    assert np.array_equal(t["masks"], masks)
    assert np.flatnonzero(t["terminals"]).tolist() == [68, 79, 147]  # each episode's last row
    # the success transition leads to the frame where success holds; a cut-off episode's last
    # row bootstraps from the episode's (dropped) last frame
    assert np.array_equal(t["next_observations"][79], states[69 + 11])
    assert np.array_equal(t["next_observations"][147], states[204])


def test_the_success_rule_on_hand_checked_episodes(tmp_path):
    root = make(tmp_path, next__success=SUCCESS, next__done=DONE)
    ds = load_dataset(f"lerobot:{root}", reward="success")
    check_hand_checked_success(ds, root)
    assert ds.info["reward"] == {
        "spec": "success",
        "rule": "success",
        "column": "next.success",
        "episodes": 3,
        "succeeded": 1,
    }


def test_success_from_another_column(tmp_path):
    """success:COLUMN reads a 0/1 integer column the same way; next.success is not read."""
    root = make(
        tmp_path,
        next__success=np.zeros(N, bool),
        my__grasped=SUCCESS.astype(np.int64),
        next__done=DONE,
    )
    ds = load_dataset(f"lerobot:{root}", reward="success:my.grasped")
    check_hand_checked_success(ds, root)
    assert ds.info["reward"]["column"] == "my.grasped"


def test_a_success_at_the_last_frame_keeps_it_as_the_terminal(tmp_path):
    """Episode 1 succeeds only at its last frame, without next.done: that frame has no next one
    in the data, yet it is the episode's terminal transition (mask 0), so it is kept."""
    root = make(tmp_path, next__success=flags((), (66,), ()), next__done=np.zeros(N, bool))
    t = load_dataset(f"lerobot:{root}", reward="success").train
    assert len(t["rewards"]) == 68 + 67 + 68
    assert np.flatnonzero(t["masks"] == 0).tolist() == [68 + 66]
    assert np.flatnonzero(t["rewards"] == 0).tolist() == [68 + 66]
    assert np.flatnonzero(t["terminals"]).tolist() == [67, 134, 202]


def test_the_success_rule_in_the_frame_form(tmp_path):
    """Camera observations: the success transition's next frame is the episode's tail frame."""
    pytest.importorskip("av")
    camera = "observation.images.top"
    root = make(tmp_path, next__success=SUCCESS, next__done=DONE)
    t = load_dataset(f"lerobot:{root}", obs_keys=camera, reward="success").train
    frames = L.read_frames(root, camera)
    assert np.array_equal(t["observations"], frames[KEPT])
    nxt = next_frames(t)
    assert np.array_equal(nxt[79], frames[69 + 11]) and np.array_equal(nxt[147], frames[204])
    assert np.array_equal(nxt[:68], frames[1:69])


# ---- episode-end and columns --------------------------------------------------------------------
def test_the_episode_end_rule(tmp_path):
    """Success at each episode's last frame: every frame kept (even without next.done), -1 per
    step, 0 and mask 0 at the last frame; no rewards column is needed."""
    root = make(tmp_path, drop=("next.reward", "next.success"), next__done=np.zeros(N, bool))
    ds = load_dataset(f"lerobot:{root}", reward="episode-end")
    t = ds.train
    assert ds.size == N
    ends = [68, 135, 204]
    rewards = -np.ones(N, np.float32)
    rewards[ends] = 0.0
    assert np.array_equal(t["rewards"], rewards)
    assert np.flatnonzero(t["masks"] == 0).tolist() == ends
    assert np.flatnonzero(t["terminals"]).tolist() == ends
    assert ds.info["reward"] == {
        "spec": "episode-end",
        "rule": "episode-end",
        "column": None,
        "episodes": 3,
        "succeeded": 3,
    }


def test_a_column_and_the_default(tmp_path):
    """A column's values are the rewards, masks and kept frames as the loader's rule has them
    (episode 2 has no next.done: its last frame is dropped); unset: next.reward."""
    cost = np.arange(N, dtype=np.float32) / 10
    reward = np.where(SUCCESS, 1.0, 0.0).astype(np.float32)
    root = make(tmp_path, my__cost=cost, next__reward=reward, next__done=DONE)
    kept = np.r_[0:204]
    by_column = load_dataset(f"lerobot:{root}", reward="my.cost")
    assert np.array_equal(by_column.train["rewards"], cost[kept])
    assert np.flatnonzero(by_column.train["masks"] == 0).tolist() == [68, 135]
    assert by_column.info["reward"] == {
        "spec": "my.cost",
        "rule": "column",
        "column": "my.cost",
        "episodes": 3,
    }
    default = load_dataset(f"lerobot:{root}")
    assert np.array_equal(default.train["rewards"], reward[kept])
    assert default.info["reward"]["spec"] is None
    assert default.info["reward"]["column"] == "next.reward"


# ---- refusals -----------------------------------------------------------------------------------
def test_no_rewards_and_no_rule_is_refused_through_the_cli(tmp_path, capsys):
    root = make(tmp_path, drop=("next.reward",))
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}")
    text = one_line(e)
    assert text.startswith(f"LeRobot dataset {root} has no next.reward feature")
    assert "--reward success" in text and "--reward episode-end" in text
    with pytest.raises(SystemExit) as exit_:
        main(["data", "info", f"lerobot:{root}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gfp: error: {text}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("next.cost", "meta/info.json: key 'features.next.cost' is missing (named by --reward"),
        (
            "observation.state",
            "meta/info.json: key 'features.observation.state.shape' is [28], not a scalar",
        ),
        (
            "observation.images.top",
            "meta/info.json: key 'features.observation.images.top.shape' is [64, 64, 3], not a",
        ),
        ("success:my.score", "meta/info.json: key 'features.my.score' is not a success flag: "),
        ("success:next.cost", "meta/info.json: key 'features.next.cost' is missing (the success"),
    ],
)
def test_a_reward_column_that_cannot_be_used(tmp_path, spec, message):
    score = np.zeros(N, np.float32)
    score[70] = 0.5
    root = make(tmp_path, my__score=score)
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}", reward=spec)
    text = one_line(e)
    assert text.startswith(str(root)) and message in text
    if spec == "success:my.score":
        assert text.endswith("holds 0.5 (a success column holds true/false or 0/1) at index 70")


def test_success_without_next_success(tmp_path):
    root = make(tmp_path, drop=("next.success",))
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}", reward="success")
    assert "key 'features.next.success' is missing (the success flags of --reward success" in (
        one_line(e)
    )


def test_a_success_column_of_another_type():
    features = {"note": {"dtype": "string", "shape": [1]}}
    with pytest.raises(DataError) as e:
        R.parse_reward("success:note", features, "robot/meta/info.json", "LeRobot dataset robot")
    assert one_line(e).startswith("robot/meta/info.json: key 'features.note.dtype' is 'string'")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (" ", "--reward is empty"),
        ("success:", "name the success column"),
        ("episode-end:next.done", "episode-end takes no column"),
    ],
)
def test_malformed_specifications(spec, message):
    with pytest.raises(ConfigError) as e:
        load_dataset(f"lerobot:{FIXTURE}", reward=spec)
    assert message in one_line(e)


def test_reward_for_another_source(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_dataset(str(tmp_path / "x.npz"), reward="success")
    assert one_line(e) == (
        f"reward (--reward) chooses a LeRobot dataset's rewards; {tmp_path / 'x.npz'} is a npz "
        "dataset, whose rewards are fixed"
    )


# ---- gfp data info ------------------------------------------------------------------------------
def test_data_info_shows_what_the_rule_produced(tmp_path, capsys):
    root = make(tmp_path, next__success=SUCCESS, next__done=DONE)
    main(["data", "info", f"lerobot:{root}", "--reward", "success"])
    out = capsys.readouterr().out
    assert "train transitions: 148" in out
    assert "rewards: success (next.success): -1 per step, 0 at the first success" in out
    assert "success: 1 of 3 episodes (33.3%)" in out
    assert "train terminals (mask 0): 2    episodes cut off" in out and "next.done): 1" in out
    # lengths 69, 11, 68; returns -69, -10, -68
    assert "episodes: 3 (length min 11  mean 49.3333  max 69)" in out
    returns = next(line for line in out.splitlines() if "episode returns" in line)
    assert "min -69 " in returns and "max -10 " in returns and returns.endswith("mean -49")


def test_data_info_takes_obs_keys(capsys):
    main(["data", "info", f"lerobot:{FIXTURE}", "--obs-keys", "observation.images.top@32x32"])
    out = capsys.readouterr().out
    assert "observation dim: 3072 (shape (32, 32, 3))" in out
    assert "rewards: the column next.reward" in out and "success:" not in out


# ---- a run's record -----------------------------------------------------------------------------
def test_a_run_records_the_rule(tmp_path):
    root = make(tmp_path, drop=("next.reward",))
    out = tmp_path / "run"
    main(["train", "--task", f"lerobot:{root}", "--reward", "episode-end", "--no-eval",
          "--steps", "2", "--log-every", "1", "--preset", "cpu", "--batch-size", "8",
          "--flow-steps", "2", "--actor-hidden-dims", "8", "--value-hidden-dims", "8",
          "--out", str(out)])  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["reward"] == "episode-end"
    assert config["dataset"]["info"]["reward"] == {
        "spec": "episode-end",
        "rule": "episode-end",
        "column": None,
        "episodes": 3,
        "succeeded": 3,
    }
    assert config["dataset"]["size"] == N


def test_a_job_without_reward_keeps_its_hash(tmp_path):
    """--reward is recorded and hashed only when given: a job without it has the record and hash
    it had before the setting existed; one with it is another run."""
    from gfp.job import job_record, make_train_job, run_defining

    def record(**kw):
        job = make_train_job(f"lerobot:{FIXTURE}", "gfp", steps=10, out=tmp_path / "r", **kw)
        return job_record(job)

    plain, sparse, end = record(), record(reward="success"), record(reward="episode-end")
    assert "reward" not in plain and "reward" not in run_defining(plain)
    assert sparse["reward"] == "success" and run_defining(sparse)["reward"] == "success"
    assert len({plain["config_hash"], sparse["config_hash"], end["config_hash"]}) == 3
    assert {k: v for k, v in sparse.items() if k not in ("reward", "config_hash")} == {
        k: v for k, v in plain.items() if k != "config_hash"
    }
