#!/bin/sh
# Before the files land: the system user the service runs as, so that the
# package's folders can belong to its group.
set -e
if ! getent passwd roc-proxy >/dev/null 2>&1; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    # The package's own sysusers.d file is not unpacked yet: give it inline.
    systemd-sysusers --inline 'u roc-proxy - "roc-proxy service" /var/lib/roc-proxy -' 
  else
    useradd --system --user-group --home-dir /var/lib/roc-proxy --no-create-home \
      --shell /usr/sbin/nologin --comment "roc-proxy service" roc-proxy
  fi
fi
exit 0
