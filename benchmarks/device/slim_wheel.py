"""Rewrite a wheel without some of its folders, RECORD updated to match.

dm_control's wheel is 56 MB, almost all of it the models and textures of `dm_control.locomotion`
and `dm_control.suite`; OGBench imports only `dm_control.mjcf` (and `dm_control.viewer`'s key
codes), so the device check carries the wheel without those two folders and stays under the
64 MiB that one device call can carry (benchmarks/device/download_wheels.sh).

    python benchmarks/device/slim_wheel.py WHEEL OUT_WHEEL dm_control/locomotion/ dm_control/suite/
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path


def slim_wheel(src: Path, dst: Path, drop: list[str]) -> tuple[int, int]:
    """Copy `src` to `dst` leaving out every member under a prefix in `drop`; returns the number
    of members kept and dropped."""
    kept = dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            name = info.filename
            if any(name.startswith(p) for p in drop):
                dropped += 1
                continue
            data = zin.read(name)
            if name.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(x for x in lines if not any(x.startswith(p) for p in drop)).encode()
            zout.writestr(info, data)
            kept += 1
    return kept, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("drop", nargs="+", help="member prefixes to leave out, e.g. pkg/assets/")
    args = ap.parse_args()
    if args.src.resolve() == args.dst.resolve():
        raise SystemExit("slim_wheel: error: the output must be another file than the input")
    kept, dropped = slim_wheel(args.src, args.dst, args.drop)
    print(f"slim_wheel: {args.dst.name}: kept {kept} members, left out {dropped}")


if __name__ == "__main__":
    main()
