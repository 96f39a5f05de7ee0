# Sourced by the ops/* entry points: make sure .venv exists with the project installed.
# Finds Python 3.11–3.13 (trio-asyncio does not import on 3.14), installs it with apt as root when
# missing, and reinstalls the project (from requirements/dev.lock) only when pyproject.toml or
# the lock changed.

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
  want="$({ cat "$ROOT/pyproject.toml"; cat "$ROOT/requirements/dev.lock" 2>/dev/null || true; } |
    sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # One line on the console; pip's own output (progress, warnings) goes to the log.
    log="$STATE_DIR/logs/pip-install.log"
    mkdir -p "$(dirname "$log")"
    # One installer at a time: several ./ops/* commands may start at once on one checkout.
    (
      if command -v flock >/dev/null 2>&1; then flock 9; fi
      if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi # another just did
      _say "installing the project and its dev extras into .venv"
      _install_project >"$log" 2>&1 || { _say "pip install failed; full log: $log"; exit 1; }
      # Installed from the lock: what pyproject.toml gained since is missing until `lock`.
      if [ -f "$ROOT/requirements/dev.lock" ] &&
        ! missing="$(_missing_requirements 2>>"$log")"; then
        _say "requirements/dev.lock lacks what pyproject.toml asks for (${missing}):" \
          "installing it from pyproject.toml's ranges; refresh the lock: ./ops/stack lock"
        "$VENV/bin/python" -m pip install -e "$ROOT[dev]" >>"$log" 2>&1 ||
          { _say "pip install failed; full log: $log"; exit 1; }
      fi
      echo "$want" >"$stamp"
    ) 9>"$VENV/.bff-install.lock" || exit 1
  fi
}

# The pinned, hash-checked dependencies (`./ops/stack lock` writes the lock), then the project
# itself, editable, resolving nothing more. No lock (an old checkout): pyproject.toml's ranges.
_install_project() {
  local lock="$ROOT/requirements/dev.lock"
  "$VENV/bin/python" -m pip install --upgrade pip || true
  if [ ! -f "$lock" ]; then
    "$VENV/bin/python" -m pip install -e "$ROOT[dev]"
    return
  fi
  "$VENV/bin/python" -m pip install --require-hashes -r "$lock" &&
    "$VENV/bin/python" -m pip install --no-deps -e "$ROOT"
}

# Prints, and fails on, each requirement of the project and its dev extras that no installed
# distribution satisfies: a dependency pyproject.toml gained after the lock was made.
_missing_requirements() {
  "$VENV/bin/python" - <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, requires, version

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

missing = []
for line in requires("bff-backoffice-service") or []:
    wanted = Requirement(line)
    if wanted.marker is not None and not wanted.marker.evaluate({"extra": "dev"}):
        continue
    try:
        found = wanted.specifier.contains(version(wanted.name), prereleases=True)
    except PackageNotFoundError:
        found = False
    if not found:
        missing.append(str(wanted))
print(" ".join(missing))
sys.exit(1 if missing else 0)
EOF
}
