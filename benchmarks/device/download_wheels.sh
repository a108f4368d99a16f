#!/usr/bin/env bash
# Download, here, exactly the wheels named in benchmarks/device/wheels.txt for the device
# machine's Python (CPython 3.12, manylinux x86_64) into WHEEL_DIR (default: .whl at the
# repository root, git-ignored), which `run` carries (carry: [".whl"]). dm_control's wheel is
# rewritten without its locomotion and suite models (benchmarks/device/slim_wheel.py says why).
# Prints the total size: the carried working tree must stay under 64 MiB.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${WHEEL_DIR:-$root/.whl}
py=${PYTHON:-$root/.venv/bin/python}
mapfile -t specs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$root/benchmarks/device/wheels.txt" | grep -v '^$')
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$tmp" "${specs[@]}"
count=$(find "$tmp" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$count" -ne "${#specs[@]}" ]; then
  echo "download_wheels: error: pip saved $count wheels, wheels.txt names ${#specs[@]}" >&2
  exit 2
fi
rm -rf "$dest" && mkdir -p "$dest"
for whl in "$tmp"/*.whl; do
  case $(basename "$whl") in
    dm_control-*) "$py" "$root/benchmarks/device/slim_wheel.py" "$whl" "$dest/$(basename "$whl")" \
                    dm_control/locomotion/ dm_control/suite/ ;;
    *) mv "$whl" "$dest/" ;;
  esac
done
du -cb "$dest"/*.whl | tail -1 |
  awk -v n="$count" -v d="$dest" '{printf "download_wheels: %d wheels, %.1f MiB in %s\n", n, $1/1048576, d}'
