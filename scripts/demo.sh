#!/usr/bin/env bash
# scripts/demo.sh — postie's main job, end to end, against the private loopback mail stack:
# build, start the stack (tests/stack/stack.sh up; idempotent), send a message to alice with
# rsend over implicit TLS + AUTH PLAIN, fetch alice's mailbox over IMAPS with rfetch into a
# throw-away Maildir, and print the fetched message. Needs root for the stack (apt, Dovecot,
# Postfix). The stack keeps running afterwards; stop it with: tests/stack/stack.sh down
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
STACK_DIR=${POSTIE_STACK_DIR:-$REPO/.stack}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
say() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
if [ "$(id -u)" = 0 ]; then AS_ROOT=(); else AS_ROOT=(sudo -n); fi

# The dev profile: the same build tests/run.sh makes (so the two commands share it), and
# minutes faster on 2 cores than the LTO release profile; speed is bench/'s business.
say "build (cargo build --bins)"
cargo build --bins </dev/null

say "mail stack (tests/stack/stack.sh up $STACK_DIR)"
"${AS_ROOT[@]}" tests/stack/stack.sh up "$STACK_DIR" </dev/null
# shellcheck disable=SC1090,SC1091
. "$STACK_DIR/stack.env"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/postie-demo.XXXXXX")
CONFIG="$TMP/postie.toml"
(umask 077; cat >"$CONFIG" <<TOML
[defaults]
tls_trust_file = "$STACK_CA"
[accounts.demo]
host = "localhost"
port = $SMTPS_PORT
tls = true
tls_starttls = false
auth = "plain"
user = "alice"
password = "alicepw"
from = "alice@localhost"
[accounts.demo.fetch]
protocol = "imap"
port = $IMAPS_PORT
tls_starttls = false
maildir = "$TMP/Maildir"
TOML
)
chmod 600 "$CONFIG"
mkdir -p "$TMP/Maildir/"{cur,new,tmp}
echo "config: $CONFIG"

fail() {
  echo "demo: $1 failed (exit $2). The config and Maildir are kept in $TMP." >&2
  echo "demo: the stack keeps running; stop it with: tests/stack/stack.sh down $STACK_DIR" >&2
  exit "$2"
}

say "send: rsend -C $CONFIG -a demo alice@localhost (SMTPS port $SMTPS_PORT, AUTH PLAIN)"
rc=0
printf 'Subject: hello from postie\n\nIt works.\n' \
  | "$TARGET/debug/rsend" -C "$CONFIG" -a demo alice@localhost || rc=$?
[ $rc = 0 ] || fail "rsend" $rc

say "fetch: rfetch -C $CONFIG demo (IMAPS port $IMAPS_PORT -> $TMP/Maildir)"
# delivery through Postfix -> LMTP -> Dovecot takes a moment; poll until the message is fetched
fetched=""
for _ in $(seq 1 20); do
  rc=0
  "$TARGET/debug/rfetch" -C "$CONFIG" demo </dev/null || rc=$?
  # rfetch exits 1 when there was no mail (like fetchmail); anything else is an error
  [ $rc = 0 ] || [ $rc = 1 ] || fail "rfetch" $rc
  # the newest match: alice's INBOX may still hold messages from earlier demo runs
  fetched=$(grep -l -r 'Subject: hello from postie' "$TMP/Maildir/new" "$TMP/Maildir/cur" 2>/dev/null \
    | xargs -r ls -t 2>/dev/null | head -1 || true)
  [ -n "$fetched" ] && break
  sleep 0.25
done
[ -n "$fetched" ] || fail "fetching the message into $TMP/Maildir" 1

say "fetched message: $fetched"
cat "$fetched"

say "done"
echo "The mail stack keeps running (users alice/alicepw, bob/bobpw; ports in $STACK_DIR/stack.env)."
echo "Stop it with: tests/stack/stack.sh down $STACK_DIR    (demo files: $TMP)"
