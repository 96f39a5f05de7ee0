# Sourced by the ops/* entry points: make sure .venv exists with the project installed.
# Finds Python 3.11–3.13 (trio-asyncio does not import on 3.14), installs it with apt as root when
# missing, and reinstalls the project only when pyproject.toml changed.

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="$ROOT/.venv"
# The stack's state folder (ops/localstack/procs.py): run records, the env file, logs.
STATE_DIR="${BFF_STACK_STATE:-.state}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$ROOT/$STATE_DIR" ;; esac

_say() { printf '[stack] %s\n' "$*" >&2; }

_find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

_apt_install() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    _say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    _say "missing system packages; run: sudo apt-get install -y $*"
    return 1
  fi
}

ensure_venv() {
  local python stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    python="$(_find_python)" || { _apt_install python3 python3-venv python3-dev && python="$(_find_python)"; } || {
      _say "need Python 3.11, 3.12 or 3.13"; exit 1; }
    _say "creating $VENV with $python"
    "$python" -m venv "$VENV" 2>/dev/null || {
      rm -rf "$VENV"
      _apt_install python3-venv && "$python" -m venv "$VENV"
    } || { _say "could not create a virtualenv"; exit 1; }
  fi
  stamp="$VENV/.bff-installed"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # One line on the console; pip's own output (progress, warnings) goes to the log.
    log="$STATE_DIR/logs/pip-install.log"
    mkdir -p "$(dirname "$log")"
    _say "installing the project and its dev extras into .venv"
    {
      "$VENV/bin/python" -m pip install --upgrade pip || true
      "$VENV/bin/python" -m pip install -e "$ROOT[dev]"
    } >"$log" 2>&1 || { _say "pip install failed; full log: $log"; exit 1; }
    echo "$want" >"$stamp"
  fi
}
