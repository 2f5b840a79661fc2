#!/usr/bin/env bash
# bench/idle_accounts.sh — many IMAP accounts in IDLE in one `rfetch -d` (issue 16, target 3).
#
#   bench/idle_accounts.sh [N...]        default: 1000 10000
#
# For each N: adds N users s1..sN to the stack's Dovecot (passwd-file lines, empty Maildirs),
# starts ONE `rfetch -d 300` (as nobody, release build) with N IMAPS accounts `idle = true`, waits
# until every account is in IDLE (Dovecot's `doveadm who` counts the sessions), then measures
#   - resident memory (VmRSS), threads, and the RSS per account against a 1-account run,
#   - CPU (utime+stime) and context switches (voluntary+involuntary, summed over every thread)
#     of rfetch over 10 s in which nothing happens: the load-independent measure of wake-ups,
#   - delivery latency for SAMPLES accounts: a message is delivered over LMTP to the account;
#     a second IDLE session of the same user (python, in this script) timestamps Dovecot's
#     `* N EXISTS`; the script then timestamps the file appearing in the account's Maildir.
#     Reported: delivery minus notification (rfetch's own part) and delivery minus LMTP's 250.
# Output: one line per N on stdout and a detailed log under OUT (BENCH_OUT, default a temp dir).
# The line splits the resident memory (from /proc/PID/smaps, also kept as OUT/smaps-N.txt):
# stacks_kib (the account threads' stacks), heap_kib (malloc's arenas and every other anonymous
# mapping), file_kib (the binary and libraries); per account = (N's value - a small N's) / N.
#
# What the run changes, and restores at exit:
#   - sysctl fs.inotify.max_user_instances (128 -> 8192) and fs.inotify.max_user_watches
#     (-> 1048576): every IDLE session in Dovecot watches its Maildir with inotify, all as the
#     'mail' user;
#   - sysctl vm.max_map_count (65530 -> 262144): every thread of rfetch is 4 mappings (its stack
#     and guard page, Rust's signal stack and its guard), so the default stops near 15,000
#     threads, and a thread that cannot get its signal stack aborts the process;
#   - Dovecot: STACK_DIR/dovecot/scale.conf, included from dovecot.conf, raises
#     default_client_limit / default_process_limit, runs imap-login in high-performance mode
#     (service_count = 0) and lets one imap process serve up to 250 IDLE sessions
#     (service_count = 0, client_limit = 250: 10,000 one-session processes would need ~30 GB
#     and more PIDs than the kernel's default pid_max), vsz_limit 2 GB;
#     removed (and Dovecot reloaded) at exit;
#   - the users s1..sN are appended to STACK_DIR/etc/users and removed at exit (their Maildirs too).
# The accounts log in with AUTH=PLAIN inside TLS (what most providers take): SCRAM's PBKDF2 on
# both sides would measure login CPU, not the cost of waiting.
# The machine may be loaded by other work: wall-clock numbers (latency) say so in the log; RSS,
# thread and context-switch counts do not depend on load.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root (users in Dovecot, sysctl, rfetch as nobody)"
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000)
SAMPLES=${SAMPLES:-20}
# MAX_CONNECTIONS=K: the accounts' max_connections (logins and polls at once; default rfetch's)
MAX_CONNECTIONS=${MAX_CONNECTIONS:-}
IDLE_SECONDS=${IDLE_SECONDS:-10}
# HEAPTRACK=1: record rfetch's allocations with heaptrack (Debian package heaptrack) into
# OUT/heaptrack-N.zst and kill the daemon (SIGKILL) after the measurements, so that what is
# reported as leaked is what the idle accounts held (`heaptrack --print-leaks FILE`).
HEAPTRACK=${HEAPTRACK:-}
HEAPTRACK_LIB=/usr/lib/heaptrack
ensure_stack
RFETCH=${RFETCH:-$(build_release rfetch)}
DOVEADM="doveadm -c $STACK_DOVECONF"
WORK=$(mktemp -d /tmp/postie-bench-idle.XXXXXX); chmod 755 "$WORK"
OUT=${BENCH_OUT:-$WORK/out}; mkdir -p "$OUT"
cp "$RFETCH" "$WORK/rfetch"
AS="setpriv --reuid=nobody --regid=nogroup --clear-groups --"
USERS_FILE=$STACK_DIR/etc/users
OLD_INST=$(sysctl -n fs.inotify.max_user_instances)
OLD_WATCH=$(sysctl -n fs.inotify.max_user_watches)
OLD_MAPS=$(sysctl -n vm.max_map_count)
RFETCH_PID=""

remove_users() {
  sed -i '/^s[0-9]*:/d' "$USERS_FILE"
  find "$STACK_DIR/mail" -mindepth 1 -maxdepth 1 -name 's[0-9]*' -exec rm -rf {} +
}
cleanup() {
  [ -n "$RFETCH_PID" ] && kill "$RFETCH_PID" 2>/dev/null && wait "$RFETCH_PID" 2>/dev/null
  sed -i '/^!include_try scale.conf$/d' "$STACK_DOVECONF"
  rm -f "$STACK_DIR/dovecot/scale.conf"
  $DOVEADM reload 2>/dev/null || true
  remove_users
  sysctl -q -w fs.inotify.max_user_instances="$OLD_INST" fs.inotify.max_user_watches="$OLD_WATCH" \
    vm.max_map_count="$OLD_MAPS"
  rm -rf "$WORK"
}
trap cleanup EXIT

sysctl -q -w fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 \
  vm.max_map_count=262144
cat >"$STACK_DIR/dovecot/scale.conf" <<EOF
# bench/idle_accounts.sh: many simultaneous IDLE sessions (removed when the run ends)
default_client_limit = 30000
default_process_limit = 30000
default_vsz_limit = 2G
service imap-login {
  service_count = 0
  client_limit = 4000
  process_min_avail = 2
  process_limit = 16
}
service imap {
  service_count = 0
  client_limit = 250
  process_limit = 200
  vsz_limit = 2G
}
service auth {
  client_limit = 30000
}
service anvil {
  client_limit = 30000
}
EOF
grep -qx '!include_try scale.conf' "$STACK_DOVECONF" || echo '!include_try scale.conf' >>"$STACK_DOVECONF"
$DOVEADM reload
sleep 1

MAX=0; for n in "${SIZES[@]}"; do [ "$n" -gt "$MAX" ] && MAX=$n; done
log "adding users s1..s$MAX"
remove_users
uid=$(id -u mail); gid=$(id -g mail)
"$PY" - "$USERS_FILE" "$STACK_DIR/mail" "$MAX" "$uid" "$gid" <<'PYEOF'
import os, sys
users, mail, n, uid, gid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(users, "a") as f:
    for k in range(1, n + 1):
        f.write("s%d:{PLAIN}pw%d:%d:%d::%s/s%d::\n" % (k, k, uid, gid, mail, k))
        for d in ("", "/Maildir", "/Maildir/cur", "/Maildir/new", "/Maildir/tmp"):
            p = "%s/s%d%s" % (mail, k, d)
            os.mkdir(p)
            os.chown(p, uid, gid)
PYEOF

# The latency probe: IDLE as the user next to rfetch, deliver over LMTP, timestamp the EXISTS
# and the file in rfetch's Maildir.
cat >"$WORK/probe.py" <<'PYEOF'
import os, socket, ssl, smtplib, sys, time, statistics
port, lmtp_port, ca, dest_root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
accounts = [int(a) for a in sys.argv[5:]]
ctx = ssl.create_default_context(cafile=ca)
def line(f):
    l = f.readline()
    if not l: raise SystemExit("probe: connection closed")
    return l
own, total = [], []
for k in accounts:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    # A notification that never comes (Dovecot coalesces a message added and expunged before
    # it told this session) ends the probe instead of hanging it.
    s.settimeout(60)
    f = s.makefile("rb")
    line(f)
    s.sendall(b"a LOGIN s%d pw%d\r\n" % (k, k))
    while not line(f).startswith(b"a "): pass
    s.sendall(b"b SELECT INBOX\r\n")
    while not line(f).startswith(b"b "): pass
    s.sendall(b"c IDLE\r\n")
    while not line(f).startswith(b"+"): pass
    new = os.path.join(dest_root, "d%d" % k, "new")
    before = set(os.listdir(new))
    l = smtplib.LMTP("127.0.0.1", lmtp_port)
    msg = "From: probe@localhost\r\nTo: s%d@localhost\r\nSubject: probe %d\r\n\r\nhello\r\n" % (k, k)
    l.sendmail("probe@localhost", ["s%d@localhost" % k], msg)
    t_lmtp = time.monotonic()
    l.quit()
    while b"EXISTS" not in line(f): pass
    t_notify = time.monotonic()
    deadline = t_notify + 30
    while set(os.listdir(new)) == before:
        if time.monotonic() > deadline: raise SystemExit("probe: s%d: not delivered in 30 s" % k)
        time.sleep(0.0005)
    t_done = time.monotonic()
    s.sendall(b"DONE\r\nd LOGOUT\r\n"); s.close()
    own.append((t_done - t_notify) * 1000); total.append((t_done - t_lmtp) * 1000)
    print("s%d: delivered %.1f ms after Dovecot's EXISTS, %.1f ms after LMTP's 250" % (k, own[-1], total[-1]), file=sys.stderr)
q = lambda v: (statistics.median(v), max(v))
print("latency_after_exists_ms median %.1f max %.1f; after_lmtp_ms median %.1f max %.1f" % (q(own) + q(total)))
PYEOF

# One snapshot of rfetch's threads, read in one pass (10,000 threads take a second, not a
# minute of forked awk): first line "utime+stime ticks, voluntary+involuntary switches" summed,
# then "tid switches name" per thread, sorted by tid (for join).
snapshot() {
  "$PY" - "$1" <<'PYEOF'
import os, sys
pid = sys.argv[1]
with open("/proc/%s/stat" % pid) as f:
    st = f.read().rsplit(")", 1)[1].split()
ticks = int(st[11]) + int(st[12])
rows, total = [], 0
for tid in os.listdir("/proc/%s/task" % pid):
    try:
        with open("/proc/%s/task/%s/status" % (pid, tid)) as f:
            sw = sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        with open("/proc/%s/task/%s/comm" % (pid, tid)) as f:
            name = f.read().strip().replace(" ", "_")
    except OSError:
        continue  # a thread that just ended
    total += sw
    rows.append("%s %d %s" % (tid, sw, name))
print(ticks, total)
print("\n".join(sorted(rows)))
PYEOF
}
# Where the resident memory is, from /proc/PID/smaps: "stacks_kib=A heap_kib=B other_anon_kib=C
# file_kib=D" (stacks: the account threads' 512 KiB stack mappings; heap: the main [heap] and
# every other anonymous mapping, which are glibc's thread arenas and large allocations; file: the
# binary and libraries). The whole smaps goes to FILE.
smaps_parts() {
  cp "/proc/$1/smaps" "$2" 2>/dev/null || true
  "$PY" - "$2" <<'PYEOF'
import sys
parts = {"stacks": 0, "heap": 0, "file": 0}
size = name = None
for l in open(sys.argv[1]):
    f = l.split()
    if "-" in f[0] and len(f) >= 5 and ":" in f[3]:
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        size, name = (hi - lo) // 1024, (f[5] if len(f) > 5 else "")
    elif f[0] == "Rss:":
        kib = int(f[1])
        if name.startswith("/"):
            parts["file"] += kib
        elif name == "" and 500 <= size <= 520:
            parts["stacks"] += kib
        else:
            parts["heap"] += kib
print(" ".join("%s_kib=%d" % kv for kv in parts.items()))
PYEOF
}
status_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

run_n() {
  local n=$1 d=$WORK/n$n k cfg
  mkdir -p "$d"
  cfg=$d/rfetch.toml
  "$PY" - "$cfg" "$d" "$n" "$IMAPS_PORT" "$STACK_CA" "${MAX_CONNECTIONS:-}" <<'PYEOF'
import os, sys
cfg, d, n, port, ca, most = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
extra = "max_connections = %s\n" % most if most else ""
# keep = true: the probe's own IDLE session must see the message's EXISTS. rfetch fetches and
# expunges a new message within a few milliseconds of its own notification, and Dovecot, which
# tells each session in its own time, then tells the probe's session nothing at all (a message
# added and expunged before it told a session is never announced to it). Keeping the message
# changes nothing the probe measures: the file is in new/ before rfetch flags anything.
extra += "keep = true\n"
with open(cfg, "w") as f:
    for k in range(1, n + 1):
        for sub in ("cur", "new", "tmp"):
            os.makedirs("%s/d%d/%s" % (d, k, sub))
        f.write('[accounts.s%d]\nhost = "localhost"\nuser = "s%d"\npassword = "pw%d"\n'
                'tls_trust_file = "%s"\n[accounts.s%d.fetch]\nprotocol = "imap"\nport = %s\n'
                'tls_starttls = false\nauth = "plain"\nidle = true\nmaildir = "%s/d%d"\n%s\n' % (k, k, k, ca, k, port, d, k, extra))
os.chmod(cfg, 0o600)
PYEOF
  chown -R nobody:nogroup "$d"
  log "N=$n: starting rfetch -d 300 with $n IDLE accounts"
  local t0=$EPOCHREALTIME
  local preload=()
  if [ -n "$HEAPTRACK" ]; then
    # heaptrack's own wrapper, unrolled so that RFETCH_PID is rfetch itself: the allocations
    # still live when rfetch is killed (below) are what the idle accounts hold.
    mkfifo "$WORK/heaptrack.fifo"; chown nobody "$WORK/heaptrack.fifo"
    "$HEAPTRACK_LIB/libexec/heaptrack_interpret" <"$WORK/heaptrack.fifo" | zstd -q >"$OUT/heaptrack-$n.zst" &
    preload=(LD_PRELOAD="$HEAPTRACK_LIB/libheaptrack_preload.so" DUMP_HEAPTRACK_OUTPUT="$WORK/heaptrack.fifo")
  fi
  (cd "$d" && exec $AS env HOME="$d" "${preload[@]}" "$WORK/rfetch" -C "$cfg" -N -d 300 -i "$d/ids" -L "$d/rfetch.log") &
  RFETCH_PID=$!
  # every account in IDLE: Dovecot has n sessions of s* users in IDLE
  local idling=0 waited=0
  while [ "$idling" -lt "$n" ]; do
    sleep 2; waited=$((waited + 2))
    idling=$(grep -c 'waiting for new mail (IDLE)' "$d/rfetch.log" 2>/dev/null || true)
    idling=${idling:-0}
    kill -0 "$RFETCH_PID" 2>/dev/null || die "rfetch exited (see $d/rfetch.log)"
    [ "$waited" -gt $((120 + n / 20)) ] && { log "N=$n: only $idling accounts reached IDLE in $waited s"; break; }
  done
  local ready=$(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 ))
  sleep 3   # let allocator and kernel settle after the logins
  local rss rss_anon threads c0 c1 cpu sw parts
  rss=$(status_field "$RFETCH_PID" VmRSS); threads=$(status_field "$RFETCH_PID" Threads)
  rss_anon=$(status_field "$RFETCH_PID" RssAnon)
  parts=$(smaps_parts "$RFETCH_PID" "$OUT/smaps-$n.txt")
  snapshot "$RFETCH_PID" >"$WORK/snap0"; sleep "$IDLE_SECONDS"; snapshot "$RFETCH_PID" >"$WORK/snap1"
  c0=$(head -1 "$WORK/snap0"); c1=$(head -1 "$WORK/snap1")
  tail -n +2 "$WORK/snap0" >"$WORK/threads0"; tail -n +2 "$WORK/snap1" >"$WORK/threads1"
  # which threads switched while idle (thread id, name, switches), for the log
  join "$WORK/threads0" "$WORK/threads1" | awk '$4 - $2 > 0 {print $1, $3, $4 - $2}' >"$OUT/switches-$n.txt" || true
  cpu=$(awk -v a="${c0% *}" -v b="${c1% *}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz}')
  sw=$(( ${c1#* } - ${c0#* } ))
  local sample=() step=$(( n / SAMPLES )); [ "$step" -ge 1 ] || step=1
  for ((k = 1; k <= n && ${#sample[@]} < SAMPLES; k += step)); do sample+=("$k"); done
  local lat
  lat=$("$PY" "$WORK/probe.py" "$IMAPS_PORT" "$LMTP_PORT" "$STACK_CA" "$d" "${sample[@]}" 2>>"$OUT/probe-$n.log") \
    || lat="latency probe failed (see $OUT/probe-$n.log)"
  local rss_after; rss_after=$(status_field "$RFETCH_PID" VmRSS)
  if [ -n "$HEAPTRACK" ]; then
    # killed, not stopped: a stop logs out and frees every session before heaptrack sees the end
    kill -KILL "$RFETCH_PID"; wait "$RFETCH_PID" || true; RFETCH_PID=""
    wait; rm -f "$WORK/heaptrack.fifo"
    log "N=$n: heaptrack --print-leaks on $OUT/heaptrack-$n.zst lists what the idle daemon held"
  else
    kill -TERM "$RFETCH_PID"; wait "$RFETCH_PID" || true; RFETCH_PID=""
  fi
  cp "$d/rfetch.log" "$OUT/rfetch-$n.log" 2>/dev/null || true
  printf 'N=%s idle=%s ready_ms=%s rss_kib=%s rss_anon_kib=%s %s rss_after_probe_kib=%s threads=%s cpu_%ss=%s ctxt_switches_%ss=%s %s\n' \
    "$n" "$idling" "$ready" "$rss" "$rss_anon" "$parts" "$rss_after" "$threads" "$IDLE_SECONDS" "$cpu" "$IDLE_SECONDS" "$sw" "$lat" | tee -a "$OUT/summary.txt"
  rm -rf "$d"
}

log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (other work may be running)"
for n in "${SIZES[@]}"; do run_n "$n"; done
log "results in $OUT/summary.txt"
