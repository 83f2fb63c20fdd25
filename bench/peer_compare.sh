#!/bin/bash
# ipydoc vs the incumbent (JupyterHub + DockerSpawner + configurable-http-proxy), same run,
# same machine, alternating so both see the same conditions.
#
# Per round: bench/spawn.py (cold -n N, then KEEP servers for memory) and the peer's
# run_spawn.py (cold -n N, burst -n KEEP --mem) against a hub started with run_hub.sh.
# Rounds alternate the order (ABBA: ipydoc, peer | peer, ipydoc | ...) so drift over the run
# does not favour one side.  With IPYDOC_PEER_IMAGE=1 each round also runs ipydoc on the
# peer's image (peer-notebook:latest), which separates "the daemon" from "the image".
# Cold latency = start request -> first 200 on /user/<u>/api/status through the proxy,
# polled every 20 ms on both sides (ipydoc: login POST; peer: admin API POST, no login).
#
# Needs: bash /work/shared/peer/setup.sh {apt,chp,venv,image} done; port 8000/8001/8081 free.
#   ROUNDS=2 N=10 KEEP=10 SETTLE=10 IPYDOC_PEER_IMAGE=1 bash bench/peer_compare.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEER=${PEER_DIR:-/work/shared/peer}
ROUNDS=${ROUNDS:-2}; N=${N:-10}; KEEP=${KEEP:-10}; SETTLE=${SETTLE:-10}
STAMP=$(date +%Y%m%dT%H%M%S)
TAG=cmp-$STAMP
export PEER_RESULTS=$HERE/results/$TAG
mkdir -p "$PEER_RESULTS"

for p in 8000 8001 8081; do
  if ss -ltnH "sport = :$p" | grep -q .; then
    echo "port $p is in use (the peer hub needs 8000, 8001 and 8081):"; ss -ltnp "sport = :$p"; exit 1
  fi
done
docker image inspect peer-notebook:latest >/dev/null || { echo "peer-notebook:latest missing: run setup.sh image"; exit 1; }

hub_up=0
cleanup() { if [ $hub_up = 1 ]; then (cd "$PEER" && bash run_hub.sh stop docker) || true; fi; }
trap cleanup EXIT

run_ipydoc() {
  python3 "$HERE/spawn.py" -n "$N" --keep "$KEEP" --settle "$SETTLE" --tag "$TAG-r$1-ipydoc"
  if [ "${IPYDOC_PEER_IMAGE:-0}" = 1 ]; then
    python3 "$HERE/spawn.py" -n "$N" --keep "$KEEP" --settle "$SETTLE" --image peer-notebook:latest \
        --tag "$TAG-r$1-ipydoc_peerimage"
  fi
}

run_peer() {
  cd "$PEER"
  bash run_hub.sh start docker; hub_up=1
  /tmp/peer-venv/bin/python run_spawn.py cold --mode docker -n "$N" --poll 0.02 --tag "r$1"
  /tmp/peer-venv/bin/python run_spawn.py burst --mode docker -n "$KEEP" --mem --settle "$SETTLE" --tag "r$1"
  bash run_hub.sh stop docker; hub_up=0
  cd - >/dev/null
}

for r in $(seq 1 "$ROUNDS"); do
  echo "=== round $r $(date +%T)"
  if [ $((r % 2)) = 1 ]; then run_ipydoc "$r"; run_peer "$r"; else run_peer "$r"; run_ipydoc "$r"; fi
done
python3 "$HERE/compare.py" "$TAG" | tee "$HERE/results/$TAG/summary.md"
