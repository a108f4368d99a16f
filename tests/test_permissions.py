"""Files gfp writes honour the umask, as `open(path, "w")` would (0o666 & ~umask): the atomic
writes of gfp/io.py go through mkstemp, which alone would make every one 0600.

Each umask gets one subprocess (the umask is per process) that generates a tiny OGBench dataset,
trains a tiny run, exports it and prints the mode of every file it made.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gfp.io import current_umask, file_mode

ROOT = Path(__file__).resolve().parents[1]

# Run in the subprocess with the umask under test; argv[1] is the working folder.
MAKE_FILES = textwrap.dedent(
    """
    import json, os, stat, sys
    from pathlib import Path

    from gfp.cli import main
    from gfp.datagen.generate import generate

    work = Path(sys.argv[1])
    task = "cube-single-noisy-singletask-task1-v0"
    train_npz, val_npz = generate(
        "cube-single-noisy-v0", 2, work / "data", workers=1, episode_length=31, progress=False
    )
    run = work / "run"
    main(
        ["train", "--task", task, "--dataset-dir", str(work / "data"), "--steps", "4"]
        + ["--log-every", "2", "--no-eval", "--out", str(run)]
        + ["--actor-hidden-dims", "8", "--value-hidden-dims", "8", "--batch-size", "8"]
    )
    out = work / "actor.onnx"
    main(["export", str(run), "--policy", "actor", "--format", "onnx", "--out", str(out)])
    files = [train_npz, val_npz, out, Path(f"{out}.json")]
    files += [run / n for n in ("config.json", "params.msgpack", "checkpoint.msgpack",
                                "summary.json", "metrics.csv")]
    print(json.dumps({str(p.relative_to(work)): stat.S_IMODE(os.stat(p).st_mode) for p in files}))
    """
)


def modes_under_umask(umask: int, work: Path) -> dict[str, int]:
    """{file: permission bits} of what a dataset generation, a train run and an export wrote in
    a process whose umask is `umask`."""
    script = work / "make_files.py"
    script.write_text(MAKE_FILES)
    proc = subprocess.run(
        ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', sys.executable, str(script), work],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    modes = modes_under_umask(umask, tmp_path)
    assert len(modes) == 9
    wrong = {name: oct(m) for name, m in modes.items() if m != mode}
    assert not wrong, f"umask {umask:03o}: expected {mode:o}, got {wrong}"


def umask_in_child(umask: int) -> dict[str, int]:
    """current_umask() and file_mode() as a process with `umask` computes them."""
    code = (
        "import json; from gfp.io import current_umask, file_mode; "
        "print(json.dumps([current_umask(), file_mode()]))"
    )
    proc = subprocess.run(
        ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, mode = json.loads(proc.stdout)
    return {"umask": got, "mode": mode}


@pytest.mark.parametrize("umask", [0o002, 0o027, 0o077])
def test_umask_is_read_without_changing_it(umask):
    assert umask_in_child(umask) == {"umask": umask, "mode": 0o666 & ~umask}


def test_atomic_writes_get_the_mode_of_an_ordinary_open(tmp_path):
    """In this process: every atomic writer gives its file what open(..., 'w') gives, and the
    umask is the same afterwards."""
    import numpy as np

    from gfp.io import atomic_savez, atomic_write_bytes, atomic_write_json

    before = current_umask()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == file_mode()
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "a.json", {"a": 1})
    atomic_savez(tmp_path / "a.npz", {"x": np.zeros(2)})
    for name in ("a.bin", "a.json", "a.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert current_umask() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
