"""gfp_deploy refuses what it cannot run faithfully, each with one line and its own exception
type (InvalidInput, InvalidModel: both ValueError): NaN / inf observations or noise, a damaged
model file (also when its sidecar's sha256 was made to match it), a sidecar whose shapes are not
the model's.

One tiny policy is exported per module: a random-parameter run with OGBench cube-single's sizes
(28 -> 5), so the sidecar names the observation dimensions and the messages can name them too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gfp.agents.base import ObsSpec
from gfp.deploy import DeployError, InvalidInput, InvalidModel, load_policy, sidecar_path
from gfp.export import cli_main
from tests.test_export import write_run

OBS, ACT = 28, 5


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("deploy_inputs")
    write_run(path / "run", "gfp", ObsSpec((OBS,), "float32"), act_dim=ACT)
    cli_main(path / "run", "actor", "onnx", path / "actor.onnx", "dynamic", False)
    return path / "actor.onnx"


def copy_policy(src: Path, dst: Path, blob: bytes | None = None, **sidecar) -> Path:
    """`src` and its sidecar copied to `dst` (the model replaced by `blob`, sidecar keys by
    `sidecar`)."""
    shutil.copyfile(src, dst)
    if blob is not None:
        dst.write_bytes(blob)
    meta = json.loads(sidecar_path(src).read_text()) | sidecar
    sidecar_path(dst).write_text(json.dumps(meta))
    return dst


def refusal(kind: type[DeployError], call, *args) -> str:
    """The one-line message of `kind` that `call(*args)` raises, with no chained traceback."""
    with pytest.raises(kind) as e:
        call(*args)
    message = str(e.value)
    assert "\n" not in message and message.strip()
    assert e.value.__cause__ is None and (
        e.value.__context__ is None or e.value.__suppress_context__
    )
    assert isinstance(e.value, ValueError)  # callers catching ValueError keep working
    return message


def observations(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, OBS)).astype(np.float32), rng.standard_normal((n, ACT)).astype(
        np.float32
    )


# ---- NaN and inf ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observation_is_refused_naming_the_dimensions(exported, bad):
    policy = load_policy(exported)
    obs, z = observations()
    assert np.all(np.isfinite(policy(obs, z)))  # the same call with finite values runs
    obs[1, 3] = bad
    obs[2, 20] = bad
    msg = refusal(InvalidInput, policy, obs, z)
    assert "obs" in msg and ("NaN" if np.isnan(bad) else "inf") in msg
    names = policy.observation_names
    assert names is not None and len(names) == OBS
    assert f"3 ({names[3]})" in msg and f"20 ({names[20]})" in msg
    assert "row(s) 1, 2" in msg
    # One observation (no batch axis), through act() as well.
    single = np.zeros(OBS, np.float32)
    single[7] = bad
    assert f"7 ({names[7]})" in refusal(InvalidInput, policy, single)


def test_non_finite_noise_is_refused(exported):
    policy = load_policy(exported)
    obs, z = observations()
    z[0, 4] = np.nan
    msg = refusal(InvalidInput, policy, obs, z)
    assert "'z'" in msg and "dimension(s) 4" in msg


# ---- damaged model files ------------------------------------------------------------------------
def flipped(blob: bytes, position: int) -> bytes:
    damaged = bytearray(blob)
    damaged[position] ^= 0xFF
    return bytes(damaged)


def test_damaged_model_is_refused(exported, tmp_path):
    """A byte flipped in the protobuf's structure (onnxruntime cannot load it) or in the weights
    (it loads and runs, with other actions): refused whether or not the sidecar's sha256 was
    updated to match the damaged file."""
    blob = exported.read_bytes()
    messages = []
    for position in (0, len(blob) // 2):
        damaged = flipped(blob, position)
        stale = copy_policy(exported, tmp_path / f"stale{position}.onnx", damaged)
        assert "sha256" in refusal(InvalidModel, load_policy, stale)
        matched = copy_policy(
            exported,
            tmp_path / f"matched{position}.onnx",
            damaged,
            model_sha256=hashlib.sha256(damaged).hexdigest(),
        )
        msg = refusal(InvalidModel, load_policy, matched)
        assert str(matched) in msg
        messages.append(msg)
    assert "cannot load the model" in messages[0]  # onnxruntime's refusal, as one line
    assert "self-test" in messages[1] and "damaged" in messages[1]  # the weights' damage
    # The intact file loads.
    assert load_policy(copy_policy(exported, tmp_path / "intact.onnx")).action_dim == ACT


def test_sidecar_without_self_test_still_loads(exported, tmp_path):
    """Sidecars of older exports have no self_test: they load as before."""
    meta = json.loads(sidecar_path(exported).read_text())
    assert meta["self_test"]["batch"] == 1 and len(meta["self_test"]["actions"][0]) == ACT
    old = copy_policy(exported, tmp_path / "old.onnx", self_test=None)
    obs, z = observations()
    np.testing.assert_array_equal(load_policy(old)(obs, z), load_policy(exported)(obs, z))


# ---- sidecar shapes against the model's ---------------------------------------------------------
def test_sidecar_shapes_that_are_not_the_models_are_refused(exported, tmp_path):
    meta = json.loads(sidecar_path(exported).read_text())
    inputs, outputs = meta["inputs"], meta["outputs"]

    wider = [dict(inputs[0], shape=["batch", OBS + 1]), inputs[1]]
    p = copy_policy(
        exported,
        tmp_path / "obs.onnx",
        inputs=wider,
        observation={**meta["observation"], "shape": [OBS + 1]},
    )
    msg = refusal(InvalidModel, load_policy, p)
    assert "'obs'" in msg and f"[batch, {OBS + 1}]" in msg and f"[batch, {OBS}]" in msg

    fixed = [dict(i, shape=[2, *i["shape"][1:]]) for i in inputs]
    p = copy_policy(exported, tmp_path / "batch.onnx", inputs=fixed, batch=2)
    msg = refusal(InvalidModel, load_policy, p)
    assert f"[2, {OBS}]" in msg and f"[batch, {OBS}]" in msg

    p = copy_policy(
        exported, tmp_path / "act.onnx", outputs=[dict(outputs[0], shape=["batch", ACT - 1])]
    )
    msg = refusal(InvalidModel, load_policy, p)
    assert "output 'action'" in msg and f"[batch, {ACT - 1}]" in msg and f"[batch, {ACT}]" in msg

    # The sidecar's own observation shape must fit its input list.
    p = copy_policy(
        exported, tmp_path / "own.onnx", observation={**meta["observation"], "shape": [3]}
    )
    msg = refusal(InvalidModel, load_policy, p)
    assert "[3]" in msg and f"[{OBS}]" in msg
