#!/usr/bin/env bash
# A real DNSSEC chain for posthorn's DANE path (issue 6).
#
# Signs the zone dane.test with ldns-signzone, serves it (and the unsigned
# zone plain.test) from NSD on 127.0.0.20:5353, runs a validating unbound
# on 127.0.0.21:5353 with the zone's key as its trust anchor, and runs
# TestRealDNSSECChain (internal/tlspolicy) against that unbound:
#   good.dane.test   TLSA 3 1 1 of the test MX's key: delivered over DANE (AD set)
#   bad.dane.test    TLSA signed but for another key: deferred
#   bogus.dane.test  TLSA altered after signing, unbound says SERVFAIL: deferred
#   plain.test       unsigned: no AD, so opportunistic TLS
# Installs unbound, nsd and ldnsutils from Debian when missing. Loopback
# only; bounded; everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

need=()
command -v unbound >/dev/null || need+=(unbound)
command -v nsd >/dev/null || need+=(nsd)
command -v ldns-signzone >/dev/null || need+=(ldnsutils)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
	echo "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Debian's postinst may try to start the services: keep them down.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.posthorn
	chmod +x /usr/sbin/policy-rc.d.posthorn
	had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
	[ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.posthorn /usr/sbin/policy-rc.d
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	[ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
	rm -f /usr/sbin/policy-rc.d.posthorn
fi

NSD_ADDR=127.0.0.20 UNBOUND_ADDR=127.0.0.21 PORT=5353
W=$(mktemp -d /tmp/posthorn-dnssec.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "${KEEP:-}" = "" ]; then rm -rf "$W"; else echo "kept $W"; fi
}
trap cleanup EXIT
cd "$W"

# The test MX's certificate (self-signed: DANE-EE needs no CA) and its
# TLSA 3 1 1 data; another key for the mismatching record.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=mx.good.dane.test -keyout mx.key -out mx.crt 2>/dev/null
spki() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
GOOD=$(spki mx.crt)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=other -keyout other.key -out other.crt 2>/dev/null
OTHER=$(spki other.crt)

cat >dane.test.zone <<ZONE
\$ORIGIN dane.test.
\$TTL 300
@            IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300
@            IN NS  ns.dane.test.
ns           IN A   $NSD_ADDR
good         IN MX  10 mx.good.dane.test.
mx.good      IN A   127.0.0.1
_25._tcp.mx.good IN TLSA 3 1 1 $GOOD
bad          IN MX  10 mx.bad.dane.test.
mx.bad       IN A   127.0.0.1
_25._tcp.mx.bad IN TLSA 3 1 1 $OTHER
bogus        IN MX  10 mx.bogus.dane.test.
mx.bogus     IN A   127.0.0.1
_25._tcp.mx.bogus IN TLSA 3 1 1 $GOOD
ZONE
cat >plain.test.zone <<ZONE
\$ORIGIN plain.test.
\$TTL 300
@        IN SOA ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 300
@        IN NS  ns.plain.test.
ns       IN A   $NSD_ADDR
@        IN MX  10 mx.plain.test.
mx       IN A   127.0.0.1
_25._tcp.mx IN TLSA 3 1 1 $OTHER
ZONE

KSK=$(ldns-keygen -a ECDSAP256SHA256 -k dane.test)
ZSK=$(ldns-keygen -a ECDSAP256SHA256 dane.test)
ldns-signzone -n dane.test.zone "$ZSK" "$KSK" # NSEC3, as most signed zones
# Tamper with one signed answer: its RRSIG no longer verifies.
sed -i "/^_25._tcp.mx.bogus.dane.test.*TLSA/s/$GOOD/$OTHER/" dane.test.zone.signed
grep -q "_25._tcp.mx.bogus.dane.test.*$OTHER" dane.test.zone.signed || { echo "tampering failed" >&2; exit 1; }

cat >nsd.conf <<CONF
server:
	ip-address: $NSD_ADDR@$PORT
	username: ""
	chroot: ""
	zonesdir: "$W"
	pidfile: "$W/nsd.pid"
	database: ""
	xfrdfile: "$W/xfrd.state"
	zonelistfile: "$W/zone.list"
	logfile: "$W/nsd.log"
	verbosity: 1
remote-control:
	control-enable: no
zone:
	name: dane.test
	zonefile: dane.test.zone.signed
zone:
	name: plain.test
	zonefile: plain.test.zone
CONF
nsd -d -c nsd.conf &
pids+=($!)

cat >unbound.conf <<CONF
server:
	interface: $UNBOUND_ADDR
	port: $PORT
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	chroot: ""
	username: ""
	directory: "$W"
	pidfile: "$W/unbound.pid"
	use-syslog: no
	logfile: "$W/unbound.log"
	verbosity: 1
	module-config: "validator iterator"
	trust-anchor-file: "$W/$KSK.key"
	domain-insecure: "plain.test"
	# test. is an RFC 6761 special-use name that unbound answers locally
	# by default: let it resolve through the stubs.
	local-zone: "test." nodefault
	val-log-level: 2
	harden-dnssec-stripped: yes
	num-threads: 1
stub-zone:
	name: "dane.test"
	stub-addr: $NSD_ADDR@$PORT
stub-zone:
	name: "plain.test"
	stub-addr: $NSD_ADDR@$PORT
remote-control:
	control-enable: no
CONF
unbound-checkconf unbound.conf >/dev/null
unbound -d -c unbound.conf &
pids+=($!)

# Wait (bounded) until unbound answers with AD set.
ok=0
for _ in $(seq 1 50); do
	if out=$(drill -D -p $PORT @$UNBOUND_ADDR TLSA _25._tcp.mx.good.dane.test 2>/dev/null) && grep -q "flags:.* ad" <<<"$out"; then
		ok=1; break
	fi
	sleep 0.2
done
if [ $ok != 1 ]; then
	echo "unbound does not validate dane.test:" >&2
	drill -D -p $PORT @$UNBOUND_ADDR TLSA _25._tcp.mx.good.dane.test >&2 || true
	tail -n 20 unbound.log nsd.log >&2 || true
	exit 1
fi
echo "unbound validates dane.test (AD set); bogus answer:"
drill -D -p $PORT @$UNBOUND_ADDR TLSA _25._tcp.mx.bogus.dane.test | grep -E "rcode|flags" || true

cd "$ROOT"
POSTHORN_DNSSEC_RESOLVER=$UNBOUND_ADDR:$PORT POSTHORN_DNSSEC_CERT=$W/mx.crt POSTHORN_DNSSEC_KEY=$W/mx.key \
	timeout 300 go test -count=1 -run '^TestRealDNSSECChain$' -v ./internal/tlspolicy
