#!/usr/bin/env bash
# bench/rsend.sh — rsend vs msmtp, side by side, on the project's loopback stack (issue 3).
#
#   bench/rsend.sh [OUTDIR]
#
# One msmtprc (mode 600) drives both tools: account "smtps" = implicit TLS to Postfix's SMTPS port,
# AUTH PLAIN alice/alicepw, tls_trust_file = the stack's CA, from alice@localhost. Each tool sends
# a 2 KB message and a 10 MB message to bob@localhost (Postfix -> LMTP -> bob's Maildir).
#   - wall time and CPU (user+sys): hyperfine (median wall, mean CPU), JSON in OUTDIR; run with
#     --shell=none on an explicit `sh -c '... < file'`, so both tools carry the same small shell
#     cost and hyperfine's shell-spawn correction cannot round a fast command down to 0
#   - peak RSS: /usr/bin/time -f '%e %U %S %M' over TIME_RUNS runs (median and max)
# Before every measured run the Postfix queue is drained (untimed), so the previous message's
# delivery does not compete for the CPU; bob's mailbox is cleared between sets.
#
# Environment: RSEND=path (skip the build), MSMTP=path, CARGO_TARGET_DIR (default <repo>/target),
#   RUNS_SMALL (30), RUNS_BIG (10), WARMUP (3), TIME_RUNS (10), STACK_DIR (<repo>/.stack).
# Prints a markdown table on stdout; everything else goes to stderr. Needs root only to start the
# stack or clear bob's mailbox (stack.sh); loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

RUNS_SMALL=${RUNS_SMALL:-30}
RUNS_BIG=${RUNS_BIG:-10}
WARMUP=${WARMUP:-3}
TIME_RUNS=${TIME_RUNS:-10}
MSMTP=${MSMTP:-$(command -v msmtp || true)}
[ -n "$MSMTP" ] || die "msmtp is not installed"
need_tools hyperfine

RSEND=${RSEND:-}
[ -n "$RSEND" ] || RSEND=$(build_release rsend)
[ -x "$RSEND" ] || die "no rsend binary at $RSEND"
ensure_stack
lock_mailboxes bob   # it delivers to and clears bob's INBOX: one benchmark or test at a time

WORK=$(mktemp -d /tmp/postie-bench-rsend.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OUT=${1:-$WORK/out}
mkdir -p "$OUT"

RC=$WORK/msmtprc
cat >"$RC" <<EOF
defaults
tls on
tls_trust_file $STACK_CA
auth on
from alice@localhost

account smtps
host localhost
port $SMTPS_PORT
tls_starttls off
auth plain
user alice
password alicepw
EOF
chmod 600 "$RC"

# The messages: ~2 KB of text, and 10 MiB (a base64 attachment, 76-column lines).
"$PY" - "$WORK/2k.eml" "$WORK/10m.eml" <<'PYEOF'
import base64, os, sys
hdr = ("From: Alice <alice@localhost>\nTo: Bob <bob@localhost>\nSubject: bench %s\n"
       "Date: Mon, 23 Nov 2026 12:00:00 +0000\nMessage-ID: <bench-%s@localhost>\nMIME-Version: 1.0\n")
line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstu\n"
small = hdr % ("2k", "2k") + "Content-Type: text/plain; charset=us-ascii\n\n"
small += line * ((2048 - len(small)) // len(line))
open(sys.argv[1], "w").write(small)
raw = os.urandom(10 * 1024 * 1024 * 3 // 4)
b64 = base64.encodebytes(raw).decode()          # 76-char lines
big = (hdr % ("10m", "10m") + 'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
       "Content-Type: text/plain\n\nsee attachment\n--b\nContent-Type: application/octet-stream\n"
       "Content-Transfer-Encoding: base64\n\n" + b64 + "--b--\n")
open(sys.argv[2], "w").write(big)
PYEOF
log "messages: 2k.eml $(stat -c %s "$WORK/2k.eml") bytes, 10m.eml $(stat -c %s "$WORK/10m.eml") bytes"

DRAIN=$(postfix_drain_cmd)
CLEAR="$STACK_SH clear $STACK_DIR bob"

# Sanity: both tools send successfully with this rc (fail early with the tool's own message).
for tool in "$MSMTP" "$RSEND"; do
  "$tool" -C "$RC" -a smtps bob@localhost <"$WORK/2k.eml" || die "$tool failed to send the 2 KB message"
done
sh -c "$DRAIN"; $CLEAR >/dev/null

for size in 2k 10m; do
  if [ $size = 2k ]; then runs=$RUNS_SMALL; warm=$WARMUP; prep=$DRAIN
  else runs=$RUNS_BIG; warm=1; prep="$DRAIN; $CLEAR >/dev/null"; fi
  log "hyperfine: $size message, $runs runs"
  printf '%s\n' "$prep" >"$WORK/prep-$size.sh"   # --shell=none: the preparation is a script too
  hyperfine --style basic --warmup "$warm" --runs "$runs" --prepare "sh $WORK/prep-$size.sh" \
    --export-json "$OUT/hyperfine-$size.json" \
    -N -n msmtp "sh -c '$MSMTP -C $RC -a smtps bob@localhost < $WORK/$size.eml'" \
    -n rsend "sh -c '$RSEND -C $RC -a smtps bob@localhost < $WORK/$size.eml'" >&2
  sh -c "$DRAIN"; $CLEAR >/dev/null
  for tool in msmtp rsend; do
    bin=$MSMTP; [ $tool = rsend ] && bin=$RSEND
    log "/usr/bin/time: $tool $size, $TIME_RUNS runs"
    time_runs "$OUT/time-$tool-$size.txt" "$TIME_RUNS" "$prep" "$bin -C $RC -a smtps bob@localhost < $WORK/$size.eml"
    sh -c "$DRAIN"; $CLEAR >/dev/null
  done
done

"$PY" - "$OUT" <<'PYEOF'
import json, statistics as st, sys
out = sys.argv[1]
rows, res = [], {}
for size, label in (("2k", "2 KB"), ("10m", "10 MB")):
    hf = {r["command"]: r for r in json.load(open("%s/hyperfine-%s.json" % (out, size)))["results"]}
    for tool in ("msmtp", "rsend"):
        r = hf[tool]
        t = [l.split() for l in open("%s/time-%s-%s.txt" % (out, tool, size)) if l.strip()]
        t = [x for x in t if len(x) == 4 and x[0].replace(".", "").isdigit()]
        rss = [int(x[3]) for x in t]
        v = dict(wall=r["median"], wall_min=r["min"], wall_max=r["max"], sd=r["stddev"],
                 cpu=r["user"] + r["system"], rss=st.median(rss), rss_max=max(rss), n=len(r["times"]))
        res[(tool, size)] = v
        rows.append("| %s | %s | %.4f (%.4f–%.4f) | %.1f | %d (max %d) |" % (
            tool, label, v["wall"], v["wall_min"], v["wall_max"], v["cpu"] * 1000, v["rss"], v["rss_max"]))
print("| tool | message | median wall, s (min–max) | mean CPU user+sys, ms | peak RSS, KiB (median of runs) |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print()
def ok(b): return "**holds**" if b else "**does not hold**"
m, r = res[("msmtp", "2k")], res[("rsend", "2k")]
print("- median wall ≤ ½ msmtp's (2 KB): rsend %.4f s vs msmtp %.4f s (ratio %.2f) — %s"
      % (r["wall"], m["wall"], r["wall"] / m["wall"], ok(r["wall"] <= m["wall"] / 2)))
for size, label in (("2k", "2 KB"), ("10m", "10 MB")):
    m, r = res[("msmtp", size)], res[("rsend", size)]
    print("- CPU ≤ msmtp's (%s): rsend %.1f ms vs msmtp %.1f ms — %s"
          % (label, r["cpu"] * 1000, m["cpu"] * 1000, ok(r["cpu"] <= m["cpu"])))
    print("- peak RSS ≤ 2× msmtp's (%s): rsend %d KiB vs msmtp %d KiB (ratio %.2f) — %s"
          % (label, r["rss"], m["rss"], r["rss"] / m["rss"], ok(r["rss"] <= 2 * m["rss"])))
m10, r2, r10 = res[("msmtp", "10m")], res[("rsend", "2k")], res[("rsend", "10m")]
print("- 10 MB RSS ≤ 2 KB RSS + 4 MiB: rsend %d KiB vs %d + 4096 KiB — %s"
      % (r10["rss"], r2["rss"], ok(r10["rss"] <= r2["rss"] + 4096)))
print("- (10 MB median wall: rsend %.3f s vs msmtp %.3f s)" % (r10["wall"], m10["wall"]))
PYEOF
if [ $# -ge 1 ]; then log "raw results in $OUT"; fi
