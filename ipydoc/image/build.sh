#!/bin/bash
# Build a Jupyter Docker Stacks-equivalent notebook image with no registry: a Debian minbase
# root filesystem from debootstrap (Debian's mirror, as apt already uses it), jupyter_server,
# JupyterLab and ipykernel from PyPI in a venv at /opt/conda (the Stacks path), user jovyan (uid 1000, gid 100),
# imported with `docker import`. Run by `ipydoc image build`; needs root and a Docker engine.
#
# Usage: build.sh TAG RECIPE_ID
set -euo pipefail
TAG=$1
RECIPE=${2:-unknown}
SUITE=${IPYDOC_IMAGE_SUITE:-bookworm}
# rfc3987: with it installed, jsonschema (via jupyter_events) validates IRIs with a regex
# instead of importing rfc3987_syntax, which builds ~35 Lark parsers at import time and
# costs ~0.7 s of every server start (jupyter_server#1559). GPL-3, pure Python, installed
# from PyPI at build time like the rest (the Debian base is largely GPL as well).
PACKAGES=${IPYDOC_IMAGE_PACKAGES:-"jupyter_server jupyterlab ipykernel rfc3987"}
WORK=${IPYDOC_IMAGE_WORKDIR:-/var/tmp/ipydoc-image-build}
BASE=$WORK/base-$SUITE

[ "$(id -u)" = 0 ] || { echo "ipydoc image build: needs root (debootstrap and chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
mkdir -p "$WORK"
ROOT=$(mktemp -d "$WORK/root.XXXXXX")   # one per build: concurrent builds do not collide

cleanup() {
  for m in proc dev; do mountpoint -q "$ROOT/$m" && umount "$ROOT/$m" || true; done
}
trap 'cleanup; rm -rf --one-file-system "$ROOT"' EXIT

exec 9>"$WORK/base.lock"
flock 9   # one debootstrap of the shared base at a time
if [ ! -x "$BASE/usr/bin/python3" ]; then
  mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
           | grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rm -rf "$BASE.tmp"
  debootstrap --variant=minbase \
      --include=python3,python3-venv,ca-certificates,tini,git,locales,tzdata \
      "$SUITE" "$BASE.tmp" "$mirror"
  mv "$BASE.tmp" "$BASE"
fi

flock -u 9
rm -rf --one-file-system "$ROOT"
cp -a "$BASE" "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount --bind /proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
# The host's CA bundle lets pip reach PyPI through this network's TLS proxy; it is used for the
# build only and removed before import. env -i keeps the host's PIP_* settings out of the image.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/tmp/build-ca.crt"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    PIP_CERT=/tmp/build-ca.crt SSL_CERT_FILE=/tmp/build-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 /bin/sh -ec "
  getent group users >/dev/null || groupadd -g 100 users
  id jovyan >/dev/null 2>&1 || useradd -m -u 1000 -g 100 -s /bin/bash jovyan
  python3 -m venv /opt/conda
  /opt/conda/bin/pip install -q --no-cache-dir --upgrade pip
  /opt/conda/bin/pip install -q --no-cache-dir $PACKAGES
  /opt/conda/bin/pip freeze > /opt/conda/freeze.txt
  mkdir -p /home/jovyan/work
  chown -R 1000:100 /home/jovyan
  rm -rf /root/.cache /tmp/build-ca.crt /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
"
cleanup
# A hub user's server starts faster (bench/jupyter_start.py: ~0.1 s of ~0.7 s) without what a
# hub does not use: jupyter_lsp (no language server in the image; its background scan imports
# IPython while the first requests come in), notebook_shim (classic Notebook extensions), and
# the PyPI extension manager (a container installs no lab extension for good; readonly still
# lists the installed ones). zz- sorts after the packages' own files, so this one wins.
cat > "$ROOT/opt/conda/etc/jupyter/jupyter_server_config.d/zz-ipydoc-hub.json" <<'EOF'
{"ServerApp": {"jpserver_extensions": {"jupyter_lsp": false, "notebook_shim": false}}}
EOF
# LabApp reads its own jupyter_lab_config files, not the server's config.d (a "LabApp"
# section there is silently ignored): the readonly manager goes here. It saves ~35 ms of
# each start (the PyPI manager builds its HTTP clients as the extension loads) and keeps
# JupyterLab's extension panel from querying PyPI out of the user's container.
cat > "$ROOT/opt/conda/etc/jupyter/jupyter_lab_config.json" <<'EOF'
{"LabApp": {"extension_manager": "readonly"}}
EOF
# `jupyter SUB` straight to jupyter-SUB, as jupyter_core's dispatcher would, without the
# dispatcher's own Python start and imports: ~40 ms of every `jupyter lab` start. Anything
# else (options, no argument, no such command) goes to the dispatcher as before.
cat > "$ROOT/opt/conda/bin/jupyter" <<'EOF'
#!/bin/sh
case "$1" in
  [a-z]*) if [ -x "/opt/conda/bin/jupyter-$1" ]; then
            sub=$1; shift; exec "/opt/conda/bin/jupyter-$sub" "$@"
          fi ;;
esac
exec /opt/conda/bin/python3 -c 'import sys; from jupyter_core.command import main
sys.argv[0] = "/opt/conda/bin/jupyter"; sys.exit(main())' "$@"
EOF
chmod 755 "$ROOT/opt/conda/bin/jupyter"
: > "$ROOT/etc/resolv.conf"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/home/jovyan' \
    --change 'ENV SHELL=/bin/bash' \
    --change 'ENV NB_USER=jovyan' \
    --change 'ENV NB_UID=1000' \
    --change 'ENV NB_GID=100' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'USER 1000:100' \
    --change 'WORKDIR /home/jovyan' \
    --change 'EXPOSE 8888' \
    --change "LABEL ipydoc.image-recipe=$RECIPE" \
    --change 'ENTRYPOINT ["tini", "-g", "--"]' \
    --change 'CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]' \
    - "$TAG"
echo "built $TAG"
