# Shared by scripts/test and scripts/demo: output helpers, apt, and the project's .venv.
# Source it from the repository root. Sets VENV and STAMP unless already set.
# shellcheck shell=bash

VENV=${VENV:-.venv}
STAMP="$VENV/.adapter-install-stamp"
APT_UPDATED=0

section() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'scripts/test: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# True when something accepts a TCP connection on $HOST:$1 within two seconds.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# Wait up to $2 seconds for $HOST:$1 to accept connections.
wait_port() {
    local port=$1 deadline=$((SECONDS + $2))
    until port_open "$port"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 1
    done
}

# Install Debian packages (root only), running `apt-get update` once per run.
apt_install() {
    is_root || return 1
    command -v apt-get >/dev/null || return 1
    if [ "$APT_UPDATED" -eq 0 ]; then
        note "apt-get update"
        apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    note "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || return 1
}

# --- Python environment --------------------------------------------------------------------

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

venv_usable() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

make_venv() {
    local python
    python=$(find_python) || die "needs Python >= 3.11 as python3 (or set PYTHON)"
    rm -rf "$VENV"
    note "creating $VENV with $python ($("$python" --version 2>&1))"
    if "$python" -m venv "$VENV" >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$VENV"
    # Debian ships venv's ensurepip separately, in python3-venv.
    if is_root && apt_install python3-venv && "$python" -m venv "$VENV"; then
        return 0
    fi
    rm -rf "$VENV"
    die "'$python -m venv' failed; install python3-venv (apt-get install python3-venv) and retry"
}

install_project() {
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" --version 2>&1)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        note "pyproject.toml unchanged since the last install: skipping pip install"
        return 0
    fi
    note "pip install -e '.[test]'"
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e '.[test]' ||
        die "pip install -e '.[test]' failed"
    printf '%s\n' "$want" >"$STAMP"
}

# Make sure .venv exists with the project and its test tools installed.
ensure_venv() {
    venv_usable || make_venv
    install_project
}
