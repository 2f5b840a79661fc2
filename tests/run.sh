#!/usr/bin/env bash
# tests/run.sh — the whole test suite, real-server tests included.
#
# Starts the private mail stack in <repo>/.stack (tests/stack/stack.sh up; installs the Debian
# packages it needs when missing), installs the clients the tests drive (stack.sh deps tests) unless one already runs there or in $POSTIE_STACK_DIR, exports
# POSTIE_STACK_DIR for the tests, runs `cargo build --all-targets` and `cargo test --all-targets --no-fail-fast`,
# stops the stack again if it started it, and exits with cargo's status. `cargo doc --no-deps`
# must be free of warnings too.
# Then `cargo check --all-targets` (warnings are errors) on a copy of the sources without
# Cargo.lock: the tests cover the locked versions, `cargo install` without --locked resolves the
# newest compatible ones, and both must build cleanly. The copy builds into
# target/fresh-resolution, so only the first run pays for it (about 75 s on 2 cores).
# Needs root (apt, Dovecot, Postfix) unless the stack already runs; uses `sudo -n` when not root.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
STACK="$REPO/tests/stack/stack.sh"
export POSTIE_STACK_DIR=${POSTIE_STACK_DIR:-$REPO/.stack}
# the 20-kill test for every delivery target, not only Maildir (tests/rfetch_kill.rs; ~1-2 min)
export POSTIE_KILL_ALL_TARGETS=${POSTIE_KILL_ALL_TARGETS:-1}
# a 100 MB message through every fetch target and rsend in tests/big_message_stack.rs (30 MB
# without it; 97 s of wall time, 33 s of the test's CPU, on the 2-core machine under a load of 11)
export POSTIE_BIG_MESSAGE_MB=${POSTIE_BIG_MESSAGE_MB:-100}

# cargo may live in ~/.cargo/bin on a machine whose PATH does not have it (e.g. under sudo)
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "run.sh: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then AS_ROOT=(); else AS_ROOT=(sudo -n); fi

started=0
stop_stack() {
  if [ $started = 1 ]; then "${AS_ROOT[@]}" "$STACK" down "$POSTIE_STACK_DIR" </dev/null || true; fi
}
trap stop_stack EXIT

if "$STACK" status "$POSTIE_STACK_DIR" </dev/null >/dev/null 2>&1; then
  echo "run.sh: using the mail stack already running in $POSTIE_STACK_DIR"
else
  t0=$SECONDS
  started=1
  "${AS_ROOT[@]}" "$STACK" up "$POSTIE_STACK_DIR" </dev/null
  echo "run.sh: mail stack up in $((SECONDS - t0)) s"
fi
# the clients the integration tests drive (swaks, msmtp, fetchmail, mutt, git send-email);
# `up` installs only the servers, which is all the demo needs
"${AS_ROOT[@]}" "$STACK" deps tests </dev/null

set +e
cargo build --all-targets </dev/null
status=$?
if [ $status = 0 ]; then
  # --no-fail-fast: one failing test binary must not hide the others' results
  cargo test --all-targets --no-fail-fast </dev/null
  status=$?
fi

# The API documentation builds without a warning (broken or private intra-doc links, stray
# HTML): a broken link is documentation that silently stopped pointing anywhere.
echo "run.sh: cargo doc --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps </dev/null
doc_status=$?
if [ $status = 0 ]; then status=$doc_status; fi

fresh=$(mktemp -d)
tar -C "$REPO" --exclude=./target --exclude=./.stack --exclude=./.git --exclude=./fuzz/target --exclude=./fuzz/corpus \
  --exclude=./fuzz/artifacts -cf - . \
  | tar -C "$fresh" -xf -
rm -f "$fresh/Cargo.lock"
if (cd "$fresh" && cargo generate-lockfile </dev/null); then
  echo "run.sh: cargo check --all-targets with a fresh resolution of the dependencies"
  (cd "$fresh" && RUSTFLAGS="-D warnings" CARGO_TARGET_DIR="$REPO/target/fresh-resolution" \
    cargo check --all-targets </dev/null)
  fresh_status=$?
  if [ $status = 0 ]; then status=$fresh_status; fi
else
  echo "run.sh: WARNING: cannot resolve the dependencies afresh (offline?); not checking the newest versions" >&2
fi
rm -rf "$fresh"
exit $status
