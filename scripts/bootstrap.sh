#!/usr/bin/env bash
# Installs what coldchain needs on a fresh Debian machine: mosquitto, influxd and postgresql from
# Debian's packages, pango and a CJK font for the PDF report (poppler and chromium for its
# tests), uv, and the locked Python environment. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv python3-pip)
# The systemd units' test runs `systemd-analyze verify` (deploy/systemd/).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The broker's TLS certificates (deploy/mosquitto/make-certs.sh).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# PostgreSQL for the registry tests (deploy/postgres.py runs initdb and postgres itself, as the
# package's "postgres" account when run as root); Debian keeps the server off PATH.
command -v postgres >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
    || need_apt+=(postgresql)
# The shipment report: WeasyPrint lays out the PDF with pango (libpango) and needs a font with
# Han characters (place names are Chinese as often as not); its tests read the PDF back with
# poppler and open the HTML in headless Chromium.
dpkg -s libpango-1.0-0 libpangoft2-1.0-0 >/dev/null 2>&1 || need_apt+=(libpango-1.0-0 libpangoft2-1.0-0)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need_apt+=(fonts-noto-cjk)
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
    echo "bootstrap: installing uv" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
    fi
    python3 -m pip install --quiet uv 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages uv
    hash -r
fi
UV=$(command -v uv || echo "$HOME/.local/bin/uv")
"$UV" sync --frozen --quiet
