#!/usr/bin/env bash
# bench/rfetch_many.sh — many accounts polled together, against the bound (issue 16, target 2).
#
#   bench/rfetch_many.sh [OUTDIR]
#
# N IMAPS accounts (N in NS, default "10 100"), each a folder of its own (manyK, alternately
# alice's and bob's: the stack has two users) holding MSGS messages of SIZE bytes, are polled by
# one rfetch run (fetch and delete into one Maildir per account), with each round-trip time in
# RTTS (default "0 20" ms; >0 goes through bench/latency_proxy.py). The run's wall time is
# compared with the bound no poller can beat on this machine:
#
#   bound = max(slowest single poll, CPU of all processes / cores)
#
# - slowest single poll: each of the N accounts polled alone (N rfetch runs one after another,
#   same seeding), the longest of them: the critical path of one account;
# - CPU of all processes: rfetch's user+sys (from wait4, /usr/bin/time), Dovecot's (the sum of
#   utime+stime+cutime+cstime over its whole process tree from /proc, before and after: an imap
#   process that exits is added to its parent's cutime), and the latency proxy's;
# - cores: nproc.
# The target is wall <= 1.2 x bound. The bound assumes the cores are ours: on a shared machine
# other work takes them too (niceness does not keep it out when the kernel groups tasks by
# session), so the table also gives the whole machine's busy CPU during the run (/proc/stat) and
# its share of wall x cores: at 100 % the machine was saturated for the whole run, the wall time
# says how much CPU the other work took, and the row cannot decide the target. Each configuration is run RUNS times (default 3; medians
# reported) and its single polls SINGLE_RUNS times (default 1). Every run's delivered count is
# checked (N * MSGS and nothing left on the server), else the script fails.
#
# Dovecot's per-user connection limit (10 from one IP) and process limit (100) would refuse 100
# simultaneous logins of two users: this script raises them in the stack's dovecot.conf
# (mail_max_userip_connections, default_process_limit; a marked block) and reloads; at exit it
# removes the block it added and reloads again, so the stack's other users get its own limits back.
#
# Environment: RFETCH=path (skip the build), NS, RTTS, MSGS (50), SIZE (5000), RUNS (3),
#   SINGLE_RUNS (1), RFETCH_AUTH (rfetch's `auth`, default unset: SCRAM-SHA-256, whose PBKDF2
#   costs Dovecot 20-40 ms of CPU per login; `plain` as mpop), MAX_CONNECTIONS (each account's
#   max_connections; default unset: rfetch's bound of 8 logins at once per server, so N accounts
#   poll in ceil(N/8) waves), DOVECOT_LOGIN (default: the stack's Dovecot as configured, which is
#   Dovecot's default "high-security" login mode: a new imap-login process for every connection
#   and a new imap process for every login, so simultaneous connections wait for those to be
#   spawned one after another; `prefork`: for the run, Dovecot's "high-performance" mode, the
#   one its documentation recommends for busy servers: imap-login processes that serve many
#   connections (service_count = 0, process_min_avail = 2) and one idle imap process ready per
#   account (process_min_avail), in a marked block removed at exit), STACK_DIR, BENCH_TMP (where the
#   Maildirs and state live, default /tmp;
#   /dev/shm takes the disk out), BENCH_FS=ext4 (instead of BENCH_TMP: a fresh journaled ext4 on
#   a loop device, removed after).
# Prints a markdown table on stdout; progress on stderr. Must run as root (seeding the stack's
# mailboxes). Report the load average with the numbers: the bound assumes the cores are ours.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

NS=${NS:-10 100}
RTTS=${RTTS:-0 20}
MSGS=${MSGS:-50}
SIZE=${SIZE:-5000}
RUNS=${RUNS:-3}
SINGLE_RUNS=${SINGLE_RUNS:-1}
[ "$(id -u)" = 0 ] || die "must run as root (seeding the stack's mailboxes)"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (package: time)"

RFETCH=${RFETCH:-}
[ -n "$RFETCH" ] || RFETCH=$(build_release rfetch)
[ -x "$RFETCH" ] || die "no rfetch binary at $RFETCH"
ensure_stack
lock_mailboxes alice bob   # its folders are alice's and bob's: one benchmark or test at a time
DOVECONF=$STACK_DOVECONF

max_n=0
for n in $NS; do [ "$n" -gt "$max_n" ] && max_n=$n; done
LIMITS_ADDED=""
if ! grep -q '^# bench/rfetch_many.sh limits' "$DOVECONF"; then
  LIMITS_ADDED=1
  log "raising Dovecot's connection and process limits for $max_n simultaneous logins"
  cat >>"$DOVECONF" <<EOF
# bench/rfetch_many.sh limits: many accounts of two users log in from 127.0.0.1 at once
default_process_limit = 1000
protocol imap {
  mail_max_userip_connections = 1000
}
EOF
  doveadm -c "$DOVECONF" reload
  sleep 1
fi
PREFORK_ADDED=""
case ${DOVECOT_LOGIN:-} in
  "") ;;
  prefork)
    grep -q '^# bench/rfetch_many.sh prefork' "$DOVECONF" && die "$DOVECONF already has a prefork block (a previous run killed?): remove it"
    PREFORK_ADDED=1
    log "Dovecot in high-performance login mode for the run (imap-login serving many connections, $max_n imap processes ready)"
    cat >>"$DOVECONF" <<EOF
# bench/rfetch_many.sh prefork: Dovecot's high-performance login mode for the run
service imap-login {
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_min_avail = $max_n
}
# end of bench/rfetch_many.sh prefork
EOF
    doveadm -c "$DOVECONF" reload
    sleep 2
    ;;
  *) die "DOVECOT_LOGIN=$DOVECOT_LOGIN: unset or prefork" ;;
esac

# BENCH_FS=ext4: the clients' side on a fresh journaled ext4 (a loop-mounted image in /var/tmp),
# so that the per-batch syncfs(2) and state fsyncs cost what they cost users, without flushing
# whatever else the shared disk holds dirty.
LOOP_MNT=""
if [ "${BENCH_FS:-}" = ext4 ]; then
  LOOP_IMG=$(mktemp /var/tmp/postie-bench-fs.XXXXXX)
  LOOP_MNT=$(mktemp -d /tmp/postie-bench-mnt.XXXXXX)
  truncate -s 2G "$LOOP_IMG"
  mkfs.ext4 -q -F "$LOOP_IMG"
  mount -o loop "$LOOP_IMG" "$LOOP_MNT" || { rm -f "$LOOP_IMG"; die "cannot loop-mount an ext4 image (BENCH_FS=ext4)"; }
  BENCH_TMP=$LOOP_MNT
  log "clients' side on a fresh journaled ext4 mounted at $LOOP_MNT"
fi
BENCH_TMP=${BENCH_TMP:-/tmp}
WORK=$(mktemp -d "$BENCH_TMP/postie-bench-many.XXXXXX")
PROXY_PID=""
# Run under `nice -n -15` on a shared machine: Dovecot's processes are then given the same
# priority (its master's children inherit it) for the duration, and put back afterwards.
OWN_NICE=$(nice)
DOVE_MASTER=$(head -1 "$STACK_DIR/run/dovecot/master.pid")
DOVE_NICE=$(ps -o ni= -p "$DOVE_MASTER" | tr -d ' ')
dovecot_tree() { echo "$DOVE_MASTER"; pgrep -P "$DOVE_MASTER" || true; }
if [ "$OWN_NICE" != "$DOVE_NICE" ]; then
  # shellcheck disable=SC2046
  # a child may exit between the listing and the renice: that one needs no priority any more
  renice -n "$OWN_NICE" -p $(dovecot_tree) >/dev/null 2>&1 || true
  log "Dovecot's processes reniced from $DOVE_NICE to $OWN_NICE for the run"
fi
cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
  # shellcheck disable=SC2046
  [ "$OWN_NICE" != "$DOVE_NICE" ] && renice -n "$DOVE_NICE" -p $(dovecot_tree) >/dev/null 2>&1 || true
  rm -rf "$WORK"
  if [ -n "$LOOP_MNT" ]; then umount "$LOOP_MNT" && rmdir "$LOOP_MNT" && rm -f "$LOOP_IMG"; fi
  # The block is the marker line and the four lines written after it above.
  if [ -n "$PREFORK_ADDED" ]; then
    sed -i '/^# bench\/rfetch_many.sh prefork/,/^# end of bench\/rfetch_many.sh prefork/d' "$DOVECONF"
    [ -n "$LIMITS_ADDED" ] || doveadm -c "$DOVECONF" reload || true
  fi
  if [ -n "$LIMITS_ADDED" ]; then
    sed -i '/^# bench\/rfetch_many.sh limits/,+4d' "$DOVECONF"
    doveadm -c "$DOVECONF" reload || true
  fi
}
trap cleanup EXIT
OUT=${1:-$WORK/out}
mkdir -p "$OUT"

for rtt in $RTTS; do
  port=$IMAPS_PORT proxy=""
  if [ "$rtt" != 0 ]; then
    port=$((IMAPS_PORT + 8))
    rm -f "$WORK/proxy.pid"
    "$PY" "$REPO/bench/latency_proxy.py" "$port" "$IMAPS_PORT" \
      "$("$PY" -c "print($rtt / 2)")" "$WORK/proxy.pid" &
    PROXY_PID=$!
    for _ in $(seq 50); do [ -s "$WORK/proxy.pid" ] && break; sleep 0.1; done
    [ -s "$WORK/proxy.pid" ] || die "the latency proxy did not start"
    proxy=$PROXY_PID
  fi
  for n in $NS; do
    log "$n accounts, +$rtt ms round trip, $MSGS messages of $SIZE bytes each: $RUNS runs"
    "$PY" - "$WORK/n$n-rtt$rtt" "$OUT/many-n$n-rtt$rtt.json" "$RFETCH" "$n" "$rtt" "$port" \
      "$MSGS" "$SIZE" "$RUNS" "$SINGLE_RUNS" "$STACK_DIR" "$STACK_CA" "$DOVECONF" "$proxy" <<'PYEOF'
import json, os, statistics as st, subprocess, sys, time
(work, out, rfetch, n, rtt, port, msgs, size, runs, single_runs, stack, ca, doveconf, proxy) = sys.argv[1:]
n, port, msgs, size, runs, single_runs = int(n), int(port), int(msgs), int(size), int(runs), int(single_runs)
AUTH = os.environ.get("RFETCH_AUTH", "")
MAXCONN = os.environ.get("MAX_CONNECTIONS", "")
# Both go into the TOML file as they are: refuse anything but a mechanism name and a number.
if AUTH and not all(c.isalnum() or c == "-" for c in AUTH):
    sys.exit(f"RFETCH_AUTH={AUTH!r}: a mechanism name (letters, digits, '-')")
if MAXCONN and not MAXCONN.isdigit():
    sys.exit(f"MAX_CONNECTIONS={MAXCONN!r}: a number")
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count()
os.makedirs(work, exist_ok=True)
home = os.path.join(work, "home"); os.makedirs(home, exist_ok=True)
user = lambda k: "alice" if k % 2 else "bob"
conf = os.path.join(work, "many.toml")
with open(conf, "w") as f:
    for k in range(1, n + 1):
        pw = user(k) + "pw"
        f.write(f'[accounts.a{k}]\nhost = "localhost"\nuser = "{user(k)}"\npassword = "{pw}"\n'
                f'tls_trust_file = "{ca}"\n[accounts.a{k}.fetch]\nprotocol = "imap"\nport = {port}\n'
                f'tls_starttls = false\nfolders = ["many{k}"]\nmaildir = "{work}/dest{k}"\nkeep = false\n'
                + (f'auth = "{AUTH}"\n' if AUTH else '')
                + (f'max_connections = {MAXCONN}\n' if MAXCONN else ''))
os.chmod(conf, 0o600)
doveadm = ["doveadm", "-c", doveconf]
mail_uid, mail_gid = int(subprocess.check_output(["id", "-u", "mail"])), int(subprocess.check_output(["id", "-g", "mail"]))
for k in range(1, n + 1):
    subprocess.run(doveadm + ["mailbox", "create", "-u", user(k), f"many{k}"], stderr=subprocess.DEVNULL)

def folder(k):
    return os.path.join(stack, "mail", user(k), "Maildir", f".many{k}")

def count(d):
    return sum(len(os.listdir(os.path.join(d, s))) for s in ("cur", "new") if os.path.isdir(os.path.join(d, s)))

def prep():
    """Every folder emptied and given `msgs` new messages; destinations and state emptied."""
    line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstu\n"
    now = time.time(); nonce = "%x" % int(now * 1e6)
    for k in range(1, n + 1):
        md = folder(k)
        for s in ("cur", "new"):
            for e in os.listdir(os.path.join(md, s)):
                os.unlink(os.path.join(md, s, e))
        for s in ("cur", "new", "tmp"):
            d = os.path.join(work, f"dest{k}", s)
            os.makedirs(d, exist_ok=True)
            for e in os.listdir(d):
                os.unlink(os.path.join(d, e))
        for i in range(1, msgs + 1):
            hdr = (f"From: Bench <bench@localhost>\nTo: {user(k)}@localhost\nSubject: many {k} {i}\n"
                   f"Message-ID: <many.{nonce}.{k}.{i}@localhost>\n\n")
            body = max(0, size - len(hdr))
            m = (hdr + (line * (body // len(line) + 1))[:max(0, body - 1)] + "\n").encode()
            name = "%d.M%dP%d_%s.many%d,S=%d:2," % (int(now), i, os.getpid(), nonce, k, len(m))
            fd = os.open(os.path.join(md, "cur", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, m); os.fchown(fd, mail_uid, mail_gid); os.close(fd)
    for u in ("alice", "bob"):
        subprocess.run(doveadm + ["force-resync", "-u", u, "*"], check=True)
    for e in os.listdir(home):
        p = os.path.join(home, e)
        if os.path.isfile(p):
            os.unlink(p)
    subprocess.run(["sync"], check=True)

def dovecot_pids():
    master = int(open(os.path.join(stack, "run/dovecot/master.pid")).read().split()[0])
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(p))
            except OSError:
                pass
    tree, todo = [], [master]
    while todo:
        p = todo.pop(); tree.append(p); todo.extend(children.get(p, []))
    return tree

def cpu(pids, with_children=True):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if with_children else 0)
    return total / TICK

def machine_busy():
    """CPU-seconds the whole machine spent busy so far (every process, ours and others')."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICK

def snapshot():
    return cpu(dovecot_pids()), cpu([int(proxy)], False) if proxy else 0.0, machine_busy()

def run(accounts):
    """One rfetch run polling `accounts` (all when empty); wall, rfetch CPU, Dovecot and proxy CPU."""
    tf = os.path.join(work, "time.txt")
    d0, p0, m0 = snapshot()
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf, rfetch, "-C", conf] + accounts,
                       env={"HOME": home, "PATH": os.environ["PATH"]},
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    d1, p1, m1 = snapshot()
    if r.returncode not in (0, 1):
        sys.exit("rfetch failed (%d): %s" % (r.returncode, r.stderr.decode(errors="replace")[-2000:]))
    u, s_, rss = open(tf).read().split()[-3:]
    return {"wall": wall, "rfetch_cpu": float(u) + float(s_), "rss_kib": int(rss),
            "dovecot_cpu": d1 - d0, "proxy_cpu": p1 - p0, "machine_cpu": m1 - m0}

def check():
    got = sum(count(os.path.join(work, f"dest{k}")) for k in range(1, n + 1))
    left = sum(count(folder(k)) for k in range(1, n + 1))
    if got != n * msgs or left:
        sys.exit(f"delivered {got} of {n * msgs}, {left} left on the server")

together, singles = [], []
for _ in range(runs):
    prep()
    r = run([]); check(); together.append(r)
    print("  together: %.3f s wall, rfetch %.2f + dovecot %.2f + proxy %.2f CPU-s; machine %.2f CPU-s busy" %
          (r["wall"], r["rfetch_cpu"], r["dovecot_cpu"], r["proxy_cpu"], r["machine_cpu"]), file=sys.stderr)
for _ in range(single_runs):
    prep()
    polls = [run([f"a{k}"]) for k in range(1, n + 1)]
    check()
    singles.append(polls)
    print("  single polls: slowest %.3f s, median %.3f s, sum %.3f s" %
          (max(p["wall"] for p in polls), st.median(p["wall"] for p in polls), sum(p["wall"] for p in polls)), file=sys.stderr)

med = lambda key: st.median(r[key] for r in together)
slowest = st.median(max(p["wall"] for p in polls) for polls in singles)
total_cpu = med("rfetch_cpu") + med("dovecot_cpu") + med("proxy_cpu")
bound = max(slowest, total_cpu / CORES)
res = {"n": n, "rtt_ms": int(rtt), "msgs": msgs, "size": size, "runs": runs, "cores": CORES,
       "wall": med("wall"), "wall_min": min(r["wall"] for r in together), "wall_max": max(r["wall"] for r in together),
       "rfetch_cpu": med("rfetch_cpu"), "dovecot_cpu": med("dovecot_cpu"), "proxy_cpu": med("proxy_cpu"),
       "rss_kib": med("rss_kib"), "slowest_single": slowest, "machine_cpu": med("machine_cpu"),
       "sequential": st.median(sum(p["wall"] for p in polls) for polls in singles),
       "bound": bound, "ratio": med("wall") / bound, "load": os.getloadavg()[0],
       "together": together, "singles": singles}
json.dump(res, open(out, "w"), indent=1)
PYEOF
  done
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""; fi
done

if [ -n "$PREFORK_ADDED" ]; then
  echo "Dovecot in high-performance login mode (DOVECOT_LOGIN=prefork):"
else
  echo "Dovecot as the stack configures it (a new login process per connection, a new imap process per login):"
fi
echo
"$PY" - "$OUT" <<'PYEOF'
import glob, json, sys
rows = sorted((json.load(open(f)) for f in glob.glob(sys.argv[1] + "/many-*.json")), key=lambda r: (r["rtt_ms"], r["n"]))
print("| accounts | round trip | median wall, s (min–max) | slowest single poll, s | CPU rfetch + Dovecot + proxy, s | CPU / %d cores, s | bound, s | wall / bound | machine busy during the run, CPU-s (share of wall × cores) | one after another, s | peak RSS, KiB | load avg |" % rows[0]["cores"])
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    cpu = r["rfetch_cpu"] + r["dovecot_cpu"] + r["proxy_cpu"]
    print("| %d × %d msgs | %d ms | %.3f (%.3f–%.3f) | %.3f | %.2f + %.2f + %.2f = %.2f | %.3f | %.3f | **%.2f×** %s | %.2f (%.0f %%) | %.2f | %d | %.1f |" % (
        r["n"], r["msgs"], r["rtt_ms"], r["wall"], r["wall_min"], r["wall_max"], r["slowest_single"],
        r["rfetch_cpu"], r["dovecot_cpu"], r["proxy_cpu"], cpu, cpu / r["cores"], r["bound"], r["ratio"],
        "(holds)" if r["ratio"] <= 1.2 else "(misses 1.2×)", r["machine_cpu"],
        100 * r["machine_cpu"] / (r["wall"] * r["cores"]),
        r["sequential"], r["rss_kib"], r["load"]))
PYEOF
if [ $# -ge 1 ]; then log "raw results in $OUT"; fi
