#!/usr/bin/env bash
# bench/rsend_queue.sh — what queueing a message costs rsend (issue 15): `rsend -odq` with a 2 KB
# message into a queue directory (envelope + message written under tmp/, fsynced, renamed, the
# directory fsynced). No network: -odq never connects.
#
#   bench/rsend_queue.sh [OUTDIR]
#
# BENCH_FS=ext4: the queue on a fresh journaled ext4 (a loop-mounted image in /var/tmp), what a
# user's home directory usually is, so the two fsyncs cost what they cost users (needs root).
# Environment: RSEND=path (skip the build), CARGO_TARGET_DIR, RUNS (200), WARMUP (10).
# Prints the median wall time and the mean user+sys CPU per run (hyperfine; JSON in OUTDIR).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

RUNS=${RUNS:-200}
WARMUP=${WARMUP:-10}
need_tools hyperfine
RSEND=${RSEND:-}
[ -n "$RSEND" ] || RSEND=$(build_release rsend)
[ -x "$RSEND" ] || die "no rsend binary at $RSEND"

LOOP_MNT=""
if [ "${BENCH_FS:-}" = ext4 ]; then
  need_tools mkfs.ext4 mount umount
  LOOP_IMG=$(mktemp /var/tmp/postie-bench-fs.XXXXXX)
  LOOP_MNT=$(mktemp -d /tmp/postie-bench-mnt.XXXXXX)
  truncate -s 1G "$LOOP_IMG"
  mkfs.ext4 -q -F "$LOOP_IMG"
  mount -o loop "$LOOP_IMG" "$LOOP_MNT" || { rm -f "$LOOP_IMG"; die "cannot loop-mount an ext4 image (BENCH_FS=ext4)"; }
  BENCH_TMP=$LOOP_MNT
  log "queue on a fresh journaled ext4 mounted at $LOOP_MNT"
fi
BENCH_TMP=${BENCH_TMP:-/tmp}
WORK=$(mktemp -d "$BENCH_TMP/postie-bench-queue.XXXXXX")
cleanup() {
  rm -rf "$WORK"
  if [ -n "$LOOP_MNT" ]; then umount "$LOOP_MNT" && rmdir "$LOOP_MNT" && rm -f "$LOOP_IMG"; fi
}
trap cleanup EXIT
OUT=${1:-$WORK/out}
mkdir -p "$OUT"

RC=$WORK/msmtprc
cat >"$RC" <<EOF
account default
host mail.invalid
port 465
tls on
tls_starttls off
auth off
from alice@localhost
queue_dir $WORK/queue
EOF
chmod 600 "$RC"
MSG=$WORK/msg-2k
"$PY" - "$MSG" <<'EOF'
import sys
body = "".join("line %04d of the benchmark message, padded to a typical width\n" % i for i in range(40))
msg = "From: alice@localhost\nTo: bob@localhost\nSubject: queue bench\n\n" + body
open(sys.argv[1], "w").write(msg[:2048])
EOF

CMD="sh -c '$RSEND -C $RC -odq bob@localhost < $MSG'"
hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" \
  --prepare "sh -c 'rm -f $WORK/queue/*.msg'" \
  --export-json "$OUT/queue.json" "$CMD" >&2
BASE="sh -c '$RSEND -C $RC --pretend < $MSG'"
hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" \
  --export-json "$OUT/pretend.json" "$BASE" >&2
"$PY" - "$OUT/queue.json" "$OUT/pretend.json" "${BENCH_FS:-tmp ($BENCH_TMP)}" <<'EOF'
import json, statistics, sys
def row(path):
    r = json.load(open(path))["results"][0]
    return statistics.median(r["times"]) * 1000, (r["user"] + r["system"]) * 1000, len(r["times"])
q, p = row(sys.argv[1]), row(sys.argv[2])
print(f"| file system | command | median wall | mean user+sys CPU | runs |")
print(f"|---|---|---|---|---|")
print(f"| {sys.argv[3]} | rsend -odq, 2 KB | {q[0]:.2f} ms | {q[1]:.2f} ms | {q[2]} |")
print(f"| {sys.argv[3]} | rsend --pretend (start-up and configuration only) | {p[0]:.2f} ms | {p[1]:.2f} ms | {p[2]} |")
EOF
