#!/bin/sh
# After the files went. Purge (deb) removes the revocation cache, which is
# fetched again. It keeps what the package did not install and is not its
# to delete: the establishment's certificates under /etc/roc-proxy/private,
# and the audit log of signed tokens under /var/lib/roc-proxy, a record the
# establishment must retain. It says so; delete them by hand when due.
# The system user stays (Debian policy: files may still belong to it).
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
case "${1:-}" in
  purge|0)   # deb purge; rpm erase (its modified configuration is kept as .rpmsave)
    rm -rf /var/cache/roc-proxy
    for d in /etc/roc-proxy/private /etc/roc-proxy/trust/igc-osi /etc/roc-proxy/trust /etc/roc-proxy \
             /var/lib/roc-proxy/audit /var/lib/roc-proxy; do
      rmdir "$d" 2>/dev/null || true
    done
    for d in /etc/roc-proxy /var/lib/roc-proxy; do
      if [ -d "$d" ]; then
        echo "roc-proxy purged; kept $d (not the package's files: certificates, trust chains or the audit log). Delete it by hand when due." >&2
      fi
    done
    ;;
esac
exit 0
