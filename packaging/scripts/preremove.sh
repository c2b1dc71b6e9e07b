#!/bin/sh
# Before the files go: stop the service on removal (not on upgrade).
set -e
case "${1:-}" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now roc-proxy >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
