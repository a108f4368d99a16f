"""Issue 18: the run settings are declared once (gfp/settings.py), and the `gfp train` flags, the
sweep's flags and TOML fields, `make_train_job`, config.json's record and its reading back, the
resume check and the run-defining hash all come from that declaration."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from gfp import settings
from gfp.cli import _parse, main
from gfp.errors import ConfigError
from gfp.job import TrainJob, changed_keys, job_from_record, job_record, make_train_job
from gfp.settings import RunSettings, setting
from gfp.sweep.command import _settings
from gfp.sweep.plan import make_plan
from gfp.sweep.spec import SweepSpec, block_from_fields, load_spec
from tests.conftest import TINY_TASK

TASK = "cube-single-noisy-singletask-task1-v0"
TINY = {"actor_hidden_dims": ["16x16"], "value_hidden_dims": ["16x16"], "batch_size": ["16"]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class WithNewSettings(RunSettings):
    """The schema with two settings more, as a developer would add them to RunSettings."""

    warmup_steps: int = setting(
        0,
        "Updates before the actor starts learning (a setting made up by this test).",
        ge=0,
        absent=0,  # runs recorded before it had no warm-up
    )
    report_every: int = setting(
        100,
        "How often a made-up report is printed (decides nothing the run computes).",
        ge=1,
        run_defining=False,
        absent=100,
    )


@pytest.fixture
def new_settings(monkeypatch):
    monkeypatch.setattr(settings, "SCHEMA", WithNewSettings)


def help_of(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside a help line
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code in (0, None)
    return " ".join(capsys.readouterr().out.split())


def sweep_args(*flags: str, out: Path):
    return _parse(["sweep", "--tasks", TINY_TASK, "--agents", "gfp", "--seeds", "0", "--out",
                   str(out), *flags])  # fmt: skip


# ---- (a) a new setting, declared in the schema only --------------------------------------------
def test_a_new_setting_reaches_every_front_end(new_settings, tmp_path, capsys, monkeypatch):
    # the flags of gfp train, gfp sweep and gfp tune, with the declared help
    for command in ("train", "sweep", "tune"):
        text = help_of(command, capsys, monkeypatch)
        assert "--warmup-steps" in text and "Updates before the actor starts learning" in text
    assert "(default: 0)" in help_of("train", capsys, monkeypatch).split("--warmup-steps")[1][:200]
    # gfp train: the flag reaches the job, checked with the declared range
    args = _parse(["train", "--task", TASK, "--warmup-steps", "7"])
    assert args.settings.warmup_steps == 7
    job = make_train_job(TASK, steps=100, out=tmp_path, warmup_steps=7)
    assert job.warmup_steps == 7 and job.settings.warmup_steps == 7
    with pytest.raises(ConfigError, match="warmup_steps = -1 must be >= 0"):
        make_train_job(TASK, steps=100, out=tmp_path, warmup_steps=-1)
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", TASK, "--steps", "10", "--out", str(tmp_path / "r"),
              "--warmup-steps", "-1"])  # fmt: skip
    assert e.value.code == 2 and "warmup_steps = -1 must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

    # the sweep's flags and a TOML spec's fields, into the planned jobs
    args = sweep_args("--warmup-steps", "5", out=tmp_path / "sweep")
    assert _settings(args) == {"warmup_steps": 5}
    block = block_from_fields({"tasks": TINY_TASK, "agents": "gfp", "seeds": "0",
                               "preset": "cpu", **_settings(args)}, "test")  # fmt: skip
    assert block.warmup_steps == 5 and block.report_every == 100  # unset: gfp train's default
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        f'tasks = "{TINY_TASK}"\nagents = "gfp"\nseeds = [0]\npreset = "cpu"\nsteps = 200\n'
        "warmup_steps = 3\nreport_every = 50\n"
    )
    (unit,) = make_plan(load_spec(spec_file), tmp_path / "sweep").units
    assert (unit.job.warmup_steps, unit.job.report_every) == (3, 50)
    spec_file.write_text(
        f'tasks = "{TINY_TASK}"\nagents = "gfp"\nseeds = [0]\nwarmup_steps = "x"\n'
    )
    with pytest.raises(ConfigError, match="spec.toml: warmup_steps must be int, got 'x'"):
        load_spec(spec_file)

    # config.json: recorded, and hashed as run-defining; report_every recorded, not hashed
    record = job_record(unit.job)
    assert (record["warmup_steps"], record["report_every"]) == (3, 50)
    assert list(record).index("warmup_steps") < list(record).index("agent_config")
    other = job_record(dataclasses.replace(unit.job, warmup_steps=4))
    assert other["config_hash"] != record["config_hash"]
    assert changed_keys(record, other) == ["warmup_steps"]
    reported = job_record(dataclasses.replace(unit.job, report_every=10))
    assert reported["config_hash"] == record["config_hash"] and not changed_keys(record, reported)

    # resume: read back; a record made before the settings existed reads their `absent` values
    back = job_from_record({**record, "seed": 0}, "config.json", tmp_path)
    assert (back.warmup_steps, back.report_every) == (3, 50)
    old = {k: v for k, v in record.items() if k not in ("warmup_steps", "report_every")}
    assert job_from_record({**old, "seed": 0}, "c", tmp_path).warmup_steps == 0
    with pytest.raises(ConfigError, match="c: warmup_steps = 'x' must be an integer"):
        job_from_record({**record, "seed": 0, "warmup_steps": "x"}, "c", tmp_path)


def test_resume_refuses_a_new_run_defining_setting_and_takes_the_others(
    new_settings, tmp_path, capsys
):
    from tests.test_cli import write_run_config

    write_run_config(tmp_path / "run", warmup_steps=3)
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(tmp_path / "run"), "--warmup-steps", "9"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "these flags differ from them: --warmup-steps 9 (run: 3)" in err
    from gfp.cli import resume_job

    args = _parse(["train", "--resume", str(tmp_path / "run"), "--report-every", "7"])
    job = resume_job(args)  # not run-defining: the resumed run takes the flag
    assert (job.report_every, job.warmup_steps, job.resume) == (7, 3, True)


# ---- (b) a sweep sets every setting of gfp train -------------------------------------------------
def test_a_sweep_sets_balanced_sampling_and_online_envs(tmp_path):
    args = sweep_args("--online-steps", "40", "--online-envs", "2", "--balanced-sampling", "True",
                      "--buffer-size", "5000", "--eta-online", "0.01", out=tmp_path)  # fmt: skip
    given = _settings(args)
    assert given == {"online_steps": 40, "online_envs": 2, "balanced_sampling": True,
                     "buffer_size": 5000, "eta_online": 0.01}  # fmt: skip
    base = {"tasks": TINY_TASK, "agents": "gfp", "seeds": "0,1", "preset": "cpu", "steps": 100,
            "grid": TINY}  # fmt: skip
    (unit,) = make_plan(SweepSpec([block_from_fields({**base, **given}, "flags")]), tmp_path).units
    job = unit.job
    assert (job.online_steps, job.online_envs, job.balanced_sampling) == (40, 2, True)
    assert (job.buffer_size, job.eta_online, job.total_steps) == (5000, 0.01, 140)
    record = job_record(job)
    assert (record["online_envs"], record["balanced_sampling"]) == (2, True)

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        f'tasks = "{TINY_TASK}"\nseeds = [0]\npreset = "cpu"\nsteps = 100\nonline_steps = 40\n'
        '[[block]]\nagents = "rebrac"\nonline_envs = 4\nbalanced_sampling = true\n'
        '[[block]]\nagents = "bc"\n'
    )
    rebrac, bc = (u.job for u in make_plan(load_spec(spec_file), tmp_path / "toml").units)
    assert (rebrac.agent, rebrac.online_envs, rebrac.balanced_sampling) == ("rebrac", 4, True)
    assert (bc.agent, bc.online_envs, bc.balanced_sampling, bc.online_steps) == ("bc", 1, False, 40)
    # the command line replaces the file's value in every block
    spec = load_spec(spec_file, online_envs=2)
    assert [b.online_envs for b in spec.blocks] == [2, 2]
    # checked across settings as gfp train's: an offline sweep cannot balance its sampling
    spec_file.write_text(f'tasks = "{TINY_TASK}"\nagents = "bc"\nseeds = [0]\nsteps = 100\n'
                         "balanced_sampling = true\n")  # fmt: skip
    with pytest.raises(ConfigError, match="balanced_sampling set without online_steps"):
        make_plan(load_spec(spec_file), tmp_path / "bad")
    spec_file.write_text(f'tasks = "{TINY_TASK}"\nagents = "bc"\nseeds = [0]\n'
                         'balanced_sampling = "yes"\n')  # fmt: skip
    with pytest.raises(ConfigError, match="balanced_sampling must be bool, got 'yes'"):
        load_spec(spec_file)


# ---- (c) each default exists once ----------------------------------------------------------------
def test_the_success_timing_default_is_the_schemas_everywhere(monkeypatch, tmp_path):
    """Every front end takes success_timing's default from the schema: changing it there (here:
    a schema whose default is 'pre') changes it for gfp train, the sweep, the Python API."""

    def defaults() -> list[str]:
        train = _parse(["train"]).settings.success_timing
        sweep = block_from_fields({"tasks": TASK, "agents": "gfp", "seeds": "0"}, "t")
        job = make_train_job(TASK, steps=10, out=tmp_path)
        direct = TrainJob(task=TASK, agent="gfp", config=job.config, steps=10, seeds=[0],
                          out=tmp_path)  # fmt: skip
        return [train, sweep.success_timing, job.success_timing, direct.success_timing]

    assert defaults() == ["post"] * 4

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class PreByDefault(RunSettings):
        success_timing: str = setting("pre", "OGBench success decided before the action.")

    monkeypatch.setattr(settings, "SCHEMA", PreByDefault)
    assert defaults() == ["pre"] * 4


def test_a_record_made_before_success_timing_reads_pre(tmp_path):
    """Runs recorded before success_timing existed were evaluated 'pre' (OGBench >= 1.2's default);
    the schema says so once, and a new run's default stays 'post'."""
    record = {**job_record(make_train_job(TASK, steps=10, out=tmp_path)), "seed": 0}
    assert record["success_timing"] == "post"
    del record["success_timing"]
    assert job_from_record(record, "c", tmp_path).success_timing == "pre"
    (field,) = [s for s in settings.schema() if s.name == "success_timing"]
    assert (field.default, field.absent) == ("post", "pre")
    del record["eval_every"]  # a setting that has always been recorded: refused
    with pytest.raises(ConfigError, match="c: missing key 'eval_every'"):
        job_from_record(record, "c", tmp_path)


# ---- the record and its hash did not change ------------------------------------------------------
# Recorded by the code before the schema (commit 1734d50): config_hash and sha256 of the record's
# JSON (key order included) of fixed jobs. Runs made then must resume: their config.json and hash
# must come out the same. Re-pinned once, when aug_pad's default became the reference's 3 (issue
# 19): with aug_pad = 4 the three jobs still give the hashes recorded at 1734d50
# (c14f35e8bdd8c11e, c9246ae992e80aa5, b2bdd32addcb0da6).
PINNED = {
    "offline": (
        dict(preset="cpu", steps=1000, dataset_dir="/data"),
        "1f0f9e79b8f17e8d",
        "0d55cae9a3a08ad1",
    ),
    "online": (
        dict(
            preset="cpu",
            steps=1000,
            online_steps=40,
            online_envs=2,
            balanced_sampling=True,
            eta_online=0.01,
            buffer_size=5000,
            success_timing="pre",
        ),
        "1f0b3384d8169d9a",
        "6eedbe2f9cbb4f84",
    ),  # fmt: skip
    "paper_fql": (
        dict(
            task="antmaze-large-navigate-singletask-task1-v0",
            agent="fql",
            seeds=[0, 1, 2],
            eval_every=50000,
            log_every=500,
            checkpoint_every=0,
            eval_episodes=10,
        ),
        "abd9b9ecd118d45d",
        "f60a7deb305ee805",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(PINNED))
def test_the_record_and_hash_of_a_fixed_job_are_unchanged(name):
    values, expected_hash, expected_sha = PINNED[name]
    values = dict(values)
    job = make_train_job(values.pop("task", TASK), values.pop("agent", "gfp"), out="x", **values)
    record = job_record(job)
    assert record["config_hash"] == expected_hash
    assert hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16] == expected_sha
    # read back (as --resume does, from the first seed's config.json), it is the same record
    assert job_record(job_from_record({**record, "seed": 0}, "x/seed0/config.json", "x")) == record
    if name != "online":
        assert not set(record) & set(settings.online_only())  # an offline run records none


def test_make_train_job_takes_the_schemas_settings_only(tmp_path):
    with pytest.raises(TypeError, match="'eval_evry'"):
        make_train_job(TASK, steps=10, out=tmp_path, eval_evry=5)
    assert set(settings.names()) >= {"steps", "balanced_sampling", "online_envs", "dataset_dir"}
