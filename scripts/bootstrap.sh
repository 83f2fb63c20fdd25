#!/bin/bash
# Install and start what ipydoc needs on a Debian 12 host, idempotently:
#   Docker engine and Redis from Debian packages (when missing), a running dockerd,
#   a virtualenv in .venv with ipydoc installed, and the configured notebook image.
# Usage: bash scripts/bootstrap.sh [--test] [CONFIG]
#   --test   also install what the test suite needs (chromium, nginx, debootstrap, pipx, test
#            extras), the test image (ipydoc-test-notebook:latest) and the wheelhouse of the
#            install tests (/var/cache/ipydoc/wheelhouse, see tests/test_install.py)
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
if [ "${1:-}" = "--test" ]; then TEST=1; shift; fi
CONFIG=${1:-etc/ipydoc.toml}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

need_root() { [ "$(id -u)" = 0 ] || { echo "run as root (installs packages, starts dockerd)" >&2; exit 1; }; }

# -- system packages --------------------------------------------------------------------------
pkgs=()
command -v dockerd >/dev/null || pkgs+=(docker.io)
command -v redis-server >/dev/null || pkgs+=(redis-server)
command -v git >/dev/null || pkgs+=(git)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
python3 -c 'import ensurepip' 2>/dev/null || pkgs+=(python3-venv)
if [ $TEST = 1 ]; then
  command -v chromium >/dev/null || pkgs+=(chromium)
  command -v pipx >/dev/null || pkgs+=(pipx)     # tests/test_install.py: `pipx install .`
  command -v node >/dev/null || pkgs+=(nodejs)   # the OIDC provider of the login tests
  command -v npm >/dev/null || pkgs+=(npm)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  command -v ip >/dev/null || pkgs+=(iproute2)   # test_isolation: bridge addresses, netns
  command -v systemd-analyze >/dev/null || pkgs+=(systemd)   # unit checks, socket activation
  [ -x /usr/sbin/nginx ] || pkgs+=(nginx)   # the TLS-terminating proxy of test_behind_nginx
  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || pkgs+=(libnginx-mod-stream)   # bench/daemons.py's TCP load balancer
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  need_root
  say "installing Debian packages: ${pkgs[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" iptables ca-certificates
fi
# The Debian redis-server package may start a system Redis; ipydoc runs its own and does
# not need it, so leave it as the package set it up.

# -- Docker engine ----------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  need_root
  if [ -d /run/systemd/system ]; then
    say "starting docker.service"
    systemctl enable --now docker
  else
    say "starting dockerd (no systemd here)"
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.25; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see /var/log/dockerd.log" >&2; exit 1; }
fi

# -- Python package ---------------------------------------------------------------------------
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "ipydoc needs Python >= 3.11 (python3 is $(python3 -V))" >&2; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
extras=""; [ $TEST = 1 ] && extras="[test]"
# Editable (the default PEP 660 mode; setup.py explains why twistd finds the plugin).
stamp=".venv/.ipydoc-installed$extras"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing ipydoc$extras into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".$extras"
  touch "$stamp"
fi

# -- wheelhouse of the install tests (tests/test_install.py), kept in /var/cache/ipydoc ------
if [ $TEST = 1 ]; then
  .venv/bin/python tests/test_install.py --wheelhouse >/dev/null
fi

# -- OIDC provider for the login tests (npm package oidc-provider, pinned by the lock) -------
if [ $TEST = 1 ]; then
  want=$(sha256sum tests/oidc/package-lock.json | cut -c1-16)
  if [ "$(cat tests/oidc/node_modules/.ipydoc-lock 2>/dev/null)" != "$want" ]; then
    say "installing tests/oidc (npm ci)"
    (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > tests/oidc/node_modules/.ipydoc-lock
  fi
fi

# -- notebook image ---------------------------------------------------------------------------
if [ $TEST = 1 ]; then
  IMG=${IPYDOC_TEST_IMAGE:-ipydoc-test-notebook:latest}
  want=$(sha256sum ipydoc/image/build.sh | cut -c1-16)
  have=$(docker image inspect -f '{{index .Config.Labels "ipydoc.image-recipe"}}' "$IMG" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    say "building test image $IMG (no registry needed)"
    .venv/bin/ipydoc image build --tag "$IMG"
  fi
else
  say "making sure the notebook image of $CONFIG is available"
  .venv/bin/ipydoc --config "$CONFIG" image ensure
fi
