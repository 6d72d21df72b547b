#!/usr/bin/env bash
# Installs what shoal needs on a fresh Debian machine (system packages, the venv).
# Sourced by .ci/run and scripts/sandbox-demo; expects ROOT, LOG_DIR, say() and elapsed().
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root: the sandbox creates network and pid namespaces and runs dockerd" >&2
    exit 1
fi

# --- system packages -------------------------------------------------------------------
say "apt-get install ($(elapsed))"
export DEBIAN_FRONTEND=noninteractive
# Keep apt from starting system daemons: the tests start their own, on their own addresses.
POLICY=/usr/sbin/policy-rc.d
POLICY_CREATED=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod +x "$POLICY"
    POLICY_CREATED=1
fi
cleanup_policy() { if [ "$POLICY_CREATED" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup_policy EXIT
apt-get update -qq >"$LOG_DIR/apt-update.log" 2>&1 || { tail -20 "$LOG_DIR/apt-update.log"; exit 1; }
apt-get install -y -qq --no-install-recommends \
    docker.io busybox-static iproute2 iptables docker-registry etcd-server zookeeperd \
    docker-compose python3-venv tar util-linux \
    >"$LOG_DIR/apt-install.log" 2>&1 || { tail -40 "$LOG_DIR/apt-install.log"; exit 1; }
cleanup_policy
POLICY_CREATED=0

# Stop system services that an earlier install may have started; ignore those not running.
for svc in docker containerd docker-registry etcd zookeeper; do
    if [ -x "/etc/init.d/$svc" ]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done

echo "dockerd:   $(dockerd --version)"
for cli in /usr/local/bin/docker /usr/bin/docker; do
    if [ -x "$cli" ]; then echo "docker CLI: $cli $("$cli" --version)"; fi
done
echo "registry:  $(docker-registry --version 2>&1 | head -1)"

# --- python ------------------------------------------------------------------------------
say "python venv ($(elapsed))"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[test]' >>"$LOG_DIR/pip.log" 2>&1 \
    || { tail -40 "$LOG_DIR/pip.log"; exit 1; }

