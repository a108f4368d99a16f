"""gfp.ope: FQE on an MDP whose value is known by hand, the bootstrap interval, `gfp ope` on a
tiny finished run (ope.json, the table, its one-line errors)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from gfp.cli import main
from gfp.ope import FQEConfig, bootstrap_interval, estimate

H, GAMMA = 5, 0.9
FAST = FQEConfig(steps=1500, batch_size=64, hidden_dims=(32, 32), gamma=GAMMA, tau=0.05, lr=1e-3,
                 bootstrap=200, policy_samples=2)  # fmt: skip


def chain(episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes of H steps; the state is the time step, the reward is the action's first
    coordinate (actions uniform in [-1, 1]: the behaviour's value is ~0), the last step is a
    true terminal (mask 0)."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(H), episodes)
    obs = np.stack([t / H, np.ones_like(t)], 1).astype(np.float32)
    actions = rng.uniform(-1, 1, (len(t), 2)).astype(np.float32)
    return {
        "observations": obs,
        "next_observations": np.stack([(t + 1) / H, np.ones_like(t)], 1).astype(np.float32),
        "actions": actions,
        "rewards": actions[:, 0].copy(),
        "masks": (t != H - 1).astype(np.float32),
        "terminals": (t == H - 1).astype(np.float32),
    }


def test_fqe_values_the_policy_not_the_data():
    """pi always plays a = (0.5, 0): V^pi(s0) = 0.5 (1 - gamma^H) / (1 - gamma) = 2.05, while the
    data's actions are worth ~0 (an evaluation of the dataset's actions, SARSA, gives ~0); the
    mean over every state is the mean of the H tails' values."""
    data = chain(200)
    pi = lambda params, obs, key: jnp.tile(jnp.array([0.5, 0.0]), (obs.shape[0], 1))  # noqa: E731
    res = estimate(data, data, pi, None, FAST)
    v = 0.5 * (1 - GAMMA**H) / (1 - GAMMA)
    assert res["value"] == pytest.approx(v, abs=0.1)
    tails = [0.5 * (1 - GAMMA ** (H - t)) / (1 - GAMMA) for t in range(H)]
    assert res["states_value"] == pytest.approx(np.mean(tails), abs=0.1)
    assert abs(res["behaviour_value"]) < 0.3  # the data's own return: far from V^pi
    assert res["episodes"] == 200 and res["fit_transitions"] == 200 * H
    assert res["value_per_step"] == pytest.approx((1 - GAMMA) * res["value"])
    lo, hi = res["interval"]  # every episode starts in the same state: a point
    assert lo <= res["value"] + 1e-6 and res["value"] <= hi + 1e-6


def test_bootstrap_interval_covers_the_mean_and_shrinks():
    rng = np.random.default_rng(0)
    few, many = rng.normal(3.0, 1.0, 10), rng.normal(3.0, 1.0, 1000)
    widths = []
    for values in (few, many):
        lo, hi = bootstrap_interval(values, 2000, seed=1)
        assert lo < values.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5  # ~ 1/sqrt(n): 10x narrower for 100x the episodes
    # the 95% percentile interval of the mean: about +-1.96 standard errors
    assert widths[1] == pytest.approx(2 * 1.96 * many.std() / np.sqrt(1000), rel=0.15)


# ---- gfp ope on a finished run ------------------------------------------------------------------
def write_npz(path: Path, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    np.savez(path, observations=obs, actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
             rewards=rng.normal(size=n).astype(np.float32),
             terminals=(np.arange(n) % 50 == 49).astype(np.float32),
             timeouts=np.zeros(n, np.float32),
             next_observations=np.roll(obs, -1, axis=0))  # fmt: skip


def gfp(*argv: object) -> tuple[int, str, str]:
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([*map(str, argv)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ope")
    write_npz(root / "tiny.npz", 0, 200)
    write_npz(root / "tiny-val.npz", 1, 150)
    code, _, err = gfp("train", "--task", root / "tiny.npz", "--agent", "bc", "--steps", 10,
                       "--log-every", 10, "--eval-every", 0, "--actor-hidden-dims", 8, 8,
                       "--batch-size", 8, "--out", root / "run")  # fmt: skip
    assert code == 0, err
    return root / "run"


FLAGS = ("--steps", 20, "--hidden-dims", 8, 8, "--bootstrap", 50, "--policy-samples", 1)


def test_gfp_ope_writes_ope_json_and_prints_one_table(run):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out, err = gfp("ope", run, *FLAGS)
    assert code == 0, err
    assert out.count("V^pi (initial states)") == 1 and "95% bootstrap interval" in out
    saved = json.loads((run / "ope.json").read_text())["policies"]["actor"]
    assert saved["agent"] == "bc" and saved["fit_on"] == "val"
    assert saved["episodes"] == 3 and saved["fit_transitions"] == 150  # the -val.npz file
    assert saved["fqe"]["gamma"] == 0.99 and saved["fqe"]["steps"] == 20  # the run's discount
    lo, hi = saved["interval"]
    assert lo <= saved["value"] <= hi
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name in before} == before
    # --val-episodes: 2 of the training file's 4 episodes (gfp.data.split), fitted on the 2 left
    code, out, err = gfp("ope", run, *FLAGS, "--val-episodes", 2, "--fit-on", "train")
    assert code == 0, err
    saved = json.loads((run / "ope.json").read_text())["policies"]["actor"]
    assert saved["episodes"] == 2 and saved["fit_transitions"] == 100
    assert "val_episodes = 2" in saved["initial_states"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("MISSING",), "is not a directory"),
        (("EMPTY",), "has no params.msgpack"),
        (("RUN", "--policy", "vabc"), "has no policy 'vabc'"),
        (("RUN", "--fit-on", "everything"), "--fit-on must be one of"),
        (("RUN", "--steps", 0), "FQE steps must be >= 1"),
        (("MOVED",), "cannot be loaded"),
        (("CHANGED",), "is not the data"),
    ],
)
def test_gfp_ope_one_line_errors(run, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    moved = tmp_path / "moved"
    moved.mkdir()
    config = json.loads((run / "config.json").read_text())
    config["task"] = str(tmp_path / "gone.npz")
    (moved / "config.json").write_text(json.dumps(config))
    (moved / "params.msgpack").write_bytes((run / "params.msgpack").read_bytes())
    changed = tmp_path / "changed"
    changed.mkdir()
    write_npz(tmp_path / "other.npz", 7, 200)  # the same shapes, other values
    config["task"] = str(tmp_path / "other.npz")
    (changed / "config.json").write_text(json.dumps(config))
    (changed / "params.msgpack").write_bytes((run / "params.msgpack").read_bytes())
    names = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty", "RUN": run,
             "MOVED": moved, "CHANGED": changed}  # fmt: skip
    code, out, err = gfp("ope", *FLAGS, *(names.get(a, a) for a in args))
    assert code != 0
    assert err.startswith("gfp: error: ") and message in err and err.count("\n") == 1, err


def test_gfp_ope_takes_the_runs_own_held_out_episodes(tmp_path):
    """A run trained with --val-episodes: gfp ope evaluates on the episodes it held out (the
    data it trained on passes the fingerprint check); another --val-episodes is said to be gfp
    ope's."""
    write_npz(tmp_path / "solo.npz", 0, 200)  # 4 episodes, no -val file
    code, _, err = gfp("train", "--task", tmp_path / "solo.npz", "--agent", "bc", "--steps", 10,
                       "--log-every", 10, "--eval-every", 0, "--actor-hidden-dims", 8, 8,
                       "--batch-size", 8, "--val-episodes", 1,
                       "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    code, out, err = gfp("ope", tmp_path / "run", *FLAGS)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "ope.json").read_text())["policies"]["actor"]
    assert saved["episodes"] == 1 and saved["fit_transitions"] == 50
    assert "the run's val_episodes = 1" in saved["initial_states"]
    code, out, err = gfp("ope", tmp_path / "run", *FLAGS, "--val-episodes", 2)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "ope.json").read_text())["policies"]["actor"]
    assert saved["episodes"] == 2 and "gfp ope's val_episodes = 2" in saved["initial_states"]
