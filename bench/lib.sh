# bench/lib.sh — helpers shared by bench/rsend.sh and bench/rfetch.sh (sourced, not run).
#
# Expects REPO to be set by the caller. Provides: need_tools, ensure_stack (loads stack.env),
# lock_mailboxes, build_release, build_release_example, postfix_drain_cmd, time_runs, and
# summarise (a small python3 report writer).

PY=/usr/bin/python3           # the system python: pyenv shims cost ~100 ms per call
[ -x "$PY" ] || PY=python3
STACK_SH="$REPO/tests/stack/stack.sh"
STACK_DIR=${STACK_DIR:-${POSTIE_STACK_DIR:-$REPO/.stack}}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

need_tools() {
  local t
  # the tools compared and timed are installed for bench/ only, not by the stack's `up`
  "$STACK_SH" deps bench >&2 || die "cannot install the benchmark tools (tests/stack/stack.sh deps bench)"
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || die "$t is not installed (tests/stack/stack.sh deps bench installs it)"; done
  [ -x /usr/bin/time ] || die "/usr/bin/time is not installed (package: time)"
}

# Start the loopback stack when it is not running, then load its ports and paths.
ensure_stack() {
  if ! "$STACK_SH" status "$STACK_DIR" >/dev/null 2>&1; then
    log "stack not running: starting it (tests/stack/stack.sh up)"
    "$STACK_SH" up "$STACK_DIR" >&2
  fi
  # shellcheck disable=SC1091
  . "$STACK_DIR/stack.env"
}

# lock_mailboxes USER...: hold, until this shell exits, the flock on each USER's mailbox of the
# stack ($STACK_DIR/postie-USER-mailbox.lock, the same lock the stack tests take), waiting up to
# BENCH_LOCK_WAIT seconds (default 900) for whoever holds it. Two benchmarks (or a benchmark and
# a test) that empty and seed the same mailbox while the other polls it make each other's runs
# deliver 0, half or twice the messages seeded, with none left on the server: without this
# lock that is what a second run against the same stack did. Call it after ensure_stack: a
# server started while the lock's file descriptor is open would inherit it and hold the lock.
lock_mailboxes() {
  local user f fd
  for user in "$@"; do
    f="$STACK_DIR/postie-$user-mailbox.lock"
    exec {fd}>>"$f" || die "cannot open $f"
    if ! flock -n "$fd"; then
      log "$user's mailbox on $STACK_DIR is in use by another benchmark or test: waiting up to ${BENCH_LOCK_WAIT:-900} s for its lock ($f)"
      flock -w "${BENCH_LOCK_WAIT:-900}" "$fd" \
        || die "$user's mailbox on $STACK_DIR is still in use after ${BENCH_LOCK_WAIT:-900} s: run one benchmark per stack"
    fi
  done
}

# build_release BIN: print the path of a release build of BIN ($CARGO_TARGET_DIR honoured).
build_release() {
  local bin=$1 target=${CARGO_TARGET_DIR:-$REPO/target}
  log "cargo build --release (target dir $target)"
  (cd "$REPO" && CARGO_TARGET_DIR=$target cargo build --release --bin "$bin" >&2)
  echo "$target/release/$bin"
}

# build_release_example NAME: the same for an example target (bench/floor.rs is `floor`).
build_release_example() {
  local name=$1 target=${CARGO_TARGET_DIR:-$REPO/target}
  log "cargo build --release --example $name (target dir $target)"
  (cd "$REPO" && CARGO_TARGET_DIR=$target cargo build --release --example "$name" >&2)
  echo "$target/release/examples/$name"
}

# A shell command that waits until Postfix's queue is empty, so that the previous run's delivery
# (Postfix -> LMTP -> Dovecot) does not compete with the next measured run for the two cores.
postfix_drain_cmd() {
  local q="$STACK_DIR/spool/postfix"
  echo "i=0; while [ -n \"\$(find $q/maildrop $q/incoming $q/active $q/deferred -type f 2>/dev/null | head -1)\" ] && [ \$i -lt 600 ]; do sleep 0.02; i=\$((i+1)); done"
}

# time_runs OUT N PREPARE CMD: run CMD (a shell command) N times under /usr/bin/time, running
# PREPARE (untimed) before each; append "wall user sys maxrss_kib" lines to OUT.
time_runs() {
  local out=$1 n=$2 prep=$3 cmd=$4 i
  : >"$out"
  for ((i = 0; i < n; i++)); do
    sh -c "$prep" >/dev/null 2>&1
    /usr/bin/time -f '%e %U %S %M' -a -o "$out" sh -c "$cmd" >/dev/null 2>>"$out.err" \
      || die "command failed: $cmd (see $out.err)"
  done
}

# The shell itself (dash) counts in /usr/bin/time's %M only if it is the biggest process in the
# tree (RUSAGE_CHILDREN maxrss is the largest single descendant), so `sh -c` does not inflate RSS.
