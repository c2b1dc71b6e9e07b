#!/bin/sh
# Installs the .deb on this (Debian) machine as an administrator would, and
# checks it: the unit (systemd-analyze verify, and its hardening score), the
# files and their modes, the configuration check from the installed paths
# run as the service user with certificates made the way docs/installation.md says
# (roc-proxy csr, the authority signs, roc-proxy p12 build), a reinstall
# over it (the scripts an upgrade runs), then removal and purge, leaving
# nothing but the audit log the establishment must keep.
# Needs root and no running systemd. Used by .ci/run.
# Usage: packaging/ci-install-check.sh dist/roc-proxy_VERSION_ARCH.deb
set -eu
deb=${1:?usage: packaging/ci-install-check.sh PACKAGE.deb}
fail() { echo "ci-install-check: $*" >&2; exit 1; }
[ -f "$deb" ] || fail "$deb: no such package"
# Absolute: the certificate step below works in another directory.
deb=$(readlink -f "$deb")
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
if [ "$(dpkg-query -W -f='${Status}' roc-proxy 2>/dev/null || true)" = "install ok installed" ]; then
  echo "ci-install-check: purging the roc-proxy package a previous run left" >&2
  dpkg --purge roc-proxy
fi
# What an aborted run of this script left (its certificates are no package
# files: a purge leaves them, and p12 build never overwrites).
rm -f /etc/roc-proxy/private/org-auth-cli.p12 /etc/roc-proxy/private/org-sign.p12 \
  /etc/roc-proxy/private/org-auth-cli.password /etc/roc-proxy/private/org-sign.password \
  /etc/roc-proxy/trust/igc-osi/ci-test-ca.pem
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- dpkg -i $deb"
dpkg -i "$deb"
getent passwd roc-proxy >/dev/null || fail "no roc-proxy user"
unit=/usr/lib/systemd/system/roc-proxy.service
systemd-analyze verify "$unit"
# Exposure as systemd scores it (0 best, 10 worst): at most 2.0.
systemd-analyze security --offline=yes --threshold=20 "$unit" | tail -1
dpkg-query -W -f='${Conffiles}\n' roc-proxy | grep -q ' /etc/roc-proxy/roc-proxy.yaml ' ||
  fail "/etc/roc-proxy/roc-proxy.yaml is not a conffile"
[ "$(stat -c '%U:%G %a' /etc/roc-proxy/private)" = "root:roc-proxy 750" ] ||
  fail "/etc/roc-proxy/private: $(stat -c '%U:%G %a' /etc/roc-proxy/private), want root:roc-proxy 750"
/usr/bin/roc-proxy --version

echo "-- certificates as docs/installation.md makes them, in the installed places"
cd "$work"
cat > ca.cnf <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[auth]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[sign]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = emailProtection
authorityKeyIdentifier = keyid
CNF
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/C=FR/O=ROC-PROXY CI/CN=CI TEST AC RACINE" -config ca.cnf -extensions ca 2>/dev/null
printf 'ci-password\n' > password
for role in auth sign; do
  roc-proxy csr --role "$role" --ou 1990000019 --o "CENTRE HOSPITALIER CI" --key-out "$role.key" --csr-out "$role.csr" >/dev/null
  openssl x509 -req -in "$role.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile ca.cnf -extensions "$role" -out "$role.pem" 2>/dev/null
  name=$([ "$role" = auth ] && echo org-auth-cli || echo org-sign)
  roc-proxy p12 build --key "$role.key" --cert "$role.pem" --bundle ca.pem \
    --password-file password --out "/etc/roc-proxy/private/$name.p12"
  install -m 0640 -g roc-proxy password "/etc/roc-proxy/private/$name.password"
  chgrp roc-proxy "/etc/roc-proxy/private/$name.p12"
  chmod 0640 "/etc/roc-proxy/private/$name.p12"
done
# The GIE's chain goes in trust/igc-osi; here the CI authority stands for it.
install -m 0644 ca.pem /etc/roc-proxy/trust/igc-osi/ci-test-ca.pem
cd /

echo "-- roc-proxy config check, as the service user, on the installed configuration"
runuser -u roc-proxy -- /usr/bin/roc-proxy config check /etc/roc-proxy/roc-proxy.yaml

echo "-- dpkg -i again (reinstall, as an upgrade runs the same scripts): the certificates stay readable"
echo "# edited by the administrator" >> /etc/roc-proxy/roc-proxy.yaml
dpkg -i "$deb"
tail -1 /etc/roc-proxy/roc-proxy.yaml | grep -qx "# edited by the administrator" || fail "reinstall replaced the edited configuration"
[ "$(stat -c '%U:%G %a' /etc/roc-proxy/private)" = "root:roc-proxy 750" ] ||
  fail "/etc/roc-proxy/private after reinstall: $(stat -c '%U:%G %a' /etc/roc-proxy/private)"
runuser -u roc-proxy -- /usr/bin/roc-proxy config check /etc/roc-proxy/roc-proxy.yaml >/dev/null

echo "-- dpkg -r: the program goes, the configuration stays"
rm -f /etc/roc-proxy/private/* /etc/roc-proxy/trust/igc-osi/ci-test-ca.pem
dpkg -r roc-proxy
for f in /usr/bin/roc-proxy "$unit" /usr/share/roc-proxy /usr/share/doc/roc-proxy; do
  [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -f /etc/roc-proxy/roc-proxy.yaml ] || fail "dpkg -r removed the configuration"

echo "-- dpkg --purge: everything goes but an audit log"
mkdir -p /var/lib/roc-proxy/audit /var/cache/roc-proxy/revocation
echo '{"v":1}' > /var/lib/roc-proxy/audit/ci-0001.jsonl
echo cache > /var/cache/roc-proxy/revocation/x
dpkg --purge roc-proxy
for f in /etc/roc-proxy /var/cache/roc-proxy /usr/lib/sysusers.d/roc-proxy.conf; do
  [ ! -e "$f" ] || fail "$f left after dpkg --purge"
done
[ -f /var/lib/roc-proxy/audit/ci-0001.jsonl ] || fail "dpkg --purge deleted the audit log"
rm -rf /var/lib/roc-proxy
if dpkg-query -W roc-proxy >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' roc-proxy)" != "unknown ok not-installed" ]; then
  fail "roc-proxy still known to dpkg: $(dpkg-query -W -f='${Status}' roc-proxy)"
fi
echo "ci-install-check: OK"
