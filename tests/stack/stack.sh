#!/usr/bin/env bash
# stack.sh — postie's private, loopback-only mail stack (Dovecot + Postfix) for tests, CI, the
# demo and benchmarks.
#
#   stack.sh up     [DIR]              install the servers' packages if missing (Dovecot,
#                                      Postfix, openssl: all the demo needs), make a throw-away CA + server
#                                      cert, write configs under DIR, start Dovecot (IMAP, IMAPS,
#                                      POP3, POP3S, LMTP), Postfix (SMTP, submission, SMTPS) and
#                                      smtp-sink, then write DIR/stack.env. Idempotent.
#   stack.sh down   [DIR]              stop exactly what `up` started (by PID), remove stack.env
#   stack.sh status [DIR]              PIDs and ports; exit 0 only if the stack runs and answers
#   stack.sh env    [DIR]              print DIR/stack.env (ports, paths, users)
#   stack.sh deps   SET...             install the missing packages of each SET: stack (what up
#                                      installs), tests (the clients the integration tests
#                                      drive: swaks, msmtp, fetchmail, mutt, git send-email;
#                                      microsocks as the SOCKS5 proxy; python3 for seed; zsh,
#                                      fish, systemd, dpkg-dev, binutils, lintian for the
#                                      packaging tests; GNU time for the peak RSS of
#                                      tests/big_message_stack.rs),
#                                      bench (the tools bench/ compares and times with). Needs
#                                      root only when something is missing.
#   stack.sh seed   DIR USER N SIZE    add N messages of ~SIZE bytes to USER's INBOX (Maildir
#                                      files written directly, then `doveadm force-resync`);
#                                      SEED_TAG=WORD puts WORD in every Subject (default: a nonce)
#   stack.sh clear  DIR USER           empty USER's INBOX
#   stack.sh put    DIR USER FILE      store FILE byte-exact in USER's INBOX (copied as one Maildir
#                                      file into cur/, then `doveadm force-resync`)
#
# DIR defaults to <repo>/.stack. Everything (configs, certs, Maildirs, spool, logs, PID files)
# lives under DIR; nothing under /etc is changed. Only 127.0.0.1 and ::1 are bound or contacted.
# Mail to non-local recipients is accepted and DISCARDED, never relayed.
#
# Ports: STACK_PORT_BASE (default 20000) + 25 SMTP (STARTTLS offered, AUTH after TLS),
#   +587 SUBMISSION (STARTTLS required + AUTH), +465 SMTPS (implicit TLS + AUTH),
#   +26 SINK (smtp-sink, no TLS), +110 POP3 (STLS), +995 POP3S, +143 IMAP (STARTTLS),
#   +993 IMAPS, +24 LMTP. `up` records them in DIR/ports.env; later commands reuse them.
# Users: alice/alicepw (alice@localhost), bob/bobpw (bob@localhost); AUTH PLAIN, LOGIN, CRAM-MD5,
#   SCRAM-SHA-1 and SCRAM-SHA-256 (Dovecot; Postfix's submission AUTH goes through it); Dovecot
#   also EXTERNAL with a client certificate signed by DIR/tls/ca.key (CN = the user).
# Must run as root (Dovecot and Postfix switch users). The users' mail is owned by Debian's
# unprivileged 'mail' user.
set -euo pipefail
# STACK_TRACE=1: trace every command with a timestamp (to see where the time goes)
if [ -n "${STACK_TRACE:-}" ]; then PS4='+ $EPOCHREALTIME '; set -x; fi

MAIL_OWNER=mail
# Package sets (stack.sh deps SET). Each test that drives a client names its package when
# it is missing: tests/rfetch_daemon.rs swaks; tests/rfetch_vs_fetchmail.rs fetchmail;
# tests/rsend_clients.rs msmtp, mutt, git (git-email, and libmailtools-perl: git send-email needs
# Mail::Address, which apt's --no-install-recommends leaves out); tests/rfetch_kill.rs and
# tests/mda_injection.rs procmail; tests/socks_proxy.rs microsocks (a SOCKS5
# server the test starts itself on 127.0.0.1); tests/rfetch_hooks.rs socat (a plugin command);
# `stack.sh seed` (tests/stack_smoke.rs,
# tests/rfetch_kill.rs) runs python3; tests/completions.rs loads the scripts in zsh and fish;
# tests/packaging.rs runs systemd-analyze (systemd), dpkg-deb, dpkg-shlibdeps (dpkg-dev),
# strip (binutils) and lintian. bench/ compares with fetchmail (through procmail), mpop,
# getmail6 and msmtp, times with hyperfine and /usr/bin/time, and reports with python3.
PKGS_STACK="dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix openssl"
PKGS_TESTS="swaks msmtp fetchmail procmail mutt git-email libmailtools-perl microsocks socat python3-minimal zsh fish systemd dpkg-dev binutils lintian"
# tests/big_message_stack.rs reads the peak RSS of rfetch and rsend from GNU time (wait4).
PKGS_TESTS="$PKGS_TESTS time"
# OAuth2 and keyring tests (tests/oauth_stack.rs, tests/keyring.rs): the authorization server
# of oauth-stack.sh, a headless Secret Service in a private D-Bus session, secret-tool.
PKGS_TESTS="$PKGS_TESTS python3-authlib gnome-keyring libsecret-tools dbus-daemon"
PKGS_BENCH="msmtp fetchmail procmail mpop getmail6 hyperfine time python3"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "stack: $*" >&2; exit 1; }
log() { echo "stack: $*" >&2; }
usage() { awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0" >&2; exit 2; }

[ $# -ge 1 ] || usage
CMD=$1; shift
case $CMD in -h|--help|help) usage ;; esac
DIR_ARG=${1:-$REPO/.stack}
[ $# -ge 1 ] && shift
case $CMD in
  status|env|deps) ;;   # read-only (deps: unless something is missing): fine as any user
  *) [ "$(id -u)" = 0 ] || die "must run as root (Dovecot and Postfix switch users); try: sudo $0 $CMD" ;;
esac

# ---------------------------------------------------------------------------------------------
# DIR: Dovecot (as 'mail') and Postfix (as 'postfix') must be able to traverse every parent of
# DIR. A repository under /root is not, so then DIR becomes a symlink to a directory in /tmp.
resolve_dir() {
  local d=$DIR_ARG parent
  if [ "$CMD" = up ] && [ ! -e "$d" ] && [ ! -L "$d" ]; then
    parent=$(dirname "$(realpath -m "$d")")
    mkdir -p "$parent"
    if ! setpriv --reuid=nobody --regid=nogroup --clear-groups -- test -x "$parent" 2>/dev/null; then
      local real
      real=$(mktemp -d /tmp/postie-stack.XXXXXX)
      ln -s "$real" "$d"
      log "$parent is not reachable by unprivileged users; $d -> $real"
    fi
  fi
  DIR=$(realpath -m "$d")
}
resolve_dir

PORTS_ENV="$DIR/ports.env"
STACK_ENV="$DIR/stack.env"
DOVECONF="$DIR/dovecot/dovecot.conf"
PFCONF="$DIR/postfix"
PFSPOOL="$DIR/spool/postfix"
DOVE_PID="$DIR/run/dovecot/master.pid"
PF_PID="$PFSPOOL/pid/master.pid"
SINK_PID="$DIR/run/smtp-sink.pid"

load_ports() {
  local base=${STACK_PORT_BASE:-}
  if [ -z "$base" ] && [ -f "$PORTS_ENV" ]; then
    # shellcheck disable=SC1090
    . "$PORTS_ENV"
    return 0
  fi
  base=${base:-20000}
  case $base in *[!0-9]*|'') die "STACK_PORT_BASE must be a number" ;; esac
  [ "$base" -ge 1024 ] && [ "$base" -le 64000 ] || die "STACK_PORT_BASE must be 1024..64000"
  SMTP_PORT=$((base + 25)) SUBMISSION_PORT=$((base + 587)) SMTPS_PORT=$((base + 465))
  SINK_PORT=$((base + 26)) POP3_PORT=$((base + 110)) POP3S_PORT=$((base + 995))
  IMAP_PORT=$((base + 143)) IMAPS_PORT=$((base + 993)) LMTP_PORT=$((base + 24))
}
ALL_PORTS() { echo "$SMTP_PORT $SUBMISSION_PORT $SMTPS_PORT $SINK_PORT $POP3_PORT $POP3S_PORT $IMAP_PORT $IMAPS_PORT $LMTP_PORT"; }

doveadm_() { doveadm -c "$DOVECONF" "$@"; }

# ---------------------------------------------------------------------------------------------
# install_pkgs PKG...: apt-get install those not installed yet.
install_pkgs() {
  local missing="" p installed
  # one dpkg-query for all packages (each process start counts on a busy machine); it exits 1
  # when any of them was never installed, which pipefail + set -e must not turn into a silent exit
  installed=$({ dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null || true; } \
    | awk '/install ok installed/ {print $1}')
  for p in "$@"; do
    case " $(echo $installed) " in *" $p "*) ;; *) missing="$missing $p" ;; esac
  done
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages:$missing; run this command as root (sudo) to install them"
  log "installing:$missing (log: /tmp/postie-stack-apt.log)"
  local aptlog=/tmp/postie-stack-apt.log
  # 'No configuration': the postfix package never prompts and never writes /etc/postfix/main.cf.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  # Keep the packages' system services from starting (containers without an init system).
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=1
  fi
  local rc=0
  # A fresh machine may have no package lists: update first when the install would not find them.
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ] \
     || ! apt-cache show postfix >/dev/null 2>&1; then
    apt-get update -q >"$aptlog" 2>&1 </dev/null || true
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
      >>"$aptlog" 2>&1 </dev/null || {
    # stale package lists: refresh once and retry
    apt-get update -q >>"$aptlog" 2>&1 </dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        >>"$aptlog" 2>&1 </dev/null || rc=$?
  }
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { tail -20 "$aptlog" >&2; die "apt-get install failed"; }
}

# ---------------------------------------------------------------------------------------------
# Certificates: ECDSA P-256 keys (fast to generate; every client we test speaks ECDSA).
make_tls() {
  local t="$DIR/tls"
  [ -s "$t/server.crt" ] && [ -s "$t/server.key" ] && [ -s "$t/ca.crt" ] && return 0
  mkdir -p "$t"; chmod 755 "$t"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
    -keyout "$t/ca.key" -out "$t/ca.crt" -subj "/CN=postie test stack throw-away CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=localhost" 2>/dev/null
  cat >"$t/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EOF
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  chmod 600 "$t/ca.key" "$t/server.key"
  chmod 644 "$t/ca.crt" "$t/server.crt"
}

write_users() {
  mkdir -p "$DIR/etc"
  local uid gid up u p
  uid=$(id -u "$MAIL_OWNER"); gid=$(id -g "$MAIL_OWNER")
  : >"$DIR/etc/users"
  for up in alice:alicepw bob:bobpw; do
    u=${up%%:*} p=${up#*:}
    echo "$u:{PLAIN}$p:$uid:$gid::$DIR/mail/$u::" >>"$DIR/etc/users"
    mkdir -p "$DIR/mail/$u/Maildir/"{cur,new,tmp}
  done
  chown -R "$MAIL_OWNER:$MAIL_OWNER" "$DIR/mail"
  # Dovecot's auth process (user 'dovecot') reads this; it holds only throw-away test passwords.
  chown root:dovecot "$DIR/etc/users"; chmod 640 "$DIR/etc/users"
}

have_ipv6() { grep -q ' lo$' /proc/net/if_inet6 2>/dev/null && grep -q '^0\{31\}1 ' /proc/net/if_inet6; }

write_dovecot() {
  mkdir -p "$DIR/dovecot" "$DIR/run" "$DIR/state/dovecot" "$DIR/log"
  local uid dh="" listen="127.0.0.1"
  uid=$(id -u "$MAIL_OWNER")
  have_ipv6 && listen="127.0.0.1, ::1"
  [ -f /usr/share/dovecot/dh.pem ] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
  cat >"$DOVECONF" <<EOF
# Generated by tests/stack/stack.sh — private Dovecot instance: dovecot -c $DOVECONF
instance_name = postie-stack
base_dir = $DIR/run/dovecot
state_dir = $DIR/state/dovecot
log_path = $DIR/log/dovecot.log
info_log_path = $DIR/log/dovecot.log
protocols = imap pop3 lmtp
listen = $listen
shutdown_clients = yes

ssl = yes
ssl_cert = <$DIR/tls/server.crt
ssl_key = <$DIR/tls/server.key
$dh
ssl_min_protocol = TLSv1.2
# Client certificates from the stack's CA are asked for (never required) for SASL EXTERNAL; the
# throw-away CA has no CRL.
ssl_ca = <$DIR/tls/ca.crt
ssl_verify_client_cert = yes
ssl_require_crl = no

disable_plaintext_auth = no
# The passwords are stored {PLAIN}: Dovecot derives CRAM-MD5 and SCRAM from them. EXTERNAL
# takes the user name from the client certificate's CN.
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 external
auth_username_format = %Ln
auth_ssl_username_from_cert = yes
# EXTERNAL only: the verified certificate is the credential (no other mechanism reaches this).
passdb {
  driver = static
  args = nopassword=y
  mechanisms = external
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN $DIR/etc/users
}
userdb {
  driver = passwd-file
  args = $DIR/etc/users
}
# all mail is owned by the unprivileged '$MAIL_OWNER' user (uid $uid); Dovecot refuses uid 0.
first_valid_uid = $uid
first_valid_gid = $uid
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
pop3_uidl_format = %08Xu%08Xv
protocol lmtp {
  postmaster_address = postmaster@localhost
}

service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = $POP3S_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    port = $LMTP_PORT
  }
}
service auth {
  # Postfix smtpd (user postfix) authenticates SASL clients through this socket.
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# No authentication penalty: the tests log in with wrong passwords on purpose, and the penalty
# (up to 15 s per IP) then delays every later login from 127.0.0.1 past Postfix's wait for its
# SASL answer ("Connection lost to authentication server"), failing unrelated tests.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
}

write_postfix() {
  mkdir -p "$PFCONF" "$DIR/spool" "$DIR/log"
  # The queue directory must be root-owned; `postfix start` creates its sub-directories.
  mkdir -p "$PFSPOOL" "$DIR/spool/postfix-data"
  chown root:root "$PFSPOOL"; chown postfix:postfix "$DIR/spool/postfix-data"
  local ifaces="127.0.0.1" nets="127.0.0.0/8" protos="ipv4"
  if have_ipv6; then ifaces="127.0.0.1, [::1]" nets="127.0.0.0/8, [::1]/128" protos="all"; fi
  cat >"$PFCONF/main.cf" <<EOF
# Generated by tests/stack/stack.sh — private Postfix instance: postfix -c $PFCONF start
compatibility_level = 3.6
config_directory = $PFCONF
queue_directory = $PFSPOOL
data_directory = $DIR/spool/postfix-data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $DIR/log/postfix.log
maillog_file_prefixes = $DIR/log
myhostname = mail.localhost
mydomain = localhost
myorigin = localhost
mydestination = localhost, mail.localhost, localhost.localdomain
inet_interfaces = $ifaces
inet_protocols = $protos
mynetworks = $nets
append_dot_mydomain = no
biff = no
smtpd_banner = \$myhostname ESMTP postie-stack
# tests/big_message_stack.rs sends 100 MB messages through Postfix (tests/run.sh)
message_size_limit = 209715200
mailbox_size_limit = 0
# local mail goes to Dovecot over LMTP; nothing ever leaves loopback
local_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
local_recipient_maps = inline:{alice=ok, bob=ok}
alias_maps =
alias_database =
default_transport = discard:non-local mail discarded by postie-stack
relay_transport = discard:non-local mail discarded by postie-stack
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtpd_peername_lookup = no
# TLS
smtpd_tls_cert_file = $DIR/tls/server.crt
smtpd_tls_key_file = $DIR/tls/server.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_tls_session_cache_database =
# SASL (PLAIN, LOGIN) through Dovecot's auth socket, only after TLS
smtpd_sasl_type = dovecot
smtpd_sasl_path = $DIR/run/dovecot/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
EOF
  # master.cf: Debian's default services, nothing chrooted, plus our three listeners.
  cat >"$PFCONF/master.cf" <<EOF
# Generated by tests/stack/stack.sh
$SMTP_PORT      inet  n       -       n       -       -       smtpd
$SUBMISSION_PORT      inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
$SMTPS_PORT      inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

# ---------------------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_ports() {
  local deadline=$((SECONDS + 20)) p
  for p in "$@"; do
    until port_open "$p"; do
      [ $SECONDS -lt $deadline ] || die "port $p did not open (see $DIR/log/)"
      sleep 0.02
    done
  done
}
pid_alive() { [ -n "${1:-}" ] && { kill -0 "$1" 2>/dev/null || [ -d "/proc/$1" ]; }; }
pidfile_pid() { [ -s "$1" ] && tr -dc '0-9' 2>/dev/null <"$1" || true; }

# running: every daemon alive (by PID file), every port answering, stack.env present
running() {
  [ -f "$STACK_ENV" ] || return 1
  local f p
  # (other users cannot read Dovecot's and Postfix's PID files: for them the ports decide)
  if [ "$(id -u)" = 0 ]; then
    for f in "$DOVE_PID" "$PF_PID" "$SINK_PID"; do pid_alive "$(pidfile_pid "$f")" || return 1; done
  fi
  for p in $(ALL_PORTS); do port_open "$p" || return 1; done
}
any_alive() {
  local f
  for f in "$DOVE_PID" "$PF_PID" "$SINK_PID"; do pid_alive "$(pidfile_pid "$f")" && return 0; done
  return 1
}

write_stack_env() {
  local fp
  fp=$(openssl x509 -in "$DIR/tls/server.crt" -noout -fingerprint -sha256 | sed 's/^[^=]*=//')
  cat >"$STACK_ENV.tmp" <<EOF
STACK_DIR=$DIR
STACK_CA=$DIR/tls/ca.crt
STACK_SERVER_SHA256=$fp
SMTP_PORT=$SMTP_PORT
SUBMISSION_PORT=$SUBMISSION_PORT
SMTPS_PORT=$SMTPS_PORT
SINK_PORT=$SINK_PORT
POP3_PORT=$POP3_PORT
POP3S_PORT=$POP3S_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
LMTP_PORT=$LMTP_PORT
STACK_DOVECONF=$DOVECONF
STACK_USER1=alice
STACK_PASS1=alicepw
STACK_USER2=bob
STACK_PASS2=bobpw
STACK_MAILDIR1=$DIR/mail/alice/Maildir
STACK_MAILDIR2=$DIR/mail/bob/Maildir
EOF
  chmod 644 "$STACK_ENV.tmp"
  mv "$STACK_ENV.tmp" "$STACK_ENV"
}

cmd_up() {
  # shellcheck disable=SC2086
  install_pkgs $PKGS_STACK
  mkdir -p "$DIR"; chmod 755 "$DIR"
  if running; then
    echo "stack: already running in $DIR (ports $SMTP_PORT...; $STACK_ENV)"
    return 0
  fi
  if any_alive; then
    log "a partial stack runs in $DIR; stopping it first"
    cmd_down
  fi
  rm -f "$STACK_ENV"
  local p
  for p in $(ALL_PORTS); do
    port_open "$p" && die "port $p is already in use by someone else (choose another STACK_PORT_BASE)"
  done
  # sun_path is 108 bytes; Dovecot's sockets live in DIR/run/dovecot
  [ ${#DIR} -le 70 ] || die "DIR path too long for unix sockets: $DIR"
  cat >"$PORTS_ENV" <<EOF
SMTP_PORT=$SMTP_PORT
SUBMISSION_PORT=$SUBMISSION_PORT
SMTPS_PORT=$SMTPS_PORT
SINK_PORT=$SINK_PORT
POP3_PORT=$POP3_PORT
POP3S_PORT=$POP3S_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
LMTP_PORT=$LMTP_PORT
EOF
  make_tls; write_users; write_dovecot; write_postfix

  # Daemons get no terminal stdio: a caller piping our output (`up | tail`) must not hang.
  dovecot -c "$DOVECONF" </dev/null >>"$DIR/log/dovecot-start.log" 2>&1 \
    || die "dovecot failed to start: $(tail -5 "$DIR/log/dovecot-start.log" "$DIR/log/dovecot.log" 2>/dev/null)"
  # After the first start the queue tree exists and is right: skip postfix-script's slow
  # integrity checks (its documented quick-start file).
  [ -d "$PFSPOOL/maildrop" ] && [ -d "$PFSPOOL/pid" ] && : >"$PFSPOOL/quick-start"
  postfix -c "$PFCONF" start </dev/null >>"$DIR/log/postfix-start.log" 2>&1 \
    || { cat "$DIR/log/postfix-start.log" >&2; die "postfix failed to start"; }
  # smtp-sink (no TLS; -u is mandatory when started as root); setsid: its own session
  setsid smtp-sink -u postfix -h sink.localhost "127.0.0.1:$SINK_PORT" 256 \
    </dev/null >>"$DIR/log/smtp-sink.log" 2>&1 &
  echo $! >"$SINK_PID"
  wait_ports $(ALL_PORTS)
  local t=0
  until [ -S "$DIR/run/dovecot/auth-postfix" ]; do
    sleep 0.02; t=$((t + 1)); [ $t -lt 500 ] || die "no Dovecot auth socket"
  done
  write_stack_env
  echo "stack: up in $DIR (env: $STACK_ENV)"
  cmd_status
}

descendants() {  # all descendant PIDs of $1 (one ps call)
  ps -e -o pid= -o ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q in parent && q != root && q > 1) q = parent[q]; if (q == root && p != root) print p } }'
}

# down: TERM the three masters at once (`postfix stop` is exactly a TERM to Postfix's master;
# Dovecot's master with shutdown_clients=yes takes its children along), then wait until every
# one of them AND every process they had started has exited; KILL stragglers after 10 s.
cmd_down() {
  # the optional OAuth2 part (oauth-stack.sh) runs beside the stack: it goes first
  if [ -d "$DIR/oauth" ]; then "$(dirname "${BASH_SOURCE[0]}")/oauth-stack.sh" down "$DIR" || true; fi
  rm -f "$STACK_ENV"
  local masters="" f pid all="" i k left=""
  for f in "$SINK_PID" "$PF_PID" "$DOVE_PID"; do
    pid=$(pidfile_pid "$f")
    if pid_alive "$pid"; then masters="$masters $pid"; fi
  done
  if [ -n "$masters" ]; then
    for pid in $masters; do all="$all $pid $(descendants "$pid" | tr '\n' ' ')"; done
    # shellcheck disable=SC2086
    kill -TERM $masters 2>/dev/null || true
    for i in $(seq 1 200); do
      left=""
      for k in $all; do if pid_alive "$k"; then left="$left $k"; fi; done
      [ -z "$left" ] && break
      sleep 0.05
    done
    if [ -n "$left" ]; then
      log "still running after 10 s:$left; sending KILL"
      # shellcheck disable=SC2086
      kill -KILL $left 2>/dev/null || true
    fi
    log "stopped dovecot, postfix and smtp-sink in $DIR (pids$masters)"
  else
    log "nothing running in $DIR"
  fi
  rm -f "$SINK_PID"
  return 0
}

cmd_status() {
  local n f pid
  for n in dovecot:"$DOVE_PID" postfix:"$PF_PID" smtp-sink:"$SINK_PID"; do
    f=${n#*:}; pid=$(pidfile_pid "$f")
    if pid_alive "$pid"; then echo "${n%%:*}: running, pid $pid"
    elif [ "$(id -u)" != 0 ]; then echo "${n%%:*}: unknown (PID file readable by root only)"
    else echo "${n%%:*}: not running"; fi
  done
  echo "ports: smtp=$SMTP_PORT submission=$SUBMISSION_PORT smtps=$SMTPS_PORT sink=$SINK_PORT" \
       "pop3=$POP3_PORT pop3s=$POP3S_PORT imap=$IMAP_PORT imaps=$IMAPS_PORT lmtp=$LMTP_PORT"
  echo "dir: $DIR   CA: $DIR/tls/ca.crt   users: alice/alicepw bob/bobpw"
  if running; then echo "state: up"; else echo "state: down"; return 3; fi
}

cmd_env() {
  [ -f "$STACK_ENV" ] || die "no stack running in $DIR (no $STACK_ENV); run: $0 up"
  cat "$STACK_ENV"
}

need_user() {
  case ${1:-} in alice|bob) ;; *) die "unknown user '${1:-}' (alice or bob)" ;; esac
  [ -d "$DIR/mail/$1/Maildir/cur" ] || die "no Maildir for $1 in $DIR (run: $0 up)"
}

cmd_seed() {
  [ $# -eq 3 ] || usage
  local user=$1 n=$2 size=$3
  need_user "$user"
  case $n$size in *[!0-9]*) die "N and SIZE must be numbers" ;; esac
  local py=/usr/bin/python3   # the system python: pyenv shims cost ~100 ms per call
  [ -x $py ] || py=python3
  "$py" - "$DIR/mail/$user/Maildir" "$n" "$size" "$user" "$(id -u $MAIL_OWNER)" "$(id -g $MAIL_OWNER)" \
      "${SEED_TAG:-}" <<'PYEOF'
import os, sys, time
md, n, size, user, uid, gid, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
now = time.time(); ts = int(now); pid = os.getpid(); nonce = "%x" % int(now * 1e6)
tag = tag or nonce
date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now))
line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstu\n"  # 78 bytes
cur = os.path.join(md, "cur")
for i in range(1, n + 1):
    hdr = ("Return-Path: <bench@localhost>\n"
           "Delivered-To: %s@localhost\n"
           "From: Bench Sender <bench@localhost>\n"
           "To: %s@localhost\n"
           "Subject: seed message %d of %d (%s)\n"
           "Date: %s\n"
           "Message-ID: <seed.%s.%d@postie-stack.localhost>\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=us-ascii\n"
           "\n") % (user, user, i, n, tag, date, nonce, i)
    body_len = max(0, size - len(hdr))
    body = (line * (body_len // len(line) + 1))[:body_len]
    if body and not body.endswith("\n"):
        body = body[:-1] + "\n"
    msg = (hdr + body).encode()
    vsize = len(msg) + msg.count(b"\n")   # size with CRLF line ends, as POP3/IMAP report it
    # named like Dovecot's own deliveries: S= (file size) and W= (CRLF size) spare it a read
    name = "%d.M%dP%d_%s.postie-stack,S=%d,W=%d:2," % (ts, i, pid, nonce, len(msg), vsize)
    fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, msg); os.fchown(fd, uid, gid); os.close(fd)
PYEOF
  doveadm_ force-resync -u "$user" INBOX
}

cmd_put() {
  [ $# -eq 2 ] || usage
  local user=$1 file=$2
  need_user "$user"
  [ -f "$file" ] && [ -r "$file" ] || die "cannot read $file"
  local md="$DIR/mail/$user/Maildir" size name
  size=$(stat -c %s "$file")
  name="$(date +%s).M$(date +%N)P$$.postie-stack,S=$size:2,"
  # write in tmp/, then rename into cur/: Dovecot never sees a half-written file
  cp "$file" "$md/tmp/$name"
  chown "$MAIL_OWNER:$MAIL_OWNER" "$md/tmp/$name"; chmod 600 "$md/tmp/$name"
  mv "$md/tmp/$name" "$md/cur/$name"
  doveadm_ force-resync -u "$user" INBOX
  echo "$md/cur/$name"
}

cmd_clear() {
  [ $# -eq 1 ] || usage
  local user=$1
  need_user "$user"
  doveadm_ expunge -u "$user" mailbox INBOX all 2>/dev/null || true
  # also drop anything Dovecot has not indexed yet
  find "$DIR/mail/$user/Maildir/cur" "$DIR/mail/$user/Maildir/new" -type f -delete 2>/dev/null || true
  doveadm_ force-resync -u "$user" INBOX
}

# deps SET...: the first SET arrived as DIR_ARG (deps takes no directory).
cmd_deps() {
  local set pkgs=""
  for set in "$@"; do
    case $set in
      stack) pkgs="$pkgs $PKGS_STACK" ;;
      tests) pkgs="$pkgs $PKGS_TESTS" ;;
      bench) pkgs="$pkgs $PKGS_BENCH" ;;
      *) die "unknown package set: $set (stack, tests, bench)" ;;
    esac
  done
  [ -n "$pkgs" ] || usage
  # shellcheck disable=SC2086
  install_pkgs $pkgs
}

if [ "$CMD" = deps ]; then cmd_deps "$DIR_ARG" "$@"; exit 0; fi
load_ports
case $CMD in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  seed) cmd_seed "$@" ;;
  put) cmd_put "$@" ;;
  clear) cmd_clear "$@" ;;
  *) usage ;;
esac
