#!/usr/bin/env bash
# Start the real services the Docker deployment tests use (root, idempotent): the Docker Engine
# (dockerd in the background), a loopback OCI registry on 127.0.0.1:5000 (Debian's docker-registry)
# and the local base image (scripts/docker-base.sh). Each is started only when it does not answer.
# Also installs Debian's zookeeper package (jars only, no service): the ZooKeeper tests start their own
# servers on loopback ports (tests/helpers/zookeeper.py), and systemd-analyze for the unit checks
# (tests/ops/test_systemd.py).
set -euo pipefail
cd "$(dirname "$0")/.."
state=/var/lib/modeltui-services
mkdir -p "$state"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
# The registry TLS/htpasswd tests (tests/helpers/tls_registry.py): a self-signed certificate and bcrypt hashes.
command -v openssl >/dev/null || need+=(openssl)
command -v htpasswd >/dev/null || need+=(apache2-utils)
[ -e /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
# systemd-analyze (verify/security of config/modeltuid.service; systemd need not be PID 1).
command -v systemd-analyze >/dev/null || need+=(systemd)
# OpenSSH (client and sshd): the contexts tests start their own sshd on loopback (tests/helpers/sshd.py).
{ command -v ssh >/dev/null && [ -x /usr/sbin/sshd ]; } || need+=(openssh-server openssh-client)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    # policy-rc.d: the packages must not try to start their own services (no systemd here).
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Docker Engine.
if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/modeltui-dockerd.log)" >&2
    setsid dockerd >>/var/log/modeltui-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/modeltui-dockerd.log >&2; echo "dockerd did not start" >&2; exit 1; }
fi

# OCI registry on loopback only (loopback registries need no TLS).
if ! curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/; then
    cat >"$state/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
    echo "starting docker-registry on 127.0.0.1:5000 (log: /var/log/modeltui-registry.log)" >&2
    setsid docker-registry serve "$state/registry.yml" >>/var/log/modeltui-registry.log 2>&1 </dev/null &
    for _ in $(seq 60); do
        curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ && break
        sleep 0.5
    done
    curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ || {
        tail -20 /var/log/modeltui-registry.log >&2; echo "docker-registry did not start" >&2; exit 1; }
fi

# The base image Docker deployments start from (nothing can be pulled here).
base="${MODELTUI_DOCKER_BASE_IMAGE:-modeltui-base:bookworm}"
docker image inspect "$base" >/dev/null 2>&1 || bash scripts/docker-base.sh "$base"
echo "services ready: docker, registry 127.0.0.1:5000, base image $base, zookeeper jars" >&2
