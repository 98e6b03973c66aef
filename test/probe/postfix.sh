#!/usr/bin/env bash
# test/probe/postfix.sh: posthorn probe against a real Debian Postfix on
# loopback, configured first as a deliberately weak server (open relay for
# 127.0.0.0/8, AUTH offered without TLS, VRFY on, TLS 1.0 allowed where
# OpenSSL permits) and then as a sound one. Checks that the probe reports
# each weakness at the right severity and identifies Postfix, and that its
# relay verdicts agree with nmap's smtp-open-relay on the same targets.
#
# Safe by construction: Postfix listens on 127.0.0.1 only, delivers nothing
# (no DATA is ever sent, the relay transport is "error"), every command is
# bounded by `timeout`, and the Postfix started here is stopped and its
# files removed on exit, whatever happens. /etc/postfix/main.cf gets one
# line (alternate_config_directories) for the run and is restored after.
#
# Usage: test/probe/postfix.sh            (builds ./cmd/posthorn)
#        POSTHORN=/path/to/posthorn test/probe/postfix.sh
# Needs root to install packages and start Postfix; prints SKIP otherwise.
set -euo pipefail

cd "$(dirname "$0")/../.."
say() { printf 'postfix.sh: %s\n' "$*"; }
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
failures=0
passes=0
pass() { say "ok: $*"; passes=$((passes + 1)); }

if [ "$(id -u)" != 0 ]; then
	say "SKIP: needs root to install and run Postfix"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi

need=()
command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v nmap >/dev/null 2>&1 || need+=(nmap)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
dpkg -s libsasl2-modules >/dev/null 2>&1 || need+=(libsasl2-modules)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	timeout 600 apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
		{ timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 600 apt-get install -y -q "${need[@]}" >/dev/null; }
fi

tmp=$(mktemp -d /tmp/posthorn-probe-postfix.XXXXXX)
main_cf=/etc/postfix/main.cf
main_cf_existed=no
[ -f "$main_cf" ] && main_cf_existed=yes && cp -p "$main_cf" "$tmp/etc-main.cf.orig"

stop_postfix() {
	if [ -f "$tmp/pf/main.cf" ]; then
		timeout 30 postfix -c "$tmp/pf" stop >/dev/null 2>&1 || true
		# Bounded wait for the master to go; kill it by its pid file if not.
		for _ in $(seq 1 50); do
			[ -f "$tmp/spool/pid/master.pid" ] || break
			pid=$(tr -d ' ' <"$tmp/spool/pid/master.pid" 2>/dev/null || true)
			[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		pid=$(tr -d ' ' <"$tmp/spool/pid/master.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
	fi
}
cleanup() {
	stop_postfix
	if [ "$main_cf_existed" = yes ]; then cp -p "$tmp/etc-main.cf.orig" "$main_cf"; else rm -f "$main_cf"; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

if [ -n "${POSTHORN:-}" ]; then
	bin=$POSTHORN
else
	bin=$tmp/posthorn
	go build -o "$bin" ./cmd/posthorn
fi
if ! "$bin" probe --ports >/dev/null 2>&1; then
	# Until cmd/posthorn/main.go dispatches "probe" to runProbe.
	say "SKIP: $bin has no probe subcommand yet"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi

# A free loopback port.
port=$(for p in $(seq 2625 2700); do (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; break; }; done)
[ -n "$port" ] || { say "FAIL: no free port"; exit 1; }

# Postfix wants its alternate configuration directory named in the default one.
[ -f "$main_cf" ] || : >"$main_cf"
postconf -e "alternate_config_directories = $tmp/pf"

mkdir -p "$tmp/pf" "$tmp/spool" "$tmp/data" "$tmp/sasl"
chmod 755 "$tmp" "$tmp/pf" "$tmp/sasl"
chown postfix "$tmp/data"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=weak.posthorn.test" \
	-addext "subjectAltName=DNS:weak.posthorn.test" \
	-keyout "$tmp/pf/key.pem" -out "$tmp/pf/cert.pem" >/dev/null 2>&1
chmod 600 "$tmp/pf/key.pem"
# Cyrus SASL with an empty sasldb: enough for Postfix to offer AUTH; the
# probe never authenticates.
printf 'pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s/sasldb2\n' "$tmp" >"$tmp/sasl/smtpd.conf"

cat >"$tmp/pf/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF

write_main_cf() { # $1 = weak | sound
	cat >"$tmp/pf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $tmp/spool
data_directory = $tmp/data
maillog_file = $tmp/maillog
maillog_file_prefixes = $tmp
myhostname = weak.posthorn.test
mydomain = posthorn.test
myorigin = \$myhostname
mydestination = \$myhostname, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
# Nothing ever leaves: the probe never sends DATA, and anything that did
# get queued would be discarded (an error: transport would make Postfix
# refuse the RCPT itself, hiding the open relay).
default_transport = discard:probe test, no delivery
relay_transport = discard:probe test, no delivery
local_transport = error:probe test, no local delivery
smtpd_tls_cert_file = $tmp/pf/cert.pem
smtpd_tls_key_file = $tmp/pf/key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = cyrus
cyrus_sasl_config_path = $tmp/sasl
smtpd_sasl_path = smtpd
EOF
	if [ "$1" = weak ]; then
		cat >>"$tmp/pf/main.cf" <<EOF
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_sasl_auth_enable = yes
smtpd_tls_auth_only = no
disable_vrfy_command = no
smtpd_tls_protocols = >=TLSv1
smtpd_tls_mandatory_protocols = >=TLSv1
tls_medium_cipherlist = DEFAULT:@SECLEVEL=0
EOF
	else
		cat >>"$tmp/pf/main.cf" <<EOF
mynetworks = 127.0.0.2/32
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_auth_enable = no
disable_vrfy_command = yes
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
EOF
	fi
}

start_postfix() {
	timeout 60 postfix -c "$tmp/pf" start >/dev/null 2>&1 || { say "postfix would not start:"; tail -20 "$tmp/maillog" 2>/dev/null; return 1; }
	for _ in $(seq 1 100); do
		(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	say "postfix does not listen on $port"
	tail -20 "$tmp/maillog" 2>/dev/null
	return 1
}

# finding ID -> severity in a report, or "" when absent.
sev() { jq -r --arg id "$1" '[.findings[] | select(.id == $id) | .severity][0] // ""' "$2"; }
expect_sev() { # id severity report
	local got
	got=$(sev "$1" "$3")
	if [ "$got" = "$2" ]; then pass "$1 reported as $2"; else fail "$1: got '${got:-absent}', want $2"; fi
}

# nmap's relay verdict: "open N" or "closed" or "auth".
nmap_relay() {
	local out
	out=$(timeout 180 nmap -n -Pn -sV --version-intensity 0 -p "$port" --script smtp-open-relay \
		--script-args "smtp-open-relay.domain=relay.invalid,smtp-open-relay.ip=127.0.0.1" 127.0.0.1 2>&1) || true
	printf '%s\n' "$out" >"$tmp/nmap-$1.txt"
	if grep -q "Server is an open relay" <<<"$out"; then
		echo "open $(sed -n 's/.*open relay (\([0-9]*\)\/16 tests).*/\1/p' <<<"$out" | head -1)"
	elif grep -q "doesn't seem to be an open relay" <<<"$out"; then
		echo closed
	elif grep -q "authentication needed" <<<"$out"; then
		echo auth
	else
		echo "unknown"
	fi
}

compare_relay() { # label report
	local ours nm
	ours=$(jq -r '.hosts[0].relay | if .verdict == "open" then "open \(.accepted)" elif .verdict == "auth-required" then "auth" else .verdict end' "$2")
	nm=$(nmap_relay "$1")
	if [ "$ours" = "$nm" ]; then
		pass "$1: relay verdict '$ours' agrees with nmap smtp-open-relay"
	else
		fail "$1: probe says '$ours', nmap says '$nm' (nmap output in the log below)"
		cat "$tmp/nmap-$1.txt"
	fi
}

run_probe() { # label
	local rc=0
	timeout 180 "$bin" probe --json --fail-on none --relay-domain relay.invalid --timeout 150s \
		"127.0.0.1:$port" >"$tmp/probe-$1.json" 2>"$tmp/probe-$1.err" || rc=$?
	if [ "$rc" != 0 ]; then
		fail "$1: posthorn probe exited $rc: $(cat "$tmp/probe-$1.err")"
		return 1
	fi
	timeout 180 "$bin" probe -v --fail-on none --relay-domain relay.invalid "127.0.0.1:$port" >"$tmp/probe-$1.txt" 2>&1 || true
}

# ---- 1. the weak Postfix
write_main_cf weak
start_postfix
say "weak Postfix $(postconf -d -h mail_version) on 127.0.0.1:$port"
run_probe weak
r=$tmp/probe-weak.json
sed -n '/^== Server/,/^== Findings/p' "$tmp/probe-weak.txt" | grep -v '^    ' | head -60

sw=$(jq -r '.hosts[0].identification.software' "$r")
conf=$(jq -r '.hosts[0].identification.confidence' "$r")
if [ "$sw" = Postfix ] && [ "$conf" = high ]; then pass "identified as Postfix ($conf)"; else fail "identified as '$sw' ($conf)"; fi
expect_sev open-relay high "$r"
expect_sev auth-cleartext high "$r"
expect_sev vrfy-enumerates medium "$r"
expect_sev cert-self-signed low "$r"
tls10=$(jq -r '[.hosts[0].tls.versions[]? | select(.version == "TLS 1.0") | .accepted][0] // "untested"' "$r")
if [ "$tls10" = true ]; then
	expect_sev tls-legacy-versions medium "$r"
else
	say "note: this OpenSSL build refused TLS 1.0 even at SECLEVEL=0 (TLS 1.0 accepted: $tls10); tls-legacy-versions not expected"
	[ -z "$(sev tls-legacy-versions "$r")" ] && pass "no legacy-TLS finding when TLS 1.0/1.1 are refused" || fail "legacy-TLS finding without legacy TLS"
fi
if [ "$(jq -r '.hosts[0].starttls' "$r")" = true ]; then pass "STARTTLS seen"; else fail "STARTTLS not seen"; fi
compare_relay weak "$r"
stop_postfix

# ---- 2. the sound Postfix
write_main_cf sound
start_postfix
say "sound Postfix on 127.0.0.1:$port"
run_probe sound
r=$tmp/probe-sound.json
for id in open-relay auth-cleartext vrfy-enumerates tls-legacy-versions; do
	if [ -z "$(sev "$id" "$r")" ]; then pass "sound: no $id"; else fail "sound: $id reported"; fi
done
bad=$(jq -r '[.findings[] | select(.severity == "high" or .severity == "medium") | .id] | join(",")' "$r")
if [ -z "$bad" ]; then pass "sound: no high or medium finding"; else fail "sound: high/medium findings: $bad"; fi
compare_relay sound "$r"

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
