#!/usr/bin/env bash
# zimbra_geo developer entry point: set-up, the lab demo, and the test suite.
#
#   bash scripts/dev.sh demo     set up, bring the lab up, run the playbooks on it
#   bash scripts/dev.sh test     set up, run lint, sanity, unit, integration and molecule
#                                (side by side: ZG_TEST_WORKERS pytest-xdist workers)
#
# Other sub-commands: setup, lint, sanity, unit, integration, molecule, lab ARGS...
# Every sub-command does the set-up it needs first; a second run skips what is in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP_DIR="$ROOT/.cache/setup"
APT_PACKAGES=(
  slapd ldap-utils bind9 bind9-utils bind9-dnsutils openssh-server openssh-client
  iproute2 procps psmisc util-linux rsync python3 python3-venv
  # Lab hosts log in a non-root operator account that becomes root with sudo.
  sudo
  # The Zimbra stand-in runs as user zimbra with the system Python (the venv's interpreter
  # lives under root's home): its client libraries come from Debian.
  python3-aiosmtpd python3-ldap3 python3-requests python3-dnspython
  # docs/architecture.png is rendered from docs/architecture.dot.
  graphviz
)

# Test workers: run one after the other, the lab-backed tests leave two cores about 45% idle
# (they wait on SSH round trips, emulated latencies and polls); three workers, each with a
# lab of its own, keep both cores busy.
TEST_WORKERS=3

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/dev.sh: run as root (the lab creates network namespaces)" >&2
    exit 1
  fi
}

setup_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # The Debian packages must not start system-wide daemons: the lab runs its own.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

setup_venv() {
  local want have=""
  want=$(cat requirements.txt constraints.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  [ -f "$STAMP_DIR/venv" ] && have=$(cat "$STAMP_DIR/venv")
  if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
    log "creating the virtualenv .venv with the pinned Python dependencies"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r requirements-dev.txt
    mkdir -p "$STAMP_DIR"
    echo "$want" >"$STAMP_DIR/venv"
  fi
}

setup_collection() {
  # The collection is used in place: .collections/ansible_collections/mailops/zimbra_geo
  # points at the repository, so FQCNs resolve and edits take effect at once.
  # ansible.posix and the other collections come with the 'ansible' package in the venv.
  mkdir -p .collections/ansible_collections/mailops
  ln -sfn ../../.. .collections/ansible_collections/mailops/zimbra_geo
}

setup() {
  need_root
  setup_apt
  setup_venv
  setup_collection
}

activate() {
  export PATH="$VENV/bin:$PATH"
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
  export ANSIBLE_COLLECTIONS_PATH="$ROOT/.collections"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

run_lint() {
  log "ruff"
  ruff check .
  log "ansible-lint (production profile)"
  ansible-lint --profile production
  # The oldest Python each side must run on (tests/config.yml says the same to ansible-test):
  # what runs on a managed host (modules, module_utils) on 3.8, the controller side on the
  # oldest Python of the claimed ansible-core range (meta/runtime.yml).
  log "antsibull-docs (the documentation of every plugin and role)"
  antsibull-docs lint-collection-docs --plugin-docs "$ROOT/.collections/ansible_collections/mailops/zimbra_geo"
  log "vermin (minimum Python versions)"
  vermin --no-tips --violations -q -t=3.8- plugins/modules plugins/module_utils
  vermin --no-tips --violations -q -t=3.11- plugins/action plugins/filter
}

run_sanity() {
  # ansible-test wants the collection under ansible_collections/<ns>/<name>: sync a copy.
  local dest="$HOME/.cache/zimbra_geo-sanity/ansible_collections/mailops/zimbra_geo"
  mkdir -p "$dest"
  # What is checked is what ships (galaxy.yml's build_ignore): the lab, benchmarks, molecule
  # scenarios and lab-backed tests are not part of the collection; ruff checks them.
  # One sanity run at a time: runs share ansible-test's virtualenvs.
  exec 9>"${TMPDIR:-/tmp}/zimbra_geo-sanity.lock"
  flock 9
  rsync -a --delete --delete-excluded \
    --exclude .git --exclude .venv --exclude .build --exclude .collections --exclude .cache \
    --exclude .lab --exclude .ruff_cache --exclude .pytest_cache --exclude tests/output \
    --exclude '__pycache__' --exclude /lab --exclude /bench --exclude /molecule --exclude /scripts --exclude /execution-environment \
    --exclude /tests/integration --exclude /tests/molecule --exclude /tests/lint --exclude /tests/unit/lab --exclude /tests/conftest.py \
    --exclude /inventories/lab \
    "$ROOT/" "$dest/"
  # ansible-test bootstraps pip in its per-test virtualenvs with a script from a host that
  # is not reachable here; an equivalent script that uses ensurepip is seeded into its cache.
  local pyver cache="$HOME/.ansible/test/cache"
  pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  mkdir -p "$cache"
  python - "$cache" <<'PY'
import pathlib, sys
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
pip_version = get_venv_packages(NativePythonConfig(version="%d.%d" % sys.version_info[:2]))["pip"]
path = pathlib.Path(sys.argv[1]) / f"get_pip_{pip_version.replace('.', '_')}.py"
# Same contract as get-pip.py: its arguments are those of 'pip install', plus get-pip's own
# --no-setuptools / --no-wheel, which plain pip does not know.
path.write_text(
    "import ensurepip, os, subprocess, sys\n"
    "ensurepip.bootstrap()\n"
    "# ensurepip points PIP_CONFIG_FILE at /dev/null; the machine's pip configuration must apply.\n"
    "os.environ.pop('PIP_CONFIG_FILE', None)\n"
    "args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]\n"
    "subprocess.check_call([sys.executable, '-m', 'pip', 'install', *args])\n"
)
PY
  log "ansible-test sanity (Python $pyver)"
  (cd "$dest" && ansible-test sanity --venv --python "$pyver" --color no)
}

run_pytest() {
  # pytest's own summary line closes the run.
  python -m pytest "$@"
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    setup) setup ;;
    demo)
      setup; activate
      python -m lab up
      python -m lab demo "$@"
      ;;
    test)
      local started=$SECONDS
      setup; activate
      log "set-up: $((SECONDS - started)) s"
      # One pytest run: lint and sanity (tests/lint runs them as tests), unit, integration
      # and molecule, dealt out over ZG_TEST_WORKERS pytest-xdist workers, each with a lab of
      # its own. It ends with the time of each phase, the slowest tests and pytest's summary.
      run_pytest tests/lint tests/unit tests/integration tests/molecule \
        -n "${ZG_TEST_WORKERS:-$TEST_WORKERS}" --dist loadscope "$@"
      ;;
    lint) setup; activate; run_lint ;;
    sanity) setup; activate; run_sanity ;;
    unit) setup; activate; run_pytest tests/unit "$@" ;;
    integration) setup; activate; run_pytest tests/integration "$@" ;;
    molecule) setup; activate; run_pytest tests/molecule "$@" ;;
    lab) activate; python -m lab "$@" ;;
    *)
      sed -n '2,10p' "$0" >&2
      exit 2
      ;;
  esac
}

main "$@"
