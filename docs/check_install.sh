#!/usr/bin/env bash
# Install gumbelkit as a user would, into clean virtual environments, and check what each gives.
#
#   docs/check_install.sh            # a few minutes; needs the package registry (pip)
#
# 1. The library: a venv holding only torch and numpy; `pip install .` must add gumbelkit and
#    nothing else, `import gumbelkit` must load no application module or dependency, every core
#    example of README.md must run (docs/code_blocks.py --core), and the `gumbelkit` command must
#    say which extra to install.
# 2. The applications: `pip install ".[apps]"` into a second venv gives `gumbelkit --help`,
#    `python -m gumbelkit --help` and a `gumbelkit tour --quick` report.
#
# The working tree (tracked and untracked, not ignored files) is copied first, so the check sees
# your edits and leaves no build files in the repository. TORCH (default torch==2.13.0) is the
# torch requirement to install: on a machine without a local CPU wheel, a plain `pip install torch`
# pulls the CUDA build; use e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gumbelkit-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "copy of the working tree in $WORK/src"
mkdir -p "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) \
    | tar -xf - -C "$WORK/src"

step "1. library: a venv with only torch and numpy, then pip install ."
"$PY" -m venv "$WORK/lib"
LIB="$WORK/lib/bin"
# shellcheck disable=SC2086  # TORCH may carry pip options
"$LIB/pip" install -q $TORCH numpy
"$LIB/pip" freeze | sort > "$WORK/before.txt"
"$LIB/pip" install -q "$WORK/src"
"$LIB/pip" freeze | sort > "$WORK/after.txt"
added=$(comm -13 "$WORK/before.txt" "$WORK/after.txt")
echo "added by pip install .: $added"
if [ "$(printf '%s\n' "$added" | grep -vc '^gumbelkit')" != 0 ]; then
    echo "FAIL: pip install . installed more than gumbelkit" >&2
    exit 1
fi
"$LIB/python" - <<'EOF'
import sys

import gumbelkit

apps_only = ("matplotlib", "scipy", "tqdm", "sklearn", "zarr", "pureml")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in apps_only or m.startswith("gumbelkit.apps"))
assert not loaded, f"import gumbelkit loaded {loaded}"
print(f"import gumbelkit {gumbelkit.__version__}: ok, no application module loaded")
EOF
(cd "$WORK/src" && "$LIB/python" docs/code_blocks.py --core README.md)
set +e
"$LIB/gumbelkit" tour --quick --out "$WORK/tour-lib" 2> "$WORK/lib-cli.txt"
code=$?
set -e
cat "$WORK/lib-cli.txt"
if [ "$code" != 2 ] || ! grep -q 'pip install "gumbelkit\[apps\]"' "$WORK/lib-cli.txt"; then
    echo "FAIL: without the apps extra, gumbelkit tour must exit 2 and name the extra (got $code)" >&2
    exit 1
fi

step "2. applications: pip install \".[apps]\" into a second venv"
"$PY" -m venv "$WORK/apps"
APPS="$WORK/apps/bin"
# shellcheck disable=SC2086
"$APPS/pip" install -q $TORCH numpy
"$APPS/pip" install -q "$WORK/src[apps]"
"$APPS/gumbelkit" --help
"$APPS/python" -m gumbelkit --help > /dev/null
"$APPS/gumbelkit" tour --quick --no-progress --out "$WORK/tour" | tail -n 3
test -s "$WORK/tour/index.html" && test -s "$WORK/tour/results.json"

step "all install checks passed"
