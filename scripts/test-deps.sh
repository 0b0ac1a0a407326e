#!/usr/bin/env bash
# System services and tools the test suite uses: PostgreSQL (store conformance), promtool
# (alert rules), Alertmanager (webhook intake), Chromium with CJK fonts (browser tests) and poppler (the
# report documents' PDF checks). Installs what is missing when run as root
# with apt; otherwise the tests that need a missing tool skip with a reason.
set -u
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
dpkg -s poppler-data >/dev/null 2>&1 || missing+=(poppler-data)  # CJK mappings: reading STSong-Light PDFs
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test tools: ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
    >/tmp/test-deps-apt.log 2>&1 || echo "warning: apt-get install ${missing[*]} failed (see /tmp/test-deps-apt.log)"
  # the Debian packages start their daemons; the tests run their own on other ports
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    pkill -x "$svc" >/dev/null 2>&1 || true
  done
fi
exit 0
