"""The settings of a run, declared once: `RunSettings`.

Each field is declared with `setting(...)` (the agents' `option`, gfp/agents/configs.py, with a
few more facts): its type, its default, its range, its help, and how it is recorded. Everything
else reads them from here:

* `gfp train`'s flags (`flags_class`): same name, the help below, and the default below (None for
  a `derived` setting: unset, `make_train_job` derives it, as the help's "Unset:" says);
* `gfp sweep` / `gfp tune`'s flags (`flags_class(unset=True)`) and a TOML spec's fields
  (`spec_values`), so every setting of `gfp train` is a setting of a sweep;
* `make_train_job`'s keyword arguments (`given`), the job's checks (`RunSettings.__post_init__`:
  each field's type and range through the agents' one check, then the checks across settings);
* config.json (`record`, `from_record`): a `recorded` setting is a key of its own there; an
  `online` one only for a run with an online phase (so an offline run's config.json and hash are
  those of a gfp without online fine-tuning, and runs made before it resume), a `when_set` one only
  where it is not its default (no_eval); a record made before a setting existed reads the
  setting's `absent` value;
* the run-defining hash and `--resume`'s conflict check (`run_defining`): an edit of a
  run-defining setting changes what the run computes, so a resumed run refuses it.

Adding a run setting: one field here, and the code that uses it (`job.<name>`). This module imports
no JAX (and tyro only to build flags).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from gfp.agents.configs import (
    check_fields,
    check_value,
    describe_kind,
    field_types,
    kind_of,
    kind_problem,
    normalize,
    option,
    parse_value,
    require,
)
from gfp.errors import ConfigError

# REQUIRED as a `default`: a job must give the setting; as `absent`: a record must hold it.
REQUIRED: Any = dataclasses.MISSING
_DEFAULT: Any = object()  # `absent` not given: a record without the key reads the default

# Offline-to-online fine-tuning: the reference code's replay buffer capacity (ZhangJL16/FQLbaseline
# config/main.yaml `buffer_size`, line 32; seohongpark/fql main.py the same), twice a 1M-row
# dataset, so online rows never overwrite dataset rows within 1M online steps.
DEFAULT_BUFFER_SIZE = 2_000_000


def setting(
    default: Any,
    help: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    note: str = "",
    derived: bool = False,
    online: bool = False,
    recorded: bool = True,
    run_defining: bool = True,
    when_set: bool = False,
    absent: Any = _DEFAULT,
    bare: Any = None,
    metavar: str | None = None,
) -> Any:
    """A run setting (module docstring). `note`: said after a range error ("0: offline only").
    `derived`: unset on the command line (None), `make_train_job` computes it. `online`: recorded
    only for a run with an online phase. `recorded`: a key of config.json. `run_defining`: hashed,
    and not to be changed on resume. `when_set`: recorded only when not its default (a run
    without it keeps the config.json and hash it had before the setting existed). `absent`: the
    value of a record without the key (one made before the setting existed); REQUIRED: such a
    record is refused. Unless given, an online or when_set setting's absent value is its default
    (records without it leave it out) and any other setting is REQUIRED. `bare`: the value of the
    flag given without one (`--wandb` alone: 'gfp'); None: the flag takes a value. `metavar`: its
    value's name in --help."""
    if absent is _DEFAULT:
        absent = default if online or when_set else REQUIRED
    return option(
        default,
        help,
        gt=gt,
        ge=ge,
        lt=lt,
        le=le,
        plain_range=True,
        note=note,
        setting={
            "derived": derived,
            "online": online,
            "recorded": recorded,
            "run_defining": run_defining,
            "when_set": when_set,
            "absent": absent,
            "bare": bare,
            "metavar": metavar,
        },
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings of one run (the order is config.json's)."""

    steps: int = setting(
        REQUIRED,
        "Gradient steps. Unset: the paper's budget (1M, 500K on D4RL/pixel) or 40K with "
        "--preset cpu.",
        ge=1,
        derived=True,
    )
    preset: str = setting(
        "paper",
        "'paper' (the paper's sizes + per-task table), 'cpu' (smaller networks/batch, same "
        "algorithm), 'qc' (Q-chunking's settings on its OGBench domains: horizon 5, its alpha "
        "and N; gfp presets shows what it cannot set), 'awr', a user preset such as 'tuned' "
        "(gfp tune), or a FILE.csv. Unset: paper, or cpu for gfp train's built-in default job.",
        derived=True,
    )
    # eval_every, checkpoint_every: their range (0 to the run's steps) is checked with the steps.
    eval_every: int = setting(
        0,
        "Evaluate every E steps (and at the end). Unset: 100K (paper) or steps/2 (cpu); 0 = only "
        "at the end.",
        derived=True,
    )
    eval_episodes: int = setting(
        50, "Episodes per evaluation (the paper's final protocol uses 100).", ge=1
    )
    no_eval: bool = setting(
        False,
        "Train without environment evaluation (eval.csv holds only validation metrics, if the data "
        "has a validation split; no video; the check that the data fits its environment is "
        "skipped): e.g. D4RL data where the d4rl package cannot be installed.",
        # What the run computes is the same: training does not depend on evaluation.
        run_defining=False,
        when_set=True,
    )
    log_every: int = setting(
        1000,
        "Average metrics over this many updates per log row (also the fused scan length).",
        ge=1,
    )
    checkpoint_every: int = setting(
        0,
        "Write a checkpoint (full train state + log positions) every C steps, at the end and on "
        "SIGINT/SIGTERM. Unset: every 10K steps (rounded down to a multiple of --log-every), or "
        "every evaluation if that is more often; 0 = only at the end.",
        derived=True,
    )
    success_timing: Literal["post", "pre"] = setting(
        "post",
        "OGBench singletask success (and termination) decided 'post' (after the action: OGBench "
        "< 1.2, the paper's numbers) or 'pre' (before it: OGBench 1.2's default). Datasets are "
        "equal.",
        # Runs recorded before this setting existed were evaluated with OGBench's own default,
        # which is 'pre' from OGBench 1.2 on: resuming them keeps the timing they ran with.
        absent="pre",
    )
    online_steps: int = setting(
        0,
        "Offline-to-online fine-tuning: after --steps offline updates, this many environment "
        "steps, each followed by one update (the policy acts with its exploration noise, the "
        "reference's temperature 1; its transitions join a replay buffer that starts as the "
        "dataset). 0: offline only.",
        ge=0,
        note="0: offline only",
        online=True,
    )
    balanced_sampling: bool = setting(
        False,
        "Online: half of each minibatch from the dataset, half from a buffer of online "
        "transitions (otherwise one buffer that starts as the dataset).",
        online=True,
    )
    # buffer_size >= online_envs is checked with online_envs.
    buffer_size: int = setting(
        DEFAULT_BUFFER_SIZE,
        "Online: replay buffer capacity (at least the dataset size + 1 without "
        "--balanced-sampling); once full, the oldest rows are overwritten.",
        online=True,
    )
    online_envs: int = setting(
        1,
        "Online: environments stepped in parallel (worker processes), with as many updates after "
        "each collection step, keeping one update per environment step; 1 is the reference "
        "protocol.",
        ge=1,
        online=True,
    )
    # eta_online's range is the agent's eta's (checked by the job, which knows the agent).
    eta_online: float | None = setting(
        None,
        "Online, GFP: the guidance temperature from the first online step. Unset: the offline eta.",
        online=True,
    )
    wandb: str | None = setting(
        None,
        "Also log the run to Weights & Biases, in project PROJECT (--wandb alone: 'gfp'): the "
        "metrics, evaluations and exploration episodes TensorBoard gets, config.json, the final "
        "figures of summary.json and the --video files; one W&B run per seed and per session (a "
        "resumed run starts a new one from its checkpoint's step). Needs pip install -e "
        '".[wandb]"; WANDB_MODE=offline keeps it on this machine (wandb sync uploads it later).',
        # Where the figures are shown, not what is computed: not recorded, so a resumed run logs
        # to W&B only when given --wandb again.
        recorded=False,
        run_defining=False,
        bare="gfp",
        metavar="PROJECT",
    )
    data_placement: Literal["auto", "device", "host", "disk"] = setting(
        "auto",
        "Where the training data lives: 'device' (copied to the accelerator once), 'host' (host "
        "memory; minibatches gathered by host threads and prefetched), 'disk' (memory-mapped .npy "
        "files written next to the run, for data larger than host memory) or 'auto': the device "
        "when the data fits half its memory, else host memory when it fits half the available "
        "memory, else disk. Every placement trains bit-identically.",
        # Where the data is, not what is computed (the same minibatches everywhere): not recorded,
        # so a resumed run may place its data differently on another machine.
        recorded=False,
        run_defining=False,
    )
    obs_keys: str | None = setting(
        None,
        "LeRobot datasets: the features that make the observation, comma-separated, e.g. "
        "observation.state, or one camera, observation.images.top (KEY@HxW: decoded at that "
        "resolution). Unset: observation.state, else the dataset's one camera.",
        # Recorded only when given (every other run's config.json stays as it was) and not
        # hashed (every hash stays as it was): the data it picks is checked on resume by the
        # dataset's fingerprint and shape, as dataset_dir's is.
        run_defining=False,
        when_set=True,
        metavar="KEYS",
    )
    reward: str | None = setting(
        None,
        "Where the rewards come from (LeRobot datasets): a column (a feature's name), or a rule: "
        "'success' (sparse: -1 per step, 0 at the first success, the episode ends there; from "
        "next.success, or success:COLUMN), 'episode-end' (the same, success at each episode's "
        "last frame). Unset: next.reward when present.",
        # Recorded and hashed only when given (every other run's config.json and hash stay).
        when_set=True,
        metavar="COLUMN|RULE",
    )
    val_episodes: float = setting(
        0.0,
        "Hold out whole episodes as a validation split: N episodes (an integer >= 1) or a "
        "fraction of them (0 < f < 1), never trained on. 0: the dataset's own validation split, "
        "if it has one.",
        ge=0,
        when_set=True,
        metavar="N|FRACTION",
    )
    select_by: str | None = setting(
        None,
        "Keep the parameters of the best evaluation by this metric (an eval.csv column, e.g. "
        "success or val_td_error) next to the final ones (params_best.msgpack).",
        run_defining=False,  # what is trained is the same; only which parameters are also kept
        when_set=True,
        metavar="METRIC",
    )
    dataset_dir: Path | None = setting(
        None,
        "Where the dataset files live. Unset: OGBench's default directory (~/.ogbench/data), or "
        "the gfp cache (~/.cache/gfp/data, GFP_DATA_DIR) for gfp train's built-in default job.",
        derived=True,
        run_defining=False,  # the data may move; its checksum makes sure it is the same data
        absent=None,
    )

    def __post_init__(self) -> None:
        check_fields(self)  # each value's type and range
        self.check_together()

    @property
    def total_steps(self) -> int:
        """Updates of the whole run: the offline steps, then one per online environment step."""
        return self.steps + self.online_steps

    def check_together(self) -> None:
        """The checks across settings (those across a setting and the agent: TrainJob's)."""
        total = self.total_steps
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            require(
                0 <= v <= total,
                f"{name} = {v!r} must be between 0 (never; only at the end) and the run's steps "
                f"({total})",
            )
        project = self.wandb
        require(
            project is None or (bool(project.strip()) and not set(project) & set("/\\#?%:")),
            f"wandb = {project!r} must be a Weights & Biases project name (not empty, none of "
            "/ \\ # ? % :)",
        )
        v = self.val_episodes
        require(
            v < 1 or float(v).is_integer(),
            f"val_episodes = {v!r} must be a number of episodes (an integer >= 1) or a fraction "
            "of them (0 < f < 1)",
        )
        m, e, b = self.online_steps, self.online_envs, self.buffer_size
        require(
            m % e == 0,
            f"online_steps = {m} must be a multiple of online_envs = {e} (each collection step "
            "steps every environment once)",
        )
        require(b >= e, f"buffer_size = {b!r} must be >= online_envs ({e})")
        require(
            not (self.no_eval and m),
            "no_eval with online_steps: online fine-tuning steps the environment, so it needs one "
            "(drop no_eval / --no-eval)",
        )
        if m == 0:
            # buffer_size has always been accepted (and unused) by an offline run
            given = [
                s.name
                for s in schema(type(self))
                if s.online
                and s.name not in ("online_steps", "buffer_size")
                and getattr(self, s.name) != s.default
            ]
            require(not given, f"{', '.join(given)} set without online_steps (an offline run)")


# The schema every front end reads (a test may put a subclass with one more setting here).
SCHEMA: type[RunSettings] = RunSettings


@dataclasses.dataclass(frozen=True)
class Setting:
    """One field of the schema, as the front ends read it."""

    name: str
    hint: Any
    default: Any  # REQUIRED: a job must give it
    help: str
    derived: bool
    online: bool
    recorded: bool
    run_defining: bool
    when_set: bool  # recorded only when not its default
    absent: Any  # REQUIRED: a record must hold it
    bare: Any  # the value of the flag given alone; None: the flag takes a value
    metavar: str | None  # its value's name in --help (None: tyro's)
    field: dataclasses.Field

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flag_default(self) -> Any:
        """gfp train's default: None (unset) for a derived setting."""
        return None if self.derived else self.default

    @property
    def flag_type(self) -> Any:
        # A choice is a text flag: the job's one-line error names the choices.
        hint = str if isinstance(kind_of(self.hint), tuple) else self.hint
        return Optional[hint] if self.flag_default is None else hint  # noqa: UP045 (tyro)


def schema(cls: type[RunSettings] | None = None) -> tuple[Setting, ...]:
    """The run settings of `cls` (default: SCHEMA), in order."""
    cls = cls or SCHEMA
    hints = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata["setting"]
        out.append(Setting(f.name, hints[f.name], f.default, f.metadata["help"], field=f, **meta))
    return tuple(out)


def names(cls: type[RunSettings] | None = None) -> list[str]:
    return [s.name for s in schema(cls)]


def check_setting(name: str, value: Any) -> None:
    """One setting's type and range (ConfigError otherwise), before the job derives others
    from it."""
    s = {s.name: s for s in schema()}[name]
    check_value(name, normalize(value, kind_of(s.hint)), s.hint, s.field.metadata)


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting from keyword arguments (`make_train_job`'s): an unset one (absent or None)
    is gfp train's flag default, which is None for a derived setting. TypeError for a name that
    is no setting, as for an unknown keyword."""
    known = {s.name: s for s in schema()}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    return {n: s.flag_default if values.get(n) is None else values[n] for n, s in known.items()}


# ---- config.json --------------------------------------------------------------------------------
def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def record(settings: RunSettings) -> dict[str, Any]:
    """The recorded settings, as config.json holds them (JSON types)."""
    online = settings.online_steps > 0
    return {
        s.name: _json(getattr(settings, s.name))
        for s in schema(type(settings))
        if s.recorded
        and (online or not s.online)
        and (not s.when_set or getattr(settings, s.name) != s.default)
    }


def from_record(rec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The settings a config.json holds (each key that is missing: its `absent` value, or a
    ConfigError naming `where` and the key)."""
    out = {}
    for s in schema():
        if not s.recorded:
            continue
        if s.name in rec:
            out[s.name] = rec[s.name]
        else:
            require(s.absent is not REQUIRED, f"{where}: missing key {s.name!r}")
            out[s.name] = s.absent
    return out


def run_defining() -> list[str]:
    """The run-defining settings (the hash's and --resume's), in order."""
    return [s.name for s in schema() if s.run_defining]


def when_set_only() -> list[str]:
    """Settings recorded (and hashed) only where they are not their default."""
    return [s.name for s in schema() if s.when_set]


def online_only() -> list[str]:
    """Settings recorded (and hashed) only for a run with an online phase."""
    return [s.name for s in schema() if s.online]


# ---- front ends ---------------------------------------------------------------------------------
def flags_class(name: str, *, unset: bool = False) -> type:
    """A tyro dataclass with one flag per run setting. gfp train's (`unset` False): each flag's
    default is gfp train's. A sweep's (`unset` True): every flag None, not given (the spec's value,
    else gfp train's default, holds)."""
    import tyro

    fields = []
    for s in schema():
        typ, default, text = s.flag_type, s.flag_default, s.help
        if unset and default is not None:
            text = f"{text} Unset: {_json(default)}."
            typ, default = Optional[typ], None  # noqa: UP045 (tyro)
        arg = tyro.conf.arg(help=text)
        if s.bare is not None:
            typ = Annotated[typ, _optional_value(s)]
        fields.append((s.name, Annotated[typ, arg], dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields)


def _optional_value(s: Setting) -> Any:
    """How tyro parses a flag whose value may be left out: `--wandb` (s.bare), `--wandb NAME`."""
    import tyro

    def parse(args: list[str]) -> Any:
        if len(args) > 1:
            raise ValueError(f"takes at most one value, got {len(args)}: {' '.join(args)}")
        return parse_value(args[0], kind_of(s.hint)) if args else s.bare

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs="*",
        metavar=f"[{s.metavar or s.name.upper()}]",
        instance_from_str=parse,
        is_instance=lambda v: v is None or kind_problem(v, kind_of(s.hint)) is None,
        str_from_instance=lambda v: [str(v)],
    )


def with_flags(cls: type, *, unset: bool = False, then: Iterable[tuple] = ()) -> type:
    """The command dataclass `cls` with one more field, `settings`: the run settings' flags
    (`flags_class`), without a prefix (--steps), and the fields `then` after it. Built when the
    command line is parsed, so the flags are those of the schema then."""
    import tyro

    flags = flags_class(f"{cls.__name__}Settings", unset=unset)
    field = ("settings", Annotated[flags, tyro.conf.arg(name="")], dataclasses.field(
        default_factory=flags))  # fmt: skip
    return dataclasses.make_dataclass(
        cls.__name__, [field, *then], bases=(cls,), namespace={"__doc__": cls.__doc__}
    )


def flag_values(flags: Any) -> dict[str, Any]:
    """The run settings of a parsed flags object (`flags_class`)."""
    return {n: getattr(flags, n) for n in names()}


def spec_values(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Settings as a sweep spec gives them (a TOML table, or the sweep's flags), each of its type:
    ConfigError naming `where` and the field otherwise (a path may start with ~)."""
    known = {s.name: s for s in schema()}
    out = {}
    for key, value in table.items():
        s = known[key]
        kind = kind_of(s.hint)
        value = normalize(value, kind)
        if isinstance(value, Path):
            value = value.expanduser()
        if value is not None and kind_problem(value, kind) is not None:
            raise ConfigError(f"{where}: {key} must be {describe_kind(kind)}, got {value!r}")
        out[key] = value
    return out
