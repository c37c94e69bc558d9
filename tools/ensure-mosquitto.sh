#!/usr/bin/env bash
# Make sure the mosquitto broker and its command-line clients (mosquitto_sub/_pub/_rr, which
# the demo prints and some tests use) are installed; tests start their own broker instances.
# As root this installs them with apt-get; otherwise it says how and fails, because the
# tests that need a broker must never silently skip.
set -euo pipefail
have() {
    { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } && command -v mosquitto_sub >/dev/null 2>&1
}
if have; then
    exit 0
fi
if [ "$(id -u)" = "0" ]; then
    echo "installing mosquitto (apt-get install -y mosquitto mosquitto-clients)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y mosquitto mosquitto-clients >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y mosquitto mosquitto-clients >/dev/null; }
    have || { echo "mosquitto install failed" >&2; exit 1; }
    exit 0
fi
echo "mosquitto is missing: install it with 'sudo apt-get install -y mosquitto mosquitto-clients', then run make again" >&2
exit 1
