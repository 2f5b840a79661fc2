#!/usr/bin/env bash
# bench/rfetch.sh — rfetch vs the protocol floor, fetchmail, mpop and getmail6 on the project's
# loopback stack (issues 4 and 16).
#
#   bench/rfetch.sh [OUTDIR]
#
# Before EACH run (untimed, hyperfine --prepare): bob's INBOX is emptied and seeded with N messages
# of SIZE bytes (tests/stack/stack.sh seed), and the client's Maildir and state are emptied. Each
# client then fetches and deletes them into a Maildir:
#   POP3S: rfetch (TOML, built-in Maildir), fetchmail (MDA procmail -> Maildir), mpop (native
#          Maildir), getmail6 (Maildir destination)
#   IMAPS: rfetch, fetchmail (procmail), getmail6 (mpop has no IMAP)
#   both:  floor, the protocol floor (bench/floor.rs, the example `floor`): a minimal pipelined
#          client that fetches and deletes everything and writes nothing, waiting for every reply
#          as rfetch does; floor-nowait, the same closing without waiting for the answer to the
#          command that commits the deletions (POP3 QUIT; IMAP UID EXPUNGE + LOGOUT);
#          floor-write, the floor that also keeps the messages with the least a durable Maildir
#          delivery takes (one write(2) per message; per 100: syncfs, fsyncs, renames into
#          new/, fsync of new/): the physical bound of fetching into a Maildir on that file system;
#          rfetch-before, a second rfetch binary (RFETCH_BEFORE=path), for before/after in one run.
# The fast tools (floor, floor-nowait, rfetch, rfetch-before, mpop) of one protocol are measured in
# ONE hyperfine run, side by side; fetchmail and getmail6 (seconds per run) in runs of their own.
# All clients run as 'nobody' (fetchmail refuses root; the others are run the same way for
# fairness) through setpriv, under /usr/bin/time so the same runs give peak RSS.
# Every run's delivery is checked by Message-ID against the messages seeded for it: a run that
# did not deliver each of them exactly once, or delivered one not seeded for it, or left any on
# the server, is reported on stderr with the Message-IDs delivered twice, missing and foreign
# (all of them in OUTDIR/mismatch-TOOL-PROTO.txt). The run holds the flock of bob's mailbox
# (and alice's, for the 10-account part) on the stack for its whole length, the lock the stack
# tests take, so a second benchmark or a test on the same stack waits instead of emptying and
# seeding the mailbox under this one's clients (BENCH_LOCK_WAIT, default 900 s). Each preparation ends with `sync`, so no run pays for flushing the seeding.
# Then, rfetch only: 10 IMAPS accounts polled together vs one account, and vs the same 10
# accounts polled one after another (10 rfetch runs), each account with its own folder of
# MULTI_N messages (the stack has two users, so 5 accounts use folders of alice's and 5 of
# bob's; POP3 has only INBOX, so this part is IMAP only).
#
# Environment: RFETCH=path (skip the build), CARGO_TARGET_DIR (default <repo>/target), N (1000),
#   SIZE (5000), RUNS_FAST (10: rfetch, mpop), RUNS_SLOW (3: fetchmail, getmail6), WARMUP (1),
#   TOOLS ("floor rfetch fetchmail mpop getmail"; also floor-nowait, floor-write, rfetch-before), FLOOR=path
#   (the floor client, skip its build), RFETCH_BEFORE=path (the binary for rfetch-before),
#   INTERLEAVE=1 (the fast tools run round by round, A B C A B C..., instead of hyperfine's
#   all-of-A-then-all-of-B: on a shared machine a load change then hits every tool alike),
#   RFETCH_AUTH (rfetch's `auth`, default unset: rfetch picks SCRAM-SHA-256, whose PBKDF2 costs
#   Dovecot ~10-40 ms per login; "password" logs in as the floor and mpop do, for like with like), MULTI (1: run the 10-account part), MULTI_N
#   (messages per account there, default N), MULTI_RTT_MS (add this round-trip time to the
#   10-account part through bench/latency_proxy.py; default 0), STACK_DIR, BENCH_TMP (where the clients' state and
#   Maildirs live, default /tmp; /dev/shm takes the destination file system out of the race),
#   BENCH_FS=ext4 (instead of BENCH_TMP: a fresh journaled ext4 on a loop device, removed after).
# Prints markdown tables on stdout; progress on stderr. Must run as root (seeding, setpriv).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

N=${N:-1000}
SIZE=${SIZE:-5000}
RUNS_FAST=${RUNS_FAST:-10}
RUNS_SLOW=${RUNS_SLOW:-3}
WARMUP=${WARMUP:-1}
TOOLS=${TOOLS:-floor rfetch fetchmail mpop getmail}
MULTI=${MULTI:-1}
MULTI_N=${MULTI_N:-$N}
INTERLEAVE=${INTERLEAVE:-0}
[ "$(id -u)" = 0 ] || die "must run as root (seeding the stack's mailboxes, setpriv to nobody)"
need=(hyperfine setpriv flock comm)
case " $TOOLS " in *" fetchmail "*) need+=(fetchmail procmail) ;; esac
case " $TOOLS " in *" mpop "*) need+=(mpop) ;; esac
case " $TOOLS " in *" getmail "*) need+=(getmail) ;; esac
need_tools "${need[@]}"

RFETCH=${RFETCH:-}
case " $TOOLS " in *" rfetch "*)
  [ -n "$RFETCH" ] || RFETCH=$(build_release rfetch)
  [ -x "$RFETCH" ] || die "no rfetch binary at $RFETCH" ;;
esac
FLOOR=${FLOOR:-}
case " $TOOLS " in *" floor"*)
  [ -n "$FLOOR" ] || FLOOR=$(build_release_example floor)
  [ -x "$FLOOR" ] || die "no floor binary at $FLOOR" ;;
esac
RFETCH_BEFORE=${RFETCH_BEFORE:-}
case " $TOOLS " in *" rfetch-before "*)
  [ -x "$RFETCH_BEFORE" ] || die "TOOLS has rfetch-before: RFETCH_BEFORE must name an rfetch binary" ;;
esac
# RFETCH_AUTH goes into the TOML file as it is: a mechanism name only.
case ${RFETCH_AUTH:-} in *[!A-Za-z0-9-]*) die "RFETCH_AUTH=$RFETCH_AUTH: a mechanism name (letters, digits, -)" ;; esac
ensure_stack
DOVEADM="doveadm -c $STACK_DOVECONF"
# one benchmark (or test) per mailbox at a time: see lock_mailboxes
if [ "$MULTI" = 1 ] && [ -n "$RFETCH" ]; then lock_mailboxes bob alice; else lock_mailboxes bob; fi

# BENCH_FS=ext4: the clients' side on a fresh journaled ext4 (a loop-mounted image in /var/tmp),
# what a user's home directory usually is; fsync costs there what it costs users.
LOOP_MNT=""
if [ "${BENCH_FS:-}" = ext4 ]; then
  need_tools mkfs.ext4 mount umount
  LOOP_IMG=$(mktemp /var/tmp/postie-bench-fs.XXXXXX)
  LOOP_MNT=$(mktemp -d /tmp/postie-bench-mnt.XXXXXX)
  truncate -s 4G "$LOOP_IMG"
  mkfs.ext4 -q -F "$LOOP_IMG"
  mount -o loop "$LOOP_IMG" "$LOOP_MNT" || { rm -f "$LOOP_IMG"; die "cannot loop-mount an ext4 image (BENCH_FS=ext4)"; }
  chmod 755 "$LOOP_MNT"
  BENCH_TMP=$LOOP_MNT
  log "clients' side on a fresh journaled ext4 mounted at $LOOP_MNT"
fi
BENCH_TMP=${BENCH_TMP:-/tmp}
WORK=$(mktemp -d "$BENCH_TMP/postie-bench-rfetch.XXXXXX")
chmod 755 "$WORK"
cleanup() {
  rm -rf "$WORK"
  if [ -n "$LOOP_MNT" ]; then umount "$LOOP_MNT" && rmdir "$LOOP_MNT" && rm -f "$LOOP_IMG"; fi
}
trap cleanup EXIT
OUT=${1:-$WORK/out}
mkdir -p "$OUT"
W=$WORK/c                 # everything the clients touch, owned by nobody
mkdir -p "$W/bin"
[ -n "$RFETCH" ] && cp "$RFETCH" "$W/bin/rfetch"   # reachable by nobody wherever it was built
[ -n "$FLOOR" ] && cp "$FLOOR" "$W/bin/floor"
[ -n "$RFETCH_BEFORE" ] && cp "$RFETCH_BEFORE" "$W/bin/rfetch-before"
AS="setpriv --reuid=nobody --regid=nogroup --clear-groups -- env"

# ---------------------------------------------------------------------------------------------
# client configuration (fetch and delete everything, into a Maildir per tool)
for t in floor floor-nowait floor-write rfetch rfetch-before fetchmail mpop getmail; do
  for p in pop3 imap; do mkdir -p "$W/$t/$p" "$W/dest-$t-$p/"{cur,new,tmp}; done
done
for p in pop3 imap; do
  port=$POP3S_PORT; [ $p = imap ] && port=$IMAPS_PORT
  cat >"$W/rfetch/$p/rfetch.toml" <<EOF
[accounts.b]
host = "localhost"
user = "bob"
password = "bobpw"
tls_trust_file = "$STACK_CA"
[accounts.b.fetch]
protocol = "$p"
port = $port
tls_starttls = false
${RFETCH_AUTH:+auth = \"$RFETCH_AUTH\"}
maildir = "$W/dest-rfetch-$p"
keep = false
EOF
  sed "s|dest-rfetch-|dest-rfetch-before-|" "$W/rfetch/$p/rfetch.toml" >"$W/rfetch-before/$p/rfetch.toml"
  P=POP3; [ $p = imap ] && P=IMAP
  cat >"$W/fetchmail/$p/fetchmailrc" <<EOF
set no syslog
set no bouncemail
set postmaster "nobody"
poll localhost with proto $P service $port
  user "bob" there with password "bobpw" is "nobody" here
  ssl sslcertck sslcertfile "$STACK_CA"
  fetchall nokeep
  mda "/usr/bin/procmail -m $W/fetchmail/$p/procmailrc"
EOF
  echo "DEFAULT=$W/dest-fetchmail-$p/" >"$W/fetchmail/$p/procmailrc"
  rtype=SimplePOP3SSLRetriever; mbox=""
  [ $p = imap ] && { rtype=SimpleIMAPSSLRetriever; mbox='mailboxes = ("INBOX",)'; }
  cat >"$W/getmail/$p/getmailrc" <<EOF
[retriever]
type = $rtype
server = localhost
port = $port
username = bob
password = bobpw
ca_certs = $STACK_CA
$mbox

[destination]
type = Maildir
path = $W/dest-getmail-$p/

[options]
verbose = 0
read_all = true
delete = true
message_log_syslog = false
EOF
done
cat >"$W/mpop/pop3/mpoprc" <<EOF
account b
host localhost
port $POP3S_PORT
tls on
tls_starttls off
tls_trust_file $STACK_CA
user bob
password bobpw
keep off
only_new off
uidls_file $W/mpop/pop3/uidls
delivery maildir $W/dest-mpop-pop3
EOF

# the command each (tool, protocol) runs, as nobody, with HOME inside its own directory
cmd_for() {
  local t=$1 p=$2 d="$W/$1/$2" port=$POP3S_PORT
  [ "$p" = imap ] && port=$IMAPS_PORT
  case $t in
    floor)     echo "$AS HOME=$d $W/bin/floor $p localhost $port bob bobpw $STACK_CA" ;;
    floor-nowait) echo "$AS HOME=$d $W/bin/floor $p localhost $port bob bobpw $STACK_CA --no-wait" ;;
    floor-write) echo "$AS HOME=$d $W/bin/floor $p localhost $port bob bobpw $STACK_CA --write $W/dest-$t-$p" ;;
    rfetch)    echo "$AS HOME=$d $W/bin/rfetch -C $d/rfetch.toml b" ;;
    rfetch-before) echo "$AS HOME=$d $W/bin/rfetch-before -C $d/rfetch.toml b" ;;
    fetchmail) echo "$AS HOME=$d FETCHMAILHOME=$d fetchmail -f $d/fetchmailrc" ;;
    mpop)      echo "$AS HOME=$d mpop -C $d/mpoprc b" ;;
    getmail)   echo "$AS HOME=$d getmail --getmaildir $d --rcfile getmailrc" ;;
  esac
}

# prep.sh TOOL PROTO: record how many messages the previous run delivered (and how many it left on
# the server), then reset: client Maildir and state emptied, bob's INBOX cleared and seeded.
cat >"$W/prep.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
export LC_ALL=C   # sort, uniq and comm must collate alike
# message_ids DIR...: the Message-ID of every file under the DIRs (the first Message-ID line of
# its header, the header name, blanks and CR stripped), sorted, one per line. A file without one
# is not listed (it then shows as a count mismatch).
message_ids() {
  find "\$@" -type f -exec awk 'FNR == 1 { h = 1 } { sub(/\\r\$/, "") } h && \$0 == "" { h = 0 }
    h && tolower(\$0) ~ /^message-id:/ { sub(/^[^:]*:[ \\t]*/, ""); sub(/[ \\t]*\$/, ""); print; h = 0 }' {} + \\
    | sort
}
# The run just finished (whichever tool it was: one hyperfine run alternates tools) is counted
# first; "prep.sh record" only counts it.
if [ -e "$WORK/last-ran" ]; then
  read -r lt lp <"$WORK/last-ran"
  rm -f "$WORK/last-ran"
  dest=$W/dest-\$lt-\$lp
  got=\$(find "\$dest/new" "\$dest/cur" -type f | wc -l)
  left=\$(find "$STACK_MAILDIR2/new" "$STACK_MAILDIR2/cur" -type f | wc -l)
  # A client that does not wait for the reply to the command committing the deletions may leave
  # the server still deleting: give it up to 5 s before counting, so that the count says whether
  # the deletions happened at all.
  for _ in \$(seq 100); do [ "\$left" = 0 ] && break; sleep 0.05
    left=\$(find "$STACK_MAILDIR2/new" "$STACK_MAILDIR2/cur" -type f | wc -l); done
  # The floor writes nothing: it did its work when it left nothing on the server.
  case \$lt in floor|floor-nowait) got=$N ;; *)
    # By Message-ID: each message seeded for this run delivered exactly once, none foreign.
    message_ids "\$dest/new" "\$dest/cur" >"$WORK/got-ids"
    twice=\$(uniq -d "$WORK/got-ids")
    missing=\$(sort -u "$WORK/got-ids" | comm -23 "$WORK/seeded-ids" -)
    foreign=\$(sort -u "$WORK/got-ids" | comm -13 "$WORK/seeded-ids" -)
    if [ "\$got" != $N ] || [ "\$left" != 0 ] || [ -n "\$twice\$missing\$foreign" ]; then
      run=\$(( \$(wc -l 2>/dev/null <"$OUT/counts-\$lt-\$lp.txt" || echo 0) + 1 ))
      n2=\$(printf '%s' "\$twice" | grep -c . || true)
      nm=\$(printf '%s' "\$missing" | grep -c . || true)
      nf=\$(printf '%s' "\$foreign" | grep -c . || true)
      ns=\$(wc -l <"$WORK/seeded-ids")
      {
        echo "== \$lt-\$lp run \$run (counting $WARMUP warmup run(s)): delivered \$got files of $N seeded" \
          "(\$ns Message-IDs on the server after seeding), \$left left on the server"
        echo "-- delivered twice or more (\$n2):"; uniq -cd "$WORK/got-ids"
        echo "-- seeded, not delivered (\$nm):"; printf '%s\\n' "\$missing" | grep . || true
        echo "-- delivered, not seeded for this run (\$nf):"; printf '%s\\n' "\$foreign" | grep . || true
      } >>"$OUT/mismatch-\$lt-\$lp.txt"
      first() { printf '%s\\n' "\$1" | head -3 | tr '\\n' ' '; }
      echo "bench: \$lt-\$lp run \$run: delivered \$got of $N, \$left left on the server;" \
        "\$ns Message-IDs on the server after seeding $N (more: another seeder on bob's mailbox);" \
        "delivered twice \$n2 [\$(first "\$twice")], missing \$nm [\$(first "\$missing")]," \
        "not seeded for this run \$nf [\$(first "\$foreign")]; all in $OUT/mismatch-\$lt-\$lp.txt" >&2
    fi ;;
  esac
  echo "\$got \$left" >>"$OUT/counts-\$lt-\$lp.txt"
fi
[ "\$1" = record ] && exit 0
t=\$1 p=\$2 dest=$W/dest-\$1-\$2
find "\$dest/new" "\$dest/cur" "\$dest/tmp" -type f -delete
find "$W/\$t/\$p" -mindepth 1 -maxdepth 1 ! -name '*rc' ! -name '*.toml' -exec rm -rf {} +
"$STACK_SH" clear "$STACK_DIR" bob >/dev/null
"$STACK_SH" seed "$STACK_DIR" bob $N $SIZE >/dev/null
message_ids "$STACK_MAILDIR2/new" "$STACK_MAILDIR2/cur" >"$WORK/seeded-ids"
echo "\$t \$p" >"$WORK/last-ran"
# Flush the seeding's writes now, so the measured run does not pay for them.
sync
EOF
chmod 755 "$W/prep.sh"
chown -R nobody:nogroup "$W"
chmod -R go-rwx "$W"/{floor,floor-nowait,floor-write,rfetch,rfetch-before,fetchmail,mpop,getmail}
chmod 755 "$W" "$W/bin" "$W/prep.sh"
chown root:root "$W/prep.sh"

# ---------------------------------------------------------------------------------------------
run_set() {  # run_set PROTO NAME TOOL...: the tools side by side in one hyperfine run
  local p=$1 name=$2 t runs=$RUNS_FAST args=()
  shift 2
  [ $# -gt 0 ] || return 0
  case $1 in fetchmail|getmail) runs=$RUNS_SLOW ;; esac
  for t in "$@"; do
    rm -f "$OUT/time-$t-$p.txt" "$OUT/counts-$t-$p.txt"
    args+=(--prepare "$W/prep.sh $t $p" -n "$t-$p"
      "/usr/bin/time -f '%e %U %S %M' -a -o $OUT/time-$t-$p.txt $(cmd_for "$t" "$p")")
  done
  if [ "$INTERLEAVE" = 1 ]; then
    run_interleaved "$p" "$name" "$runs" "$@"
    return
  fi
  log "${p}s: $* side by side: $WARMUP warmup + $runs runs each of $N messages"
  hyperfine --style basic --warmup "$WARMUP" --runs "$runs" -i \
    --export-json "$OUT/hyperfine-$p-$name.json" "${args[@]}" >&2
  "$W/prep.sh" record        # counts the last run
}
# INTERLEAVE=1: round after round, each tool once per round (A B C A B C ...), so that a load
# change on a shared machine hits every tool alike; hyperfine runs all of A, then all of B.
# Wall time from date(1) around the command (the same ~1 ms of fork and exec for every tool);
# CPU from /usr/bin/time (10 ms steps, so only its mean over the runs means anything).
run_interleaved() {  # run_interleaved PROTO NAME RUNS TOOL...
  local p=$1 name=$2 runs=$3 r t s e
  shift 3
  log "${p}s: $* interleaved: $WARMUP warmup + $runs rounds of $N messages"
  : >"$OUT/walls-$p-$name.txt"
  for ((r = 0; r < WARMUP + runs; r++)); do
    for t in "$@"; do
      "$W/prep.sh" "$t" "$p" >/dev/null
      s=$(date +%s%N)
      sh -c "/usr/bin/time -f '%e %U %S %M' -a -o $OUT/time-$t-$p.txt $(cmd_for "$t" "$p")" \
        >/dev/null 2>&1 || log "$t-$p exited with an error (round $r)"
      e=$(date +%s%N)
      [ "$r" -ge "$WARMUP" ] && echo "$t-$p $(((e - s) / 1000))" >>"$OUT/walls-$p-$name.txt"
    done
  done
  "$W/prep.sh" record
  # the same JSON as hyperfine's export, for the summary below
  "$PY" - "$OUT" "$p" "$name" "$WARMUP" <<'PYEOF'
import json, statistics as st, sys
out, p, name, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
walls = {}
for l in open("%s/walls-%s-%s.txt" % (out, p, name)):
    cmd, us = l.split()
    walls.setdefault(cmd, []).append(int(us) / 1e6)
res = []
for cmd, w in walls.items():
    t = [l.split() for l in open("%s/time-%s.txt" % (out, cmd)) if len(l.split()) == 4][warmup:]
    res.append({"command": cmd, "median": st.median(w), "min": min(w), "max": max(w),
                "mean": st.mean(w), "times": w,
                "user": st.mean(float(x[1]) for x in t) if t else 0.0,
                "system": st.mean(float(x[2]) for x in t) if t else 0.0})
    print("%s: median %.3f s (%.3f–%.3f), %d runs" % (cmd, st.median(w), min(w), max(w), len(w)), file=sys.stderr)
json.dump({"results": res}, open("%s/hyperfine-%s-%s.json" % (out, p, name), "w"))
PYEOF
}
for p in pop3 imap; do
  fast=() slow=()
  for t in $TOOLS; do
    [ "$t/$p" = mpop/imap ] && continue
    case $t in fetchmail|getmail) slow+=("$t") ;; *) fast+=("$t") ;; esac
  done
  run_set "$p" fast "${fast[@]}"
  for t in "${slow[@]}"; do run_set "$p" "$t" "$t"; done
done
"$STACK_SH" clear "$STACK_DIR" bob >/dev/null

# ---------------------------------------------------------------------------------------------
# rfetch only: 10 IMAPS accounts (5 folders of alice's, 5 of bob's) together vs 1 account.
if [ "$MULTI" = 1 ] && [ -n "$RFETCH" ]; then
  M=$W/multi; mkdir -p "$M"
  # MULTI_RTT_MS > 0: the accounts reach Dovecot through bench/latency_proxy.py, which adds that
  # round-trip time (a provider some distance away); on bare loopback every poll is CPU-bound.
  MULTI_PORT=$IMAPS_PORT
  if [ "${MULTI_RTT_MS:-0}" != 0 ]; then
    MULTI_PORT=$((IMAPS_PORT + 7))
    "$PY" "$REPO/bench/latency_proxy.py" "$MULTI_PORT" "$IMAPS_PORT" \
      "$("$PY" -c "print(${MULTI_RTT_MS} / 2)")" "$WORK/proxy.pid" &
    PROXY_PID=$!
    trap 'kill "$PROXY_PID" 2>/dev/null; cleanup' EXIT
    for _ in $(seq 50); do [ -s "$WORK/proxy.pid" ] && break; sleep 0.1; done
    [ -s "$WORK/proxy.pid" ] || die "the latency proxy did not start"
    log "10-account part through a latency proxy: +${MULTI_RTT_MS} ms per round trip (port $MULTI_PORT)"
  fi
  for k in $(seq 1 10); do
    if [ "$k" -le 5 ]; then u=alice pw=alicepw; else u=bob pw=bobpw; fi
    $DOVEADM mailbox create -u $u "bench$k" 2>/dev/null || true
    mkdir -p "$M/dest$k/"{cur,new,tmp}
    acct="[accounts.a$k]
host = \"localhost\"
user = \"$u\"
password = \"$pw\"
tls_trust_file = \"$STACK_CA\"
[accounts.a$k.fetch]
protocol = \"imap\"
port = $MULTI_PORT
tls_starttls = false
folders = [\"bench$k\"]
maildir = \"$M/dest$k\"
keep = false
"
    echo "$acct" >>"$M/ten.toml"
    [ "$k" = 1 ] && echo "$acct" >"$M/one.toml"
  done
  # seed_folders K...: empty each folder benchK and put N messages of SIZE bytes in it
  cat >"$M/prep.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
for k in "\$@"; do
  if [ "\$k" -le 5 ]; then u=alice; else u=bob; fi
  find "$M/dest\$k" -type f -delete
  md=$STACK_DIR/mail/\$u/Maildir/.bench\$k
  find "\$md/cur" "\$md/new" -type f -delete
  $PY - "\$md" $MULTI_N $SIZE \$u \$(id -u mail) \$(id -g mail) <<'PYEOF'
import os, sys, time
md, n, size, user, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
now = time.time(); ts = int(now); pid = os.getpid(); nonce = "%x" % int(now * 1e6)
line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstu\n"
for i in range(1, n + 1):
    hdr = ("From: Bench <bench@localhost>\nTo: %s@localhost\nSubject: multi %d of %d\n"
           "Message-ID: <multi.%s.%d@localhost>\n\n") % (user, i, n, nonce, i)
    body_len = max(0, size - len(hdr))
    msg = (hdr + (line * (body_len // len(line) + 1))[:body_len - 1] + "\n").encode()
    name = "%d.M%dP%d_%s.bench,S=%d,W=%d:2," % (ts, i, pid, nonce, len(msg), len(msg) + msg.count(b"\n"))
    fd = os.open(os.path.join(md, "cur", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, msg); os.fchown(fd, uid, gid); os.close(fd)
PYEOF
  $DOVEADM force-resync -u \$u "bench\$k"
done
sync
EOF
  # The same ten accounts, polled one after another (what a poller without concurrency does).
  printf '#!/bin/sh\nfor k in 1 2 3 4 5 6 7 8 9 10; do %s/bin/rfetch -C %s/ten.toml a$k || exit $?; done\n' \
    "$W" "$M" >"$M/sequential.sh"
  chmod 755 "$M/prep.sh" "$M/sequential.sh"; chown -R nobody:nogroup "$M"; chown root:root "$M/prep.sh"
  chmod 600 "$M"/*.toml
  log "rfetch: 1 IMAPS account vs 10 polled together vs 10 one after another, $MULTI_N messages each"
  hyperfine --style basic --warmup 1 --runs "$RUNS_SLOW" --export-json "$OUT/hyperfine-multi.json" \
    --prepare "$M/prep.sh 1" -n "rfetch 1 account" \
      "/usr/bin/time -f '%e %U %S %M' -a -o $OUT/time-multi-1.txt $AS HOME=$M $W/bin/rfetch -C $M/one.toml" \
    --prepare "$M/prep.sh 1 2 3 4 5 6 7 8 9 10" -n "rfetch 10 accounts" \
      "/usr/bin/time -f '%e %U %S %M' -a -o $OUT/time-multi-10.txt $AS HOME=$M $W/bin/rfetch -C $M/ten.toml" \
    --prepare "$M/prep.sh 1 2 3 4 5 6 7 8 9 10" -n "rfetch 10 accounts one after another" \
      "/usr/bin/time -f '%e %U %S %M' -a -o $OUT/time-multi-seq.txt $AS HOME=$M $M/sequential.sh" >&2 \
    || log "hyperfine failed for the 10-account part"
  for k in $(seq 1 10); do
    echo "$k $(find "$M/dest$k/new" "$M/dest$k/cur" -type f | wc -l)" >>"$OUT/counts-multi.txt"
  done
fi

# ---------------------------------------------------------------------------------------------
"$PY" - "$OUT" "$N" "$MULTI_N" <<'PYEOF'
import json, os, statistics as st, sys
out, n, multi_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rss(path):
    try:
        v = [int(l.split()[3]) for l in open(path) if len(l.split()) == 4 and l.split()[3].isdigit()]
        return st.median(v), max(v)
    except (OSError, ValueError):
        return None, None
import glob
res, rows = {}, []
for f in sorted(glob.glob("%s/hyperfine-*.json" % out)):
    if f.endswith("-multi.json"):
        continue
    for r in json.load(open(f))["results"]:
        t, p = r["command"].rsplit("-", 1)
        res[(t, p)] = r
TOOLS = ("floor", "floor-nowait", "floor-write", "rfetch-before", "rfetch", "mpop", "fetchmail", "getmail")
print("| protocol | tool | median wall, s (min–max) | × floor | mean CPU user+sys, s | peak RSS, KiB (median) | runs delivering all %d |" % n)
print("|---|---|---|---|---|---|---|")
for p in ("pop3", "imap"):
    for t in TOOLS:
        if (t, p) not in res:
            continue
        r = res[(t, p)]
        rm, rx = rss("%s/time-%s-%s.txt" % (out, t, p))
        cf = "%s/counts-%s-%s.txt" % (out, t, p)
        counts = [l.split() for l in open(cf)] if os.path.exists(cf) else []
        good = sum(1 for c in counts if int(c[0]) == n and int(c[1]) == 0)
        fl = res.get(("floor", p))
        print("| %sS | %s | %.3f (%.3f–%.3f) | %s | %.3f | %s | %d/%d |" % (
            p.upper(), t, r["median"], r["min"], r["max"],
            "%.2f" % (r["median"] / fl["median"]) if fl else "–", r["user"] + r["system"],
            "%d (max %d)" % (rm, rx) if rm else "?", good, len(counts)))
print()
# Runs that did not deliver each seeded message exactly once, by Message-ID (prep.sh wrote them;
# hyperfine hides a preparation's output, so they are shown here).
for f in sorted(glob.glob("%s/mismatch-*.txt" % out)):
    print("Delivery mismatches (%s):" % os.path.basename(f))
    print()
    print("```")
    for l in open(f):
        if l.startswith("==") or l.startswith("--"):
            print(l.rstrip())
    print("```")
    print()
med = {k: v["median"] for k, v in res.items()}
for p in ("pop3", "imap"):
    if ("rfetch", p) in med and ("floor", p) in med:
        x = med[("rfetch", p)] / med[("floor", p)]
        print("- %sS: rfetch %.3f s = %.2fx the floor's %.3f s (target ≤ 1.10x) — %s" % (
            p.upper(), med[("rfetch", p)], x, med[("floor", p)], "**holds**" if x <= 1.10 else "**does not hold**"))
    if ("rfetch", p) in med and ("floor-write", p) in med:
        print("- %sS: rfetch = %.2fx floor-write's %.3f s (the floor plus the least a durable Maildir delivery writes)" % (
            p.upper(), med[("rfetch", p)] / med[("floor-write", p)], med[("floor-write", p)]))
    if ("rfetch", p) in med and ("fetchmail", p) in med:
        x = med[("fetchmail", p)] / med[("rfetch", p)]
        print("- %sS: rfetch %.1fx faster than fetchmail (target ≥ 20x) — %s" % (p.upper(), x, "**holds**" if x >= 20 else "**does not hold**"))
if ("rfetch", "pop3") in med and ("mpop", "pop3") in med:
    a, b = med[("rfetch", "pop3")], med[("mpop", "pop3")]
    print("- POP3S: rfetch %.3f s = %.2fx mpop's %.3f s (target ≤ 0.95x) — %s" % (a, a / b, b, "**holds**" if a <= 0.95 * b else "**does not hold**"))
f = "%s/hyperfine-multi.json" % out
if os.path.exists(f):
    rs = {r["command"]: r for r in json.load(open(f))["results"]}
    one, ten = rs["rfetch 1 account"], rs["rfetch 10 accounts"]
    seq = rs.get("rfetch 10 accounts one after another")
    print()
    rtt = os.environ.get("MULTI_RTT_MS", "0")
    print("| rfetch, IMAPS, %d messages per account%s | median wall, s (min–max) | mean CPU, s | peak RSS, KiB |"
          % (multi_n, "" if rtt == "0" else ", +%s ms round trip" % rtt))
    print("|---|---|---|---|")
    rows = [("1", "1 account", one), ("10", "10 accounts together", ten)]
    if seq:
        rows.append(("seq", "10 accounts one after another", seq))
    for k, label, r in rows:
        rm, _ = rss("%s/time-multi-%s.txt" % (out, k))
        print("| %s | %.3f (%.3f–%.3f) | %.3f | %s |" % (label, r["median"], r["min"], r["max"], r["user"] + r["system"], rm))
    c = [l.split() for l in open("%s/counts-multi.txt" % out)]
    print()
    print("- 10 accounts together / one: %.2fx (target < 2x) — %s; last run delivered %s messages per account"
          % (ten["median"] / one["median"], "**holds**" if ten["median"] < 2 * one["median"] else "**does not hold**",
             "/".join(x[1] for x in c)))
PYEOF
if [ $# -ge 1 ]; then log "raw results in $OUT"; fi
