"""LeRobot datasets (gfp/data/lerobot_loader.py) against lerobot's own reader.

The fixtures (tests/fixtures/lerobot/, README.md there) were written by lerobot itself, 0.4.4
(format v3.0) and 0.3.3 (v2.1); `expected.npz` beside each holds what lerobot's
`LeRobotDataset(..., video_backend="pyav")[i]` returned for 9 indices (first, middle and last frame
of each episode). lerobot and torch are not installed here: gfp reads the same files with pyarrow
and PyAV, and must return the same arrays and the same uint8 frames, bit for bit (both decode
the AV1 streams with PyAV's FFmpeg; lerobot's float frame is the uint8 one / 255).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from gfp.data import lerobot_loader as L  # noqa: E402
from gfp.data.frame_layout import next_frames  # noqa: E402
from gfp.data.load import load_dataset  # noqa: E402
from gfp.errors import ConfigError, DataError  # noqa: E402
from gfp.tasks import parse_task  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lerobot"
VERSIONS = ("v3.0", "v2.1")
CAMERA = "observation.images.top"
ARRAYS = ("observation.state", "action", "next.reward", "next.done", "next.success", "task_index")
INDEX = ("timestamp", "frame_index", "episode_index", "index")


def expected(version: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / version / "expected.npz") as f:
        return dict(f)


@pytest.fixture
def copy(tmp_path):
    """A copy of a fixture to break."""

    def make(version: str = "v2.1") -> Path:
        root = tmp_path / version
        shutil.copytree(FIXTURES / version, root)
        return root

    return make


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


# ---- lerobot's own arrays and frames ------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_the_reader_returns_lerobots_arrays(version):
    exp = expected(version)
    cols = L.read_columns(FIXTURES / version, ARRAYS)
    assert len(cols["index"]) == 205 and np.array_equal(cols["index"], np.arange(205))
    rows = exp["index"]
    for key in (*ARRAYS, *INDEX):
        assert cols[key][rows].dtype == exp[key].dtype, key
        assert np.array_equal(cols[key][rows], exp[key]), key


@pytest.mark.parametrize("version", VERSIONS)
def test_the_reader_decodes_lerobots_frames(version):
    exp = expected(version)[CAMERA]
    frames = L.read_frames(FIXTURES / version, CAMERA)
    assert frames.shape == (205, 64, 64, 3) and frames.dtype == np.uint8
    # Exactly lerobot's frames (its 'pyav' backend, the decoder gfp uses): no tolerance.
    assert np.array_equal(frames[expected(version)["index"]], exp)


def test_frames_at_another_resolution():
    frames = L.read_frames(FIXTURES / "v3.0", CAMERA, size=(32, 48))
    assert frames.shape == (205, 32, 48, 3) and frames.dtype == np.uint8
    full = expected("v3.0")[CAMERA].astype(np.float32)
    small = frames[expected("v3.0")["index"]].astype(np.float32)
    # the same picture, smaller: each 2x(4/3) block's mean is near the small frame
    assert abs(full.mean() - small.mean()) < 2.0


# ---- transitions --------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_state_transitions(version):
    ds = load_dataset(f"lerobot:{FIXTURES / version}")
    cols = L.read_columns(FIXTURES / version, ARRAYS)
    t = ds.train
    assert ds.source == "lerobot" and ds.env_name is None and ds.val is None
    # every episode's last frame is kept: next.done marks it (mask 0, its own next observation)
    assert ds.size == 205 and ds.obs_dim == 28 and ds.act_dim == 5
    assert np.array_equal(t["observations"], cols["observation.state"])
    ends = np.flatnonzero(t["terminals"])
    assert ends.tolist() == [68, 135, 204]
    assert np.array_equal(t["masks"], (~cols["next.done"]).astype(np.float32))
    inside = np.setdiff1d(np.arange(205), ends)
    assert np.array_equal(t["next_observations"][inside], t["observations"][inside + 1])
    assert np.array_equal(t["rewards"], cols["next.reward"])
    info = ds.info["lerobot"]
    assert info["codebase_version"] == version and info["obs_keys"] == ["observation.state"]
    assert info["fps"] == 10 and info["episodes"] == 3 and info["frames"] == 205


def test_an_episode_cut_off_loses_its_last_frame(copy):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = copy("v2.1")
    path = root / "data" / "chunk-000" / "episode_000001.parquet"
    table = pq.read_table(path)
    done = np.zeros(len(table), bool)  # no done: the episode was cut off, its end unknown
    table = table.set_column(table.schema.get_field_index("next.done"), "next.done", pa.array(done))
    pq.write_table(table, path)
    ds = load_dataset(f"lerobot:{root}")
    assert ds.size == 204 and np.flatnonzero(ds.train["terminals"]).tolist() == [68, 134, 203]
    assert ds.train["masks"][134] == 1.0  # bootstrapped from frame 135 = the episode's last
    cols = L.read_columns(root, ["observation.state"])
    assert np.array_equal(ds.train["next_observations"][134], cols["observation.state"][135])


@pytest.mark.parametrize("version", VERSIONS)
def test_camera_transitions_in_the_frame_form(version):
    ds = load_dataset(f"lerobot:{version}", FIXTURES, obs_keys=CAMERA)
    frames = L.read_frames(FIXTURES / version, CAMERA)
    t = ds.train
    assert t["observations"].shape == (205, 64, 64, 3) and t["observations"].dtype == np.uint8
    assert "next_observations" not in t and len(t["tail_frames"]) == 3
    assert np.array_equal(t["observations"], frames)
    nxt = next_frames(t)
    inside = np.flatnonzero(t["terminals"] == 0)
    assert np.array_equal(nxt[inside], frames[inside + 1])
    assert np.array_equal(t["frame_start"][[0, 68, 69, 135, 136, 204]], [0, 0, 69, 69, 136, 136])
    assert ds.info["lerobot"]["image_size"] == [64, 64]
    small = load_dataset(f"lerobot:{version}", FIXTURES, obs_keys=f"{CAMERA}@32x32")
    assert small.train["observations"].shape == (205, 32, 32, 3)
    assert small.info["lerobot"]["image_size"] == [32, 32]


# ---- action normalisation -----------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_actions_are_normalised_from_the_stats_and_back(version):
    ds = load_dataset(f"lerobot:{FIXTURES / version}", clip_actions=False)
    raw = L.read_columns(FIXTURES / version, ["action"])["action"]
    record = ds.info["action_normalization"]
    assert record["kind"] == "min_max" and record["key"] == "action"
    assert record["stats"] == (
        "meta/stats.json" if version == "v3.0" else "meta/episodes_stats.jsonl"
    )
    lo, hi = np.array(record["min"]), np.array(record["max"])
    assert np.allclose(lo, raw.min(0)) and np.allclose(hi, raw.max(0))  # the stats bound the data
    a = ds.train["actions"]
    assert a.min() >= -1 and a.max() <= 1
    assert np.allclose(a.min(0), -1, atol=1e-6) and np.allclose(a.max(0), 1, atol=1e-6)
    # the inverse gives the robot's units back
    assert np.allclose(L.unnormalize_actions(a, record), raw, atol=1e-5 * (hi - lo).max())
    assert np.allclose(L.normalize_actions(raw, record), a, atol=1e-6)
    # and it travels as JSON (a run records it)
    assert json.loads(json.dumps(record)) == record


def test_a_constant_action_dimension_normalises_to_zero():
    record = L.normalization_record(np.array([0.0, 2.0]), np.array([1.0, 2.0]), "meta/stats.json")
    x = np.array([[0.25, 2.0]], np.float32)
    a = L.normalize_actions(x, record)
    assert np.allclose(a, [[-0.5, 0.0]])
    assert np.allclose(L.unnormalize_actions(a, record), x)


def test_stats_that_do_not_bound_the_actions(copy):
    root = copy("v3.0")
    stats = json.loads((root / "meta" / "stats.json").read_text())
    stats["action"]["max"][0] = 0.0
    (root / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}")
    assert "stats.json: key 'action.min/max' does not bound the data's actions" in one_line(e)


# ---- one-line errors ----------------------------------------------------------------------------
def edit_info(root: Path, edit) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def test_a_missing_feature(copy):
    root = copy("v3.0")
    edit_info(root, lambda info: info["features"].pop("action"))
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}")
    text = one_line(e)
    assert text.startswith(f"{root}/meta/info.json: key 'features.action' is missing")
    assert "the actions" in text


def test_an_obs_key_not_in_info_json():
    with pytest.raises(DataError) as e:
        load_dataset(
            f"lerobot:{FIXTURES / 'v2.1'}", obs_keys="observation.state,observation.joints"
        )
    text = one_line(e)
    assert "v2.1/meta/info.json: key 'features.observation.joints' is missing (named by " in text
    assert "observation.state, observation.images.top" in text


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("observation.state@64x64", "only a camera takes a resolution"),
        (f"{CAMERA}@64", "the resolution must be HxW"),
        (" , ", "--obs-keys is empty"),
    ],
)
def test_obs_keys_that_are_refused(keys, message):
    with pytest.raises(ConfigError) as e:
        load_dataset(f"lerobot:{FIXTURES / 'v3.0'}", obs_keys=keys)
    assert message in one_line(e)


def test_obs_keys_for_another_source(tmp_path):
    with pytest.raises(ConfigError, match=r"obs_keys \(--obs-keys\) chooses among a LeRobot"):
        load_dataset(str(tmp_path / "x.npz"), obs_keys="observation.state")


def test_a_frame_index_out_of_order(copy):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = copy("v2.1")
    path = root / "data" / "chunk-000" / "episode_000001.parquet"
    table = pq.read_table(path)
    frame = table.column("frame_index").to_numpy().copy()
    frame[[10, 11]] = frame[[11, 10]]
    table = table.set_column(table.schema.get_field_index("frame_index"), "frame_index",
                             pa.array(frame))  # fmt: skip
    pq.write_table(table, path)
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}")
    assert one_line(e) == (
        f"{path}: key 'frame_index' is 11, expected 10 (frame_index must count 0, 1, 2, ... within "
        "each episode; episode 1) at index 10"
    )


def test_a_video_shorter_than_its_timestamps(copy):
    import av

    root = copy("v2.1")
    path = root / "videos" / "chunk-000" / CAMERA / "episode_000002.mp4"
    frames = L.read_frames(FIXTURES / "v2.1", CAMERA)[136:166]  # 30 of its 69 frames
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}", obs_keys=CAMERA)
    assert one_line(e) == (
        f"{path}: key 'timestamp' 3.0000 s has no frame: the video is shorter than its timestamps "
        "(its last frame is at 2.9000 s) at index 166"
    )


def test_not_a_lerobot_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{tmp_path}")
    assert one_line(e) == f"{tmp_path}: no meta/info.json, so not a LeRobot dataset folder"
    with pytest.raises(DataError, match="no such directory"):
        load_dataset(f"lerobot:{tmp_path / 'nope'}")


def test_an_unknown_format(copy):
    root = copy("v3.0")
    edit_info(root, lambda info: info.update(codebase_version="v1.6"))
    with pytest.raises(DataError) as e:
        load_dataset(f"lerobot:{root}")
    assert "key 'codebase_version' is 'v1.6'; gfp reads LeRobot formats v2.0, v2.1, v3.0" in (
        one_line(e)
    )


# ---- the task registry --------------------------------------------------------------------------
def test_lerobot_task_names():
    task = parse_task("lerobot:some/where/my_robot")
    assert (task.source, task.env_id, task.dataset, task.benchmark) == (
        "lerobot",
        None,
        "some/where/my_robot",
        "other",
    )
    assert task.scoring == "return" and task.env_key == "my_robot"
    folder = parse_task(str(FIXTURES / "v3.0"))  # a folder holding meta/info.json
    assert folder.source == "lerobot" and folder.dataset == str(FIXTURES / "v3.0")
    with pytest.raises(ConfigError, match="names no folder"):
        parse_task("lerobot:")
    assert L.lerobot_path(task, "/data") == Path("/data/some/where/my_robot")
    assert L.lerobot_path(parse_task("lerobot:/abs/x"), "/data") == Path("/abs/x")


# ---- gfp train ----------------------------------------------------------------------------------
def test_gfp_train_on_a_lerobot_dataset(tmp_path, capsys):
    from gfp.cli import main

    out = tmp_path / "run"
    main(["train", "--task", f"lerobot:{FIXTURES / 'v3.0'}", "--agent", "gfp", "--steps", "20",
          "--preset", "cpu", "--log-every", "10", "--batch-size", "16", "--flow-steps", "2",
          "--actor-hidden-dims", "16", "--value-hidden-dims", "16", "--out", str(out)])  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["source"] == "lerobot" and config["dataset"]["env_name"] is None
    assert config["dataset"]["obs_dim"] == 28 and config["dataset"]["act_dim"] == 5
    assert (out / "params.msgpack").is_file() and (out / "metrics.csv").is_file()
    assert "not evaluated" in capsys.readouterr().out
