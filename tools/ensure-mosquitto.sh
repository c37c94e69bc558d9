#!/usr/bin/env bash
# Make sure the mosquitto broker binary is installed; tests start their own instances.
# As root this installs it with apt-get; otherwise it says how and fails, because the
# tests that need a broker must never silently skip.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ]; then
    echo "installing mosquitto (apt-get install -y mosquitto)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y mosquitto >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y mosquitto >/dev/null; }
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { echo "mosquitto install failed" >&2; exit 1; }
    exit 0
fi
echo "mosquitto is missing: install it with 'sudo apt-get install -y mosquitto', then run make again" >&2
exit 1
