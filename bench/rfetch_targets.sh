#!/usr/bin/env bash
# bench/rfetch_targets.sh — two rfetch binaries, A and B, on the delivery targets that confirm
# each message themselves: MDA (procmail into a Maildir), SMTP (Postfix), LMTP (Dovecot), and
# SMTP into smtp-sink (`sink`: accepts and discards, so rfetch's own cost is what is measured).
#
#   RFETCH_A=path RFETCH_B=path bench/rfetch_targets.sh
#
# Made to compare a build before and after a change on a shared, noisy machine: the runs are
# INTERLEAVED (A B A B ...), each on the same freshly seeded mailbox, so load drifts hit both
# alike. Before each run (untimed): bob's INBOX is emptied and seeded with N messages of SIZE
# bytes, alice's INBOX (where SMTP and LMTP deliver) is emptied after Postfix's queue drained,
# the client directory (state, MDA Maildir) is emptied, then `sync`. Each run is `rfetch` (TOML
# config, nokeep) fetching and deleting all N; a run that does not empty the mailbox is reported.
#
# Environment: RFETCH_A, RFETCH_B (required), N (1000), SIZE (5000), RUNS (5 per binary and
#   case), TARGETS ("mda smtp lmtp"; also: sink), PROTOS ("pop3"; "pop3 imap" for both), STACK_DIR,
#   BENCH_TMP (client side, default /tmp), BENCH_FS=ext4 (a fresh journaled ext4 on a loop
#   device for the client side instead).
# Prints one markdown table on stdout: wall-time median and range per case and binary, the
# median CPU time (user + sys, MDA children included), and B relative to A. Must run as root
# (seeding the stack's mailboxes).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

N=${N:-1000}
SIZE=${SIZE:-5000}
RUNS=${RUNS:-5}
TARGETS=${TARGETS:-mda smtp lmtp}
PROTOS=${PROTOS:-pop3}
[ "$(id -u)" = 0 ] || die "must run as root (seeding the stack's mailboxes)"
[ -x "${RFETCH_A:-}" ] || die "RFETCH_A must name an rfetch binary"
[ -x "${RFETCH_B:-}" ] || die "RFETCH_B must name an rfetch binary"
need_tools procmail
ensure_stack
lock_mailboxes bob   # it empties and seeds bob's INBOX: one benchmark or test at a time

LOOP_MNT=""
if [ "${BENCH_FS:-}" = ext4 ]; then
  need_tools mkfs.ext4 mount umount
  LOOP_IMG=$(mktemp /var/tmp/postie-bench-fs.XXXXXX)
  LOOP_MNT=$(mktemp -d /tmp/postie-bench-mnt.XXXXXX)
  truncate -s 1G "$LOOP_IMG"
  mkfs.ext4 -q -F "$LOOP_IMG"
  mount -o loop "$LOOP_IMG" "$LOOP_MNT" || { rm -f "$LOOP_IMG"; die "cannot loop-mount an ext4 image"; }
  BENCH_TMP=$LOOP_MNT
  log "client side on a fresh journaled ext4 mounted at $LOOP_MNT"
fi
BENCH_TMP=${BENCH_TMP:-/tmp}
WORK=$(mktemp -d "$BENCH_TMP/postie-bench-targets.XXXXXX")
cleanup() {
  rm -rf "$WORK"
  if [ -n "$LOOP_MNT" ]; then umount "$LOOP_MNT" && rmdir "$LOOP_MNT" && rm -f "$LOOP_IMG"; fi
}
trap cleanup EXIT
cp "$RFETCH_A" "$WORK/rfetch-a"
cp "$RFETCH_B" "$WORK/rfetch-b"
DRAIN=$(postfix_drain_cmd)

# config DIR PROTO TARGET: writes DIR/config.toml for bob, delivering to TARGET.
config() {
  local dir=$1 proto=$2 target=$3 port line
  case $proto in pop3) port=$POP3S_PORT ;; imap) port=$IMAPS_PORT ;; esac
  case $target in
    mda)
      printf 'DEFAULT=%s/Maildir/\n' "$dir" >"$dir/procmailrc"
      line="mda = [\"/usr/bin/procmail\", \"-m\", \"$dir/procmailrc\"]" ;;
    smtp) line="smtp = \"127.0.0.1:$SMTP_PORT\"
recipient = \"alice@localhost\"" ;;
    sink) line="smtp = \"127.0.0.1:$SINK_PORT\"
recipient = \"alice@localhost\"" ;;
    lmtp) line="lmtp = \"127.0.0.1:$LMTP_PORT\"
recipient = \"alice@localhost\"" ;;
  esac
  cat >"$dir/config.toml" <<EOF
[accounts.bob]
host = "127.0.0.1"
user = "bob"
password = "bobpw"
tls_trust_file = "$STACK_DIR/tls/ca.crt"
tls_host_override = "localhost"
[accounts.bob.fetch]
protocol = "$proto"
port = $port
tls_starttls = false
keep = false
$line
EOF
  chmod 600 "$dir/config.toml"
}

left_on_server() {
  find "$STACK_MAILDIR2/cur" "$STACK_MAILDIR2/new" -type f 2>/dev/null | wc -l
}

RESULTS=$WORK/results
: >"$RESULTS"
for proto in $PROTOS; do
  for target in $TARGETS; do
    for ((i = 1; i <= RUNS; i++)); do
      for which in a b; do
        dir=$WORK/$which-$proto-$target
        rm -rf "$dir"
        mkdir -p "$dir"
        config "$dir" "$proto" "$target"
        "$STACK_SH" clear "$STACK_DIR" bob >/dev/null
        "$STACK_SH" seed "$STACK_DIR" bob "$N" "$SIZE" >/dev/null
        sh -c "$DRAIN"
        "$STACK_SH" clear "$STACK_DIR" alice >/dev/null
        sync
        t0=$(date +%s%N)
        # CPU time in microseconds (getrusage of the waited-for children: rfetch and its MDAs;
        # /usr/bin/time only has 10 ms steps).
        HOME=$dir "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(int((u.ru_utime + u.ru_stime) * 1e6))
sys.exit(r.returncode)' "$dir/err" "$WORK/rfetch-$which" -s -C "$dir/config.toml" >"$dir/cpu" \
          || die "rfetch-$which $proto $target failed: $(tail -3 "$dir/err")"
        t1=$(date +%s%N)
        left=$(left_on_server)
        [ "$left" = 0 ] || log "rfetch-$which $proto $target left $left messages on the server"
        cpu=$(($(cat "$dir/cpu") / 1000))
        echo "$proto $target $which $(((t1 - t0) / 1000000)) $cpu" >>"$RESULTS"
        log "$proto $target run $i $which: $(((t1 - t0) / 1000000)) ms, CPU $cpu ms"
      done
    done
  done
done
sh -c "$DRAIN"
"$STACK_SH" clear "$STACK_DIR" alice >/dev/null

"$PY" - "$RESULTS" "$N" "$SIZE" "${BENCH_FS:-$BENCH_TMP}" <<'EOF'
import statistics, sys
path, n, size, fs = sys.argv[1:]
runs = {}
for line in open(path):
    proto, target, which, ms, cpu = line.split()
    by = runs.setdefault((proto, target), {})
    by.setdefault(which, []).append(int(ms))
    by.setdefault(which + "cpu", []).append(int(cpu))
print(f"{n} messages of {size} bytes, client side on {fs}; per run, ms: wall time, and CPU")
print("time (user + sys of rfetch and its children, i.e. the MDA's too)")
print()
print("| case | A wall median (min-max) | B wall median (min-max) | B/A | A CPU median | B CPU median | B/A |")
print("|---|---|---|---|---|---|---|")
for (proto, target), by in runs.items():
    a, b = by.get("a", []), by.get("b", [])
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    ca, cb = statistics.median(by["acpu"]), statistics.median(by["bcpu"])
    print(f"| {proto}s -> {target} | {ma:.0f} ({min(a)}-{max(a)}) | {mb:.0f} ({min(b)}-{max(b)}) "
          f"| {mb / ma:.2f} | {ca:.0f} | {cb:.0f} | {cb / max(ca, 1):.2f} |")
EOF
