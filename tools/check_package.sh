#!/usr/bin/env bash
# Build the sdist and the wheel of whitebox_hf and check that they install and work in a clean environment.
#
#   tools/check_package.sh            # PYTHON (default: .venv/bin/python of the checkout) must have `build`
#   PYTHON=/path/to/python KEEP=1 tools/check_package.sh   # KEEP=1 keeps the work folder
#
# 1. Copies the checkout's files (tracked and untracked-but-not-ignored, as git sees them) to a scratch folder, so
#    that no stale build/ or *.egg-info of the working tree can leak into the artefacts, and runs
#    `python -m build --no-isolation` there: an sdist, then a wheel built from that sdist; then a second wheel
#    straight from the tree. --no-isolation: the build backend (setuptools) comes from PYTHON, offline.
# 2. Checks that the sdist holds every packaged data file of the tree (bundled checkpoints, card template, evaluate
#    metric scripts) and every module, that the wheel holds them, and that both wheels have the same file list.
# 3. "Clean" environment: `python -m venv --without-pip`, whose only link to PYTHON's environment is a .pth file
#    pointing at a folder of symlinks to PYTHON's site-packages entries *minus* whitebox_hf (its dist-info and
#    the editable install's .pth), so the heavy dependencies (torch, transformers, diffusers, ...) are reused
#    but whitebox_hf can come only from what is installed into the new environment. The wheel is installed with
#    `pip install --no-deps --no-index` (pip itself is one of the reused packages); a second environment gets the
#    sdist the same way (pip builds it with the reused setuptools).
# 4. In the wheel's environment, tools/package_smoke_test.py runs from a folder outside the source tree: it asserts
#    whitebox_hf comes from that environment's site-packages, loads the bundled checkpoints, runs one flow-pipeline
#    step, exports the remote code and runs the installed `whitebox-hf` console script. The sdist's environment
#    must hold the same installed files byte for byte (and the same entry points), so the verdict carries over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || { echo "check_package: PYTHON=$PYTHON is not an executable python" >&2; exit 2; }
"$PYTHON" -c "import build" 2>/dev/null || { echo "check_package: $PYTHON lacks 'build' (pip install build)" >&2; exit 2; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/check_package.XXXXXX")"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "work folder: $WORK"; fi
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH

echo "== 1. build (sdist, wheel from the sdist, wheel from the tree)"
mkdir -p "$WORK/tree"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$ROOT" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && cp -P --parents "$f" "$0"; done' "$WORK/tree")
(cd "$WORK/tree" && "$PYTHON" -m build --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1) \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
(cd "$WORK/tree" && "$PYTHON" -m build --no-isolation --wheel --outdir "$WORK/direct" . >>"$WORK/build.log" 2>&1) \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
SDIST="$(ls "$WORK"/dist/*.tar.gz)"; WHEEL="$(ls "$WORK"/dist/*.whl)"; DIRECT="$(ls "$WORK"/direct/*.whl)"
ls -l "$SDIST" "$WHEEL"

echo "== 2. contents"
"$PYTHON" - "$WORK/tree" "$SDIST" "$WHEEL" "$DIRECT" <<'PY'
import sys, tarfile, tomllib, zipfile
from pathlib import Path

tree, sdist, wheel, direct = Path(sys.argv[1]), *sys.argv[2:]
package = tree / "src" / "whitebox_hf"
# What the installed package needs besides its modules: pyproject.toml's [tool.setuptools.package-data].
patterns = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["whitebox_hf"]
data = sorted(str(p.relative_to(package.parent)) for pattern in patterns for p in package.glob(pattern)
              if p.is_file())
if not any(f.startswith("whitebox_hf/bundled/") and f.endswith(".safetensors") for f in data):
    raise SystemExit(f"package-data {patterns} matches no bundled checkpoint")
modules = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*.py") if "__pycache__" not in p.parts)
with tarfile.open(sdist) as tar:
    prefix = tar.getnames()[0].split("/")[0]
    in_sdist = {name[len(prefix) + len("/src/"):] for name in tar.getnames() if name.startswith(f"{prefix}/src/")}
names = {path: sorted(zipfile.ZipFile(path).namelist()) for path in (wheel, direct)}
in_wheel = set(names[wheel])
for label, have in (("sdist", in_sdist), ("wheel", in_wheel)):
    missing = [f for f in data + modules if f not in have]
    if missing:
        raise SystemExit(f"the {label} lacks {len(missing)} file(s): {missing[:10]}")
if names[wheel] != names[direct]:
    raise SystemExit(f"the wheel built from the sdist and the wheel built from the tree differ: "
                     f"{sorted(set(names[wheel]) ^ set(names[direct]))[:20]}")
bundled = [f for f in data if f.startswith("whitebox_hf/bundled/")]
print(f"sdist and wheel hold all {len(modules)} modules and {len(data)} data files ({len(bundled)} bundled); "
      f"both wheels list the same {len(names[wheel])} files")
PY

echo "== 3./4. clean environments: install, smoke test"
DEPS_SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$WORK/deps"
for entry in "$DEPS_SITE"/*; do
    name="$(basename "$entry")"
    case "$name" in
        whitebox_hf|whitebox_hf-*|__editable__*whitebox_hf*|*.pth) ;;  # the project itself, and .pth hooks
        *) ln -s "$entry" "$WORK/deps/$name" ;;
    esac
done
mkdir -p "$WORK/outside"
for kind in wheel sdist; do
    artefact="$WHEEL"; [ "$kind" = sdist ] && artefact="$SDIST"
    venv="$WORK/venv-$kind"
    "$PYTHON" -m venv --without-pip "$venv"
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$WORK/deps" > "$site/_check_package_dependencies.pth"
    if "$venv/bin/python" -c "import whitebox_hf" 2>/dev/null; then
        echo "check_package: whitebox_hf is importable in the clean environment before installing it" >&2; exit 1
    fi
    (cd "$WORK/outside" && "$venv/bin/python" -m pip install --quiet --no-deps --no-index --no-build-isolation \
        "$artefact")
    echo "-- $kind: $(basename "$artefact")"
    if [ "$kind" = wheel ]; then
        (cd "$WORK/outside" && "$venv/bin/python" "$ROOT/tools/package_smoke_test.py" "$site")
        WHEEL_SITE="$site"
    else
        # pip built its own wheel from the sdist: it must install byte for byte what the smoke-tested wheel
        # installed (every file of the package, and the entry points that make the console script), so the
        # smoke test's verdict holds for the sdist too without a second run of it.
        "$PYTHON" - "$WHEEL_SITE" "$site" <<'PY'
import hashlib, sys
from pathlib import Path

def installed(site):
    root = Path(site)
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (root / "whitebox_hf").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    (entry_points,) = root.glob("whitebox_hf-*.dist-info/entry_points.txt")
    files["entry_points.txt"] = hashlib.sha256(entry_points.read_bytes()).hexdigest()
    return files

wheel, sdist = map(installed, sys.argv[1:])
differ = sorted(name for name in wheel.keys() | sdist.keys() if wheel.get(name) != sdist.get(name))
if differ:
    raise SystemExit(f"the sdist installs {len(differ)} file(s) unlike the wheel's: {differ[:10]}")
print(f"the sdist installs the same {len(sdist)} files as the wheel, byte for byte")
PY
    fi
done
echo "check_package: OK"
