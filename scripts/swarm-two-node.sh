#!/usr/bin/env bash
# A real two-node Docker Swarm on one machine, for the swarm tests and benches (from the team's
# shared/swarm/two-node.sh, made idempotent): the host's dockerd is the manager (advertising
# 10.231.0.1); a second dockerd runs in its own network namespace as the worker "ipd-node2"
# (10.231.0.2, reachable only from the host and that namespace; its engine at
# unix:///tmp/n2/docker.sock).  No IPVS in this kernel: Swarm's routing mesh does not work, so
# ipydoc publishes servers' ports in host mode.
# Usage: swarm-two-node.sh up|down|status
set -euo pipefail
NS=ipdn2 N=/tmp/n2 HOST_IP=10.231.0.1 NODE_IP=10.231.0.2
W="docker -H unix://$N/docker.sock"
worker_up() { $W info >/dev/null 2>&1; }
case ${1:-up} in
up)
  if ! ip netns list | grep -qw $NS; then
    ip netns add $NS
    ip link add ipd-h type veth peer name ipd-n
    ip link set ipd-n netns $NS
    ip addr add $HOST_IP/24 dev ipd-h; ip link set ipd-h up
    ip netns exec $NS sh -c "ip addr add $NODE_IP/24 dev ipd-n; ip link set ipd-n up; ip link set lo up; ip route add default via $HOST_IP"
  fi
  if ! worker_up; then
    mkdir -p $N/root $N/exec
    rm -f $N/docker.pid
    nsenter --net=/var/run/netns/$NS unshare --uts sh -c "hostname ipd-node2; exec dockerd --data-root $N/root --exec-root $N/exec -H unix://$N/docker.sock --pidfile $N/docker.pid" > $N/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do worker_up && break; sleep 0.5; done
    worker_up || { echo "the worker's dockerd did not start; see $N/dockerd.log" >&2; exit 1; }
  fi
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr $HOST_IP >/dev/null
  fi
  if [ "$($W info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    $W swarm join --token "$(docker swarm join-token -q worker)" $HOST_IP:2377 >/dev/null
  fi
  for _ in $(seq 1 60); do
    [ "$(docker node ls --filter role=worker --format '{{.Status}}' | grep -c Ready)" -ge 1 ] && break; sleep 0.5
  done
  docker node ls ;;
status)
  docker node ls ;;
down)
  $W swarm leave --force >/dev/null 2>&1 || true
  docker swarm leave --force >/dev/null 2>&1 || true
  if [ -f $N/docker.pid ]; then kill "$(cat $N/docker.pid)" 2>/dev/null || true; fi
  for _ in $(seq 1 20); do worker_up || break; sleep 0.5; done
  ip netns del $NS 2>/dev/null || true; ip link del ipd-h 2>/dev/null || true ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
