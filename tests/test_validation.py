"""The held-out validation split (gfp.data.split), the validation metrics (gfp.engine.validation)
and --select-by (gfp.run): no episode on both sides of the split, frame stacks that stay in their
part, metrics checked against a direct computation, and a --no-eval LeRobot run that writes them
and keeps the best evaluation's parameters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import agent_class, make_agent
from gfp.agents.base import ObsSpec
from gfp.data.frame_layout import frame_store, next_frames
from gfp.data.info import episode_bounds
from gfp.data.load import load_dataset
from gfp.data.split import held_out_episodes, split_episodes
from gfp.engine.chunk import init_states, unstack
from gfp.engine.frames import clip_indices
from gfp.engine.validation import Validation, metric_names
from gfp.errors import ConfigError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lerobot" / "v3.0"
LENGTHS = (5, 9, 3, 7, 6, 4)  # episode lengths of the synthetic data


def state_data(lengths=LENGTHS) -> dict[str, np.ndarray]:
    """State transitions whose observation's first value is the episode's index, the second
    the step in it; next_observations the following step."""
    ep = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    t = np.concatenate([np.arange(n) for n in lengths])
    obs = np.stack([ep, t, np.sin(t)], axis=1).astype(np.float32)
    nxt = np.stack([ep, t + 1, np.sin(t + 1)], axis=1).astype(np.float32)
    ends = np.concatenate([np.arange(n) == n - 1 for n in lengths]).astype(np.float32)
    rng = np.random.default_rng(1)
    return {
        "observations": obs,
        "next_observations": nxt,
        "actions": rng.uniform(-1, 1, (len(ep), 2)).astype(np.float32),
        "rewards": rng.normal(size=len(ep)).astype(np.float32),
        "masks": np.ones(len(ep), np.float32),
        "terminals": ends,
    }


def pixel_data(lengths=LENGTHS) -> dict[str, np.ndarray]:
    """The frame form of image transitions whose pixels say the episode (channel 0) and step
    (channel 1) of their frame."""
    s = state_data(lengths)

    def image(rows: np.ndarray) -> np.ndarray:
        img = np.zeros((len(rows), 4, 4, 2), np.uint8)
        img[..., 0] = rows[:, 0, None, None]
        img[..., 1] = rows[:, 1, None, None]
        return img

    pixels = {k: v for k, v in s.items() if "observations" not in k}
    pixels["observations"] = image(s["observations"])
    store = frame_store({**pixels, "next_observations": image(s["next_observations"])})
    return {**pixels, **{k: v for k, v in store.items() if k != "frames"}}


def episodes_of(part: dict[str, np.ndarray]) -> set[int]:
    obs = part["observations"]
    return set(np.unique(obs[..., 0] if obs.ndim == 2 else obs[:, 0, 0, 0]).astype(int).tolist())


# ---- the split -----------------------------------------------------------------------------------
@pytest.mark.parametrize("val_episodes", [1, 2, 0.5])
def test_state_split_holds_out_whole_episodes(val_episodes):
    data = state_data()
    train, val, record = split_episodes(data, val_episodes, "synthetic")
    held = set(record["val_episodes"])
    assert episodes_of(val) == held and not episodes_of(train) & held
    assert episodes_of(train) | held == set(range(len(LENGTHS)))
    assert len(held) == (round(val_episodes * 6) if val_episodes < 1 else val_episodes)
    assert record["val_rows"] == sum(LENGTHS[e] for e in held) == len(val["actions"])
    assert record["train_rows"] + record["val_rows"] == len(data["actions"])
    for part in (train, val):  # each episode whole, in order, its next observation its own
        assert set(part) == set(data)
        for a, b in episode_bounds(part["terminals"]):
            rows = part["observations"][a:b]
            assert len(np.unique(rows[:, 0])) == 1
            assert np.array_equal(rows[:, 1], np.arange(b - a))
            assert np.array_equal(part["next_observations"][a:b, 1], np.arange(1, b - a + 1))
    # deterministic: the same data gives the same split, whatever else ran before
    again = split_episodes(state_data(), val_episodes, "synthetic")
    assert again[2] == record
    assert all(np.array_equal(again[1][k], val[k]) for k in val)


def test_held_out_episodes_are_not_the_last_ones():
    """The fixed permutation does not simply take the file's last episodes."""
    picks = [tuple(held_out_episodes(n, 0.25, "d")) for n in (8, 12, 20)]
    assert all(p == tuple(sorted(p)) for p in picks)
    assert any(p != tuple(range(n - len(p), n)) for p, n in zip(picks, (8, 12, 20), strict=True))


@pytest.mark.parametrize("stack", [1, 3])
def test_frame_form_split_keeps_stacks_in_their_part(stack):
    data = pixel_data()
    train, val, record = split_episodes(data, 2, "pixels")
    held = set(record["val_episodes"])
    for part, episodes in ((train, set(range(6)) - held), (val, held)):
        n = len(part["actions"])
        assert len(part["tail_frames"]) == len(episode_bounds(part["terminals"]))
        # every frame a row's stack or next frame gathers is of the row's own episode
        idx = np.arange(n)
        ci = clip_indices(idx, part["frame_start"], part["frame_next"], stack, xp=np)
        frames = np.concatenate([part["observations"], part["tail_frames"]])
        gathered = frames[ci]  # (n, stack + 1, H, W, C)
        own = part["observations"][:, 0, 0, 0]
        assert np.all(gathered[..., 0] == own[:, None, None, None])
        assert set(np.unique(gathered[..., 0]).tolist()) <= episodes
        # the next frame is the following step of the same episode
        nxt = next_frames(part)
        assert np.array_equal(nxt[:, 0, 0, 1], part["observations"][:, 0, 0, 1] + 1)
        # the stack's oldest frame is clamped at the episode's first frame
        steps = part["observations"][:, 0, 0, 1].astype(int)
        assert np.array_equal(gathered[:, 0, 0, 0, 1], np.maximum(steps - stack + 1, 0))


def test_split_refusals():
    data = state_data()
    with pytest.raises(ConfigError, match=r"has 6 episodes, so at most 5 can be held out"):
        split_episodes(data, 6, "synthetic")
    with pytest.raises(ConfigError, match=r"is 0 episodes"):
        split_episodes(data, 0.05, "synthetic")
    with pytest.raises(ConfigError, match=r"none can be held out"):
        split_episodes(state_data((4,)), 0.9, "one episode")


def test_own_validation_split_refused(tmp_path):
    """A dataset with its own validation file refuses --val-episodes, saying so."""
    for stem in ("data", "data-val"):
        d = state_data()
        np.savez(
            tmp_path / f"{stem}.npz",
            **{k: d[k] for k in ("observations", "next_observations", "actions", "rewards")},
            terminals=np.zeros(len(d["actions"]), np.float32),
            timeouts=d["terminals"],
        )
    assert load_dataset(str(tmp_path / "data.npz")).val is not None
    with pytest.raises(ConfigError, match=r"has its own validation split \(\d+ transitions\)"):
        load_dataset(str(tmp_path / "data.npz"), val_episodes=1)
    held = load_dataset(str(tmp_path / "data.npz"), validation=False, val_episodes=2)
    assert held.info["split"]["val_episodes"] and held.val is not None


@pytest.mark.parametrize("obs_keys", ["observation.state", "observation.images.top"])
def test_lerobot_split(obs_keys):
    pytest.importorskip("pyarrow")
    pytest.importorskip("av")
    whole = load_dataset(f"lerobot:{FIXTURE}", obs_keys=obs_keys)
    split = load_dataset(f"lerobot:{FIXTURE}", obs_keys=obs_keys, val_episodes=1)
    record = split.info["split"]
    bounds = episode_bounds(whole.train["terminals"])
    (held,) = record["val_episodes"]
    a, b = bounds[held]
    assert record["episodes"] == 3 and record["val_rows"] == b - a == len(split.val["actions"])
    assert split.size == len(whole.train["actions"]) - (b - a)
    # the validation rows are exactly the held-out episode's, and none of them is trained on
    assert np.array_equal(split.val["actions"], whole.train["actions"][a:b])
    assert np.array_equal(split.val["observations"], whole.train["observations"][a:b])
    keep = np.r_[0:a, b : len(whole.train["actions"])]
    assert np.array_equal(split.train["actions"], whole.train["actions"][keep])
    if obs_keys.endswith("top"):  # the next frames stay the ones of before, part by part
        assert np.array_equal(next_frames(split.val), next_frames(whole.train, slice(a, b)))
        assert np.array_equal(next_frames(split.train), next_frames(whole.train, keep))
    assert split.info["lerobot"] == whole.info["lerobot"]


# ---- the metrics ---------------------------------------------------------------------------------
def tiny(name: str, data: dict[str, np.ndarray], **over):
    config = agent_class(name).Config()
    small = {"actor_hidden_dims": (16,), "value_hidden_dims": (16,), "batch_size": 8}
    if "flow_steps" in {f.name for f in dataclasses.fields(config)}:
        small["flow_steps"] = 2  # a short Euler loop compiles faster
    config = dataclasses.replace(config, **small, **over)
    return make_agent(name, config, obs_spec=ObsSpec.of(data["observations"]), action_dim=2)


@pytest.mark.slow
def test_fql_metrics_by_hand():
    """val_action_mse, val_q_* and val_td_error of FQL against a direct computation with the
    same parameters on the same fixed minibatches; each seed scored with its own parameters."""
    train, val, _ = split_episodes(state_data(), 2, "synthetic")
    agent = tiny("fql", train)
    val_obs = {tuple(r) for r in val["observations"].tolist()}
    v = Validation(agent, val, batches=3)
    # the fixed minibatches are validation rows, never training ones
    rows = {tuple(r) for r in np.asarray(v.batches["observations"]).reshape(-1, 3).tolist()}
    assert rows <= val_obs and not rows & {tuple(r) for r in train["observations"].tolist()}
    states = init_states(agent, [0, 1])
    got = v(states)
    assert got[0] != got[1]  # two seeds, two sets of parameters
    assert v(states) == got  # the same samples and noise at every evaluation
    assert set(got[0]) == set(metric_names(agent))
    critic, actor = agent.nets["critic"][0], agent.nets["actor"][0]
    flow = agent.nets["flow"][0]

    @jax.jit
    def by_hand(p, tp, batch, key):
        s, a, s2 = batch["observations"], batch["actions"], batch["next_observations"]
        k_loss, k_flow, k_z = jax.random.split(key, 3)
        z = jax.random.normal(k_z, a.shape)

        def q(actions):
            return critic.apply({"params": p["critic"]}, s, actions).mean()

        actor_a = jnp.clip(actor.apply({"params": p["actor"]}, s, z), -1, 1)
        flow_a = agent.flow_action(p, s, z)
        # FQL's critic loss: y = r + gamma * mask * Qagg_bar(s', clip(mu(s', z')))
        z_next = agent.sample_noise(k_loss, batch)["z_next"]
        a2 = jnp.clip(actor.apply({"params": p["actor"]}, s2, z_next), -1, 1)
        q2 = critic.apply({"params": tp["critic"]}, s2, a2)
        q2 = q2.min(0) if agent.config.q_agg == "min" else q2.mean(0)
        y = batch["rewards"] + agent.config.gamma * batch["masks"] * q2
        # flow matching on a_t = (1 - t) eps + t a, velocity a - eps
        k_eps, k_t = jax.random.split(k_flow)
        eps, t = jax.random.normal(k_eps, a.shape), jax.random.uniform(k_t, a.shape[:1])
        a_t = (1 - t[:, None]) * eps + t[:, None] * a
        velocity = flow.apply({"params": p["flow"]}, s, a_t, t)
        return {
            "val_td_error": jnp.mean((critic.apply({"params": p["critic"]}, s, a) - y) ** 2),
            "val_flow_loss": jnp.mean((velocity - (a - eps)) ** 2),
            "val_q_data": q(a),
            "actor/val_action_mse": jnp.mean((actor_a - a) ** 2),
            "actor/val_q_actor": q(actor_a),
            "flow/val_action_mse": jnp.mean((flow_a - a) ** 2),
            "flow/val_q_actor": q(flow_a),
        }

    for i in range(2):
        st = unstack(states, i)
        per_batch = [
            by_hand(st.params, st.target_params, jax.tree.map(lambda x, k=k: x[k], v.batches), key)
            for k, key in enumerate(v.keys)
        ]
        for name in got[i]:
            want = np.mean([float(b[name]) for b in per_batch])
            assert got[i][name] == pytest.approx(want, rel=1e-5, abs=1e-6), name


def test_iql_td_error_is_the_ensemble_mean():
    """IQL's critic loss sums its two critics; its val_td_error is their mean, by hand."""
    train, val, _ = split_episodes(state_data(), 2, "synthetic")
    agent = tiny("iql", train)
    v = Validation(agent, val, batches=2)
    st = init_states(agent, [3])
    got = v(st)[0]
    p = unstack(st, 0).params

    @jax.jit
    def td(b):  # y = r + gamma * mask * V(s'); the mean over both critics and the batch
        v_next = agent.nets["value"][0].apply({"params": p["value"]}, b["next_observations"])[0]
        y = b["rewards"] + agent.config.gamma * b["masks"] * v_next
        q_all = agent.nets["critic"][0].apply(
            {"params": p["critic"]}, b["observations"], b["actions"]
        )
        return jnp.mean((q_all - y) ** 2)

    tds = [float(td(jax.tree.map(lambda x, k=k: x[k], v.batches))) for k in range(2)]
    assert got["val_td_error"] == pytest.approx(np.mean(tds), rel=1e-5)
    assert "val_flow_loss" not in got


def test_pixel_metrics_use_validation_frames():
    """Frame-form validation data: the fixed minibatches' frames all come from held-out
    episodes (stacks included), and the metrics are finite."""
    train, val, record = split_episodes(pixel_data(), 2, "pixels")
    config = dataclasses.replace(
        agent_class("bc").Config(), actor_hidden_dims=(8,), batch_size=8, frame_stack=2
    )
    agent = make_agent("bc", config, obs_spec=ObsSpec.of(train["observations"]), action_dim=2)
    v = Validation(agent, val, batches=2)
    obs = np.asarray(v.batches["observations"])  # (batches, B, H, W, 2 * C)
    assert set(np.unique(obs[..., 0::2]).tolist()) <= set(record["val_episodes"])
    assert np.isfinite(v(init_states(agent, [0]))[0]["actor/val_action_mse"])


# ---- select-by -----------------------------------------------------------------------------------
def test_select_by_refusals(tmp_path):
    from gfp.job import make_train_job
    from gfp.run import Training

    pytest.importorskip("pyarrow")
    task = f"lerobot:{FIXTURE}"
    cases = {
        "val_speed": r"is not a metric gfp selects by; valid: success, return",
        "success": r"needs environment evaluation",
        "val_flow_loss": r"agent 'iql' has no val_flow_loss",
        "vabc/val_action_mse": r"agent 'iql' has no policy 'vabc'",
    }
    for metric, message in cases.items():
        job = make_train_job(
            task, "iql", out=tmp_path / "run", no_eval=True, val_episodes=1, select_by=metric,
            steps=10, progress=False,
        )  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            Training(job)
        assert not (tmp_path / "run").exists()  # refused before any run directory
    job = make_train_job(
        task, "iql", out=tmp_path / "run", no_eval=True, select_by="val_action_mse", steps=10,
        progress=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"needs a validation split: hold out episodes"):
        Training(job)


@pytest.mark.slow
def test_no_eval_run_writes_validation_metrics_and_keeps_the_best(tmp_path):
    """gfp train --no-eval --val-episodes 1 --select-by val_action_mse on the LeRobot fixture:
    a row of validation metrics at every evaluation step, and params_best.msgpack holds the
    parameters whose metric is the best row's (re-evaluated from the file)."""
    pytest.importorskip("pyarrow")
    from gfp.job import make_train_job
    from gfp.results import build_results
    from gfp.run import load_run, run_training
    from gfp.rundir import PARAMS_BEST, RunDir

    task = f"lerobot:{FIXTURE}"
    job = make_train_job(
        task, "fql", out=tmp_path / "run", no_eval=True, val_episodes=1,
        select_by="val_action_mse", steps=40, eval_every=10, log_every=10, checkpoint_every=20,
        progress=False, overrides={"batch_size": 16, "actor_hidden_dims": [32],
                                   "value_hidden_dims": [32]},
    )  # fmt: skip
    (summary,) = run_training(job)
    run = RunDir(tmp_path / "run", create=False)
    rows = run.evals.read()
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    agent, final, cfg = load_run(tmp_path / "run")
    names = metric_names(agent)
    assert list(rows[0]) == ["step", "phase", *names]
    assert cfg["dataset"]["info"]["split"]["val_rows"] > 0
    column = [float(r["actor/val_action_mse"]) for r in rows]
    at = int(np.argmin(column))
    best = summary["best"]
    assert best == {"metric": "actor/val_action_mse", "step": 10 * (at + 1), "value": column[at]}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best"] == best
    # re-evaluated from params_best.msgpack: the best row's metric, bit for bit
    _, params, _ = load_run(tmp_path / "run", best=True)
    data = load_dataset(task, val_episodes=1)
    v = Validation(agent, data.val)
    stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], params)
    state = init_states(agent, [0]).replace(params=stacked)
    again = v(state)[0]
    assert again["actor/val_action_mse"] == pytest.approx(best["value"], rel=1e-6)
    assert (tmp_path / "run" / PARAMS_BEST).is_file()
    if at != len(rows) - 1:  # the final parameters are another step's
        pairs = zip(jax.tree.leaves(params), jax.tree.leaves(final), strict=True)
        assert not all(np.array_equal(a, b) for a, b in pairs)
    # resumed from the step-20 checkpoint (the newest one lost): the evaluations up to it are
    # not redone, yet the run ends with the same best and the same params_best.msgpack
    blob = (tmp_path / "run" / PARAMS_BEST).read_bytes()
    meta = run.load_checkpoint()[1]
    assert meta["step"] == 40 and meta["best"] == best
    (tmp_path / "run" / "summary.json").unlink()
    (tmp_path / "run" / "checkpoint.msgpack").unlink()
    from gfp.cli import main

    main(["train", "--resume", str(tmp_path / "run")])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best"] == best
    assert (tmp_path / "run" / PARAMS_BEST).read_bytes() == blob
    assert [int(r["step"]) for r in run.evals.read()] == [10, 20, 30, 40]
    # results.csv carries the columns, per policy
    res = build_results(tmp_path / "run")
    by = {(r["step"], r["policy"]): r for r in res}
    assert by[(best["step"], "actor")]["val_action_mse"] == pytest.approx(best["value"])
    assert by[(10, "flow")]["val_td_error"] == pytest.approx(float(rows[0]["val_td_error"]))


def test_results_and_report_carry_the_validation_columns(tmp_path):
    """results.csv rows take the agent's val_* columns and the row's policy's POLICY/val_*
    ones; they are figures, not swept settings; a report of such runs alone is their table."""
    from gfp.report.main import make_report
    from gfp.report.scores import grid_keys_of
    from gfp.results import build_results, read_results_csv

    for seed, td in ((0, 0.5), (1, 0.25)):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        cfg = {"task": "lerobot:/data/arm", "agent": "fql", "seed": seed, "steps": 20,
               "agent_config": {"alpha": 3.0}}  # fmt: skip
        (run / "config.json").write_text(json.dumps(cfg))
        (run / "eval.csv").write_text(
            "step,phase,val_td_error,val_q_data,actor/val_action_mse,flow/val_action_mse\n"
            f"10,offline,9.0,1.0,0.9,0.8\n20,offline,{td},2.0,{0.1 + seed},0.3\n"
        )
    rows = build_results(tmp_path)
    by = {(r["seed"], r["step"], r["policy"]): r for r in rows}
    assert by[(1, 20, "actor")]["val_action_mse"] == pytest.approx(1.1)
    assert by[(1, 20, "flow")]["val_action_mse"] == pytest.approx(0.3)
    assert by[(0, 20, "flow")]["val_td_error"] == 0.5 and np.isnan(by[(0, 20, "flow")]["success"])
    assert grid_keys_of(rows) == []
    report = make_report([str(tmp_path)], tmp_path / "report")
    (table,) = report.tables
    got = {row.label: [c.mean for c in row.cells] for row in table.rows}
    assert table.header == ["val_td_error", "val_q_data", "val_action_mse"]
    assert got["lerobot:/data/arm, fql/actor"] == pytest.approx([0.375, 2.0, 0.6])
    assert "0.375 ± 0.12" in (tmp_path / "report" / "report.md").read_text()
    again = read_results_csv(tmp_path / "report" / "results.csv")
    assert [r["val_action_mse"] for r in again] == [r["val_action_mse"] for r in rows]


def test_chunked_action_mse_masks_steps_after_the_end():
    """horizon 3 (action chunks): the fixed batches are h-step windows of validation rows, and a
    chunk's action error leaves out its steps after the episode's end (the window's `valid`)."""
    train, val, _ = split_episodes(state_data(), 2, "synthetic")
    agent = tiny("flow_bc", train, horizon=3)
    v = Validation(agent, val, batches=2)
    valid = np.asarray(v.batches["valid"])
    assert v.batches["actions"].shape == (2, 8, 3, 2) and (valid == 0).any()
    got = v(init_states(agent, [0]))[0]
    p = unstack(init_states(agent, [0]), 0).params

    @jax.jit
    def by_hand(batch, key):
        z = jax.random.normal(jax.random.split(key, 3)[2], (8, 6))
        chunk = agent.action(p, batch["observations"], z)  # (B, 3 * 2)
        err = (chunk.reshape(8, 3, 2) - batch["actions"]) ** 2 * batch["valid"][..., None]
        return err.mean()

    want = np.mean([float(by_hand(jax.tree.map(lambda x, k=k: x[k], v.batches), key))
                    for k, key in enumerate(v.keys)])  # fmt: skip
    assert got["actor/val_action_mse"] == pytest.approx(want, rel=1e-5)
