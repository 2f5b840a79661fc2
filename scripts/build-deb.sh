#!/usr/bin/env bash
# scripts/build-deb.sh — build the Debian packages postie and postie-mta with dpkg-deb.
#
#   scripts/build-deb.sh [--bin-dir DIR] [--out DIR]
#
# postie      rsend, rfetch, their man pages (rsend(1), rfetch(1), postie.toml(5),
#             postie-msmtprc(5), postie-fetchmailrc(5)), bash/zsh/fish completions and the
#             systemd user units, staged by scripts/install.sh with PREFIX=/usr.
# postie-mta  /usr/sbin/sendmail, /usr/lib/sendmail, mailq and newaliases as links to rsend,
#             the arrangement of msmtp-mta: Provides, Conflicts and Replaces
#             mail-transport-agent, so it replaces the installed MTA (Postfix, Exim) as any MTA
#             package does. Install it only where rsend is to be the system's sendmail.
#
# Without --bin-dir the binaries are built with `cargo build --release --locked`; with it, the
# rsend and rfetch in DIR are packaged (the tests package their debug build). Binaries are
# stripped. The packages are written to DIR of --out (default target/debian) and their names
# printed, one a line. Needs dpkg-deb and dpkg-shlibdeps (dpkg-dev); no root.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "build-deb.sh: $*" >&2; exit 1; }

BIN_DIR=
OUT=$REPO/target/debian
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN_DIR=$(cd "${2:?--bin-dir needs a directory}" && pwd); shift 2 ;;
    --out) mkdir -p "${2:?--out needs a directory}"; OUT=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils)"
done

if [ -z "$BIN_DIR" ]; then
  (cd "$REPO" && cargo build --release --locked)
  BIN_DIR=$REPO/target/release
fi

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
ARCH=$(dpkg --print-architecture)
# xz as Debian's archive uses; the tests ask for gzip, which is several times faster
COMPRESSION=${POSTIE_DEB_COMPRESSION:-xz}
MAINTAINER=${POSTIE_DEB_MAINTAINER:-postie maintainers <postie@packages.invalid>}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# The documentation every Debian package carries: copyright and a changelog.
doc_files() { # PACKAGE
  local doc="$1/usr/share/doc/$(basename "$1")"
  install -d -m 755 "$doc"
  cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: postie
Source: postie

Files: *
Copyright: 2026 The postie authors
License: MIT or Apache-2.0
 postie is dual-licensed under the MIT license and the Apache License, Version 2.0.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
EOF
  chmod 644 "$doc/copyright"
  printf '%s (%s) unstable; urgency=medium\n\n  * Package built from the postie source tree by scripts/build-deb.sh.\n\n -- %s  %s\n' \
    "$(basename "$1")" "$VERSION" "$MAINTAINER" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" \
    | gzip -9n >"$doc/changelog.gz"
  chmod 644 "$doc/changelog.gz"
}

control_files() { # STAGE FIELDS...
  local stage=$1; shift
  install -d -m 755 "$stage/DEBIAN"
  {
    printf '%s\n' "$@"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
  } >"$stage/DEBIAN/control"
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 -r md5sum >DEBIAN/md5sums)
  chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
}

build() { # STAGE
  local name
  name=$(sed -n 's/^Package: //p' "$1/DEBIAN/control")_${VERSION}_$(sed -n 's/^Architecture: //p' "$1/DEBIAN/control").deb
  # directories 755 and files 644/755 whatever the umask was
  find "$1" -type d -exec chmod 755 {} +
  # --root-owner-group: every file root:root in the package, without fakeroot or root
  dpkg-deb --root-owner-group "-Z$COMPRESSION" --build "$1" "$OUT/$name" >/dev/null
  echo "$OUT/$name"
}

DESCRIPTION_TAIL=" rsend reads msmtp's configuration files (~/.msmtprc) and accepts the
 sendmail flags that cron, mutt, git send-email and PHP pass. rfetch reads
 ~/.fetchmailrc, polls POP3 and IMAP (with IDLE) and deletes a message on the
 server only after its delivery (Maildir, mbox, MDA, SMTP/LMTP) was confirmed.
 TLS is rustls, verified by default."

# --- postie ---------------------------------------------------------------------------------
MAIN=$WORK/postie
umask 022
"$REPO/scripts/install.sh" install DESTDIR="$MAIN" PREFIX=/usr SYSTEMD_USER_UNIT_DIR=/usr/lib/systemd/user \
  BIN_SOURCE="$BIN_DIR" COMPRESS_MAN=1 STRIP=1 >/dev/null
doc_files "$MAIN"
# dpkg-shlibdeps reads debian/control of a source tree; a minimal one is enough
mkdir -p "$WORK/src/debian"
printf 'Source: postie\n\nPackage: postie\nArchitecture: any\n' >"$WORK/src/debian/control"
DEPENDS=$(cd "$WORK/src" && dpkg-shlibdeps -O "$MAIN/usr/bin/rsend" "$MAIN/usr/bin/rfetch" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || die "dpkg-shlibdeps found no dependencies"
control_files "$MAIN" \
  "Package: postie" \
  "Version: $VERSION" \
  "Architecture: $ARCH" \
  "Maintainer: $MAINTAINER" \
  "Depends: $DEPENDS" \
  "Recommends: ca-certificates" \
  "Suggests: postie-mta" \
  "Section: mail" \
  "Priority: optional" \
  "Description: msmtp and fetchmail drop-ins: rsend and rfetch" \
  "$DESCRIPTION_TAIL" \
  " ." \
  " This package has the programs, man pages, shell completions and systemd user" \
  " units; postie-mta makes rsend the system's /usr/sbin/sendmail."
build "$MAIN"

# --- postie-mta -----------------------------------------------------------------------------
MTA=$WORK/postie-mta
install -d -m 755 "$MTA/usr/sbin" "$MTA/usr/lib" "$MTA/usr/bin" \
  "$MTA/usr/share/man/man8" "$MTA/usr/share/man/man1"
# rsend acts as mailq and newaliases when called by those names, as MTAs do
ln -s ../bin/rsend "$MTA/usr/sbin/sendmail"
ln -s ../bin/rsend "$MTA/usr/lib/sendmail"
ln -s rsend "$MTA/usr/bin/mailq"
ln -s rsend "$MTA/usr/bin/newaliases"
ln -s ../man1/rsend.1.gz "$MTA/usr/share/man/man8/sendmail.8.gz"
ln -s rsend.1.gz "$MTA/usr/share/man/man1/mailq.1.gz"
ln -s rsend.1.gz "$MTA/usr/share/man/man1/newaliases.1.gz"
doc_files "$MTA"
control_files "$MTA" \
  "Package: postie-mta" \
  "Version: $VERSION" \
  "Architecture: all" \
  "Maintainer: $MAINTAINER" \
  "Depends: postie (= $VERSION)" \
  "Provides: mail-transport-agent" \
  "Conflicts: mail-transport-agent" \
  "Replaces: mail-transport-agent" \
  "Section: mail" \
  "Priority: optional" \
  "Description: msmtp and fetchmail drop-ins: rsend as /usr/sbin/sendmail" \
  "$DESCRIPTION_TAIL" \
  " ." \
  " This package makes rsend the system's sendmail (/usr/sbin/sendmail," \
  " /usr/lib/sendmail, mailq, newaliases), as msmtp-mta does for msmtp. It" \
  " replaces an installed MTA such as Postfix or Exim."
build "$MTA"
