#!/bin/sh
# After the files land. The service is not started: it needs the
# establishment's certificates first (docs/installation.md, "On a virtual
# machine"). On an upgrade, a running service is restarted on the new binary.
set -e
chgrp roc-proxy /etc/roc-proxy/private
chmod 0750 /etc/roc-proxy/private
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  if systemctl is-active --quiet roc-proxy; then
    systemctl try-restart roc-proxy || true
  fi
fi
case "${1:-}" in
  configure|1)
    if [ -z "${2:-}" ]; then   # first install (deb: no previous version; rpm: $1 = 1)
      cat <<'MSG'
roc-proxy is installed, not started. Next:
  1. put the ORG_AUTH_CLI and ORG_SIGN PKCS#12 files and their passwords in
     /etc/roc-proxy/private/ (chgrp roc-proxy, chmod 0640), and the IGC OSI
     chain in /etc/roc-proxy/trust/igc-osi/
  2. set your partners in /etc/roc-proxy/roc-proxy.yaml, then:
     roc-proxy config check /etc/roc-proxy/roc-proxy.yaml
  3. systemctl enable --now roc-proxy
MSG
    fi
    ;;
esac
exit 0
