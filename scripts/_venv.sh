# Sourced by scripts/serve and scripts/test: make .venv (if missing) and install the project
# into it from the lock files (when pyproject.toml or the lock changed since the last install).
# Needs only python3 >= 3.11. Update the locks with scripts/lock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "reelwire: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

lock_file() { echo "requirements${1:+-$1}.lock"; }
lock_hash() { cat pyproject.toml "$(lock_file "$1")" | sha256sum | cut -d' ' -f1; }
installed() {
    [ -f .venv/.reelwire-installed ] &&
        grep -qxF "$(lock_hash "$1") [$1]" .venv/.reelwire-installed
}

ensure_venv() {
    local extras="$1"   # "", "test" or "bench"
    if [ ! -x .venv/bin/python ]; then
        local python
        python="$(find_python)"
        echo "reelwire: creating .venv with $("$python" --version)" >&2
        "$python" -m venv .venv || {
            echo "reelwire: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
            return 1
        }
    fi
    # Exact versions with their hashes come from the lock for these extras (runtime, test, or
    # bench, each a superset of the one before); Reelwire itself is installed without deps.
    # --no-compile: Python compiles what is imported when it is first imported, not all of
    # botocore and friends up front (a third of a first install's time).
    local lock
    lock="$(lock_file "$extras")"
    # Installed already from this lock, or from a lock that holds it (bench > test > plain)?
    case "$extras" in
        "") installed "" || installed test || installed bench && return 0 ;;
        test) installed test || installed bench && return 0 ;;
        *) installed "$extras" && return 0 ;;
    esac
    local log=".venv/install.log"
    echo "reelwire: installing dependencies into .venv from $lock; a first install takes a minute or two (full log: $log)" >&2
    : >"$log"
    # A venv's own pip is new enough from 23 on (hashes, editable installs from pyproject).
    if ! { .venv/bin/python -c 'import pip, sys; sys.exit(int(pip.__version__.split(".")[0]) < 23)' ||
           pip_step "$log" "1/3 updating pip" install --upgrade pip; } ||
       ! pip_step "$log" "2/3 installing the locked dependencies" install --require-hashes --no-deps --no-compile -r "$lock" ||
       ! pip_step "$log" "3/3 installing Reelwire" install --no-deps --no-build-isolation --editable .; then
        tail -n 40 "$log" >&2
        echo "reelwire: installing into .venv failed; full log in $log" >&2
        return 1
    fi
    echo "reelwire: .venv is ready" >&2
    echo "$(lock_hash "$extras") [$extras]" >> .venv/.reelwire-installed
}

# pip_step LOG TITLE PIP-ARGS...: run pip with its whole output appended to LOG, showing a line
# per package as pip reaches it (collected, downloaded with its size, built, installed), so a
# long first install is never silent. Returns pip's status, not the filter's.
pip_step() {
    local log="$1" title="$2"
    shift 2
    echo "reelwire: [$title]" >&2
    PYTHONUNBUFFERED=1 .venv/bin/python -m pip "$@" --progress-bar off 2>&1 |
        tee -a "$log" |
        awk '
            function step(text) { print "  " text; fflush() }
            /^Collecting / { n++; step(sprintf("%3d  %s", n, substr($0, 12))); next }
            /^Processing / {
                n++; k = split($2, path, "/")
                step(sprintf("%3d  %s", n, path[k])); next
            }
            /^ *Downloading / { sub(/^ */, ""); step("     " $0); next }
            /^ *Installing build dependencies: started/ { step("preparing the build"); next }
            /^ *Building editable for .*: started/ { step("building " $4); next }
            /^Installing collected packages:/ {
                k = split(substr($0, 32), names, ",")
                step(sprintf("installing %d package(s)...", k)); next
            }
            /^Successfully installed/ { step("installed"); next }
            /^(ERROR|error):/ { step($0); next }
        ' >&2
    return "${PIPESTATUS[0]}"
}
