#!/usr/bin/env bash
# Install what anchord and its tests need, idempotently: Debian packages for the real
# clients, servers and peers, and the Python package itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(bind9-dnsutils knot-dnsutils nsd ldnsutils bind9-utils dnsperf unbound redis-server)
# The benchmark (bench/run.py) adds the other peers: knot-resolver pdns-recursor bind9.
read -r -a extra <<< "${ANCHORD_EXTRA_DEBS:-}"
DEBS+=("${extra[@]}")
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  # Services from these packages must not start on their own (tests start their own
  # on loopback): a temporary policy-rc.d tells the packages' scripts so.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
if ! $PY -c "import anchord, dns, pytest, pytest_timeout, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .setup-stamp ] 2>/dev/null; then
  echo "setup: installing anchord and its Python dependencies"
  $PY -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -vE "Running pip as the 'root' user|is ignored: it is neither" || true
  touch .setup-stamp
fi
