# Shared by scripts/run and scripts/test (sourced, not executed).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Never let uv fetch a Python build from outside the package registries: use the one installed.
export UV_PYTHON_DOWNLOADS=never
# The project's virtual environment (uv honours UV_PROJECT_ENVIRONMENT, relative to the root).
VENV="${UV_PROJECT_ENVIRONMENT:-.venv}"
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Sets UV to the command that runs uv, installing uv with pip when it is missing.
ensure_uv() {
    if command -v uv >/dev/null 2>&1; then
        UV=(uv)
        return
    fi
    local py
    py="$(command -v python3 || command -v python || true)"
    [[ -n "$py" ]] || die "Python 3.11 or newer (with pip) is needed"
    say "installing uv with pip"
    "$py" -m pip install --quiet --disable-pip-version-check uv ||
        "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages uv ||
        die "could not install uv with pip"
    if command -v uv >/dev/null 2>&1; then
        UV=(uv)
    else
        UV=("$py" -m uv) # pip put it where PATH does not look (pyenv shims, ~/.local/bin)
    fi
}

# Install the kernel and every distribution of the workspace (plugins/, connectors/, themes/)
# exactly as uv.lock pins them. Extra arguments go to `uv sync` (e.g. --group testplugins).
sync_env() {
    (cd "$ROOT" && "${UV[@]}" sync --all-packages --locked "$@") || return 1
    export VIRTUAL_ENV="$VENV"
    export PATH="$VENV/bin:$PATH"
}
