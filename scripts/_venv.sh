# Sourced by scripts/serve and scripts/test: make .venv (if missing) and install the project
# into it (when pyproject.toml changed since the last install). Needs only python3 >= 3.11.
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
    local stamp=".venv/.reelwire-installed" hash
    hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    # Installed already for this pyproject.toml (an install with the test extras also
    # satisfies a plain one)?
    if [ -f "$stamp" ] && { grep -qxF "$hash [$extras]" "$stamp" || grep -qxF "$hash [test]" "$stamp"; }; then
        return 0
    fi
    echo "reelwire: installing dependencies into .venv${extras:+ (with $extras extras)}" >&2
    local target="." log=".venv/install.log"
    [ -n "$extras" ] && target=".[${extras}]"
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install --editable "$target"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "reelwire: installing into .venv failed; full log in $log" >&2
        return 1
    fi
    echo "$hash [$extras]" >> "$stamp"
}
