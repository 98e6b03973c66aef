#!/bin/sh
# Reliability suite: inject faults into a real posthorn and check that
# nothing acknowledged is lost. Prints the table of issue 7 (fault,
# behaviour, acknowledged, lost, reproduce command).
#
#   test/reliability/run.sh            # all rows, 20 SIGKILL cycles, 10,000 idle connections
#   CYCLES=5 IDLE=2000 test/reliability/run.sh
#
# Loopback only (127.0.0.0/8). Every test is bounded in count and time.
# The disk-full row needs root (mount -t tmpfs); it is skipped, with the
# reason, when mounting is not permitted.
set -eu
cd "$(dirname "$0")/../.."

CYCLES=${CYCLES:-20}
IDLE=${IDLE:-10000}
TIMEOUT=${TIMEOUT:-15m}

# The idle-connection row needs IDLE descriptors in the test and in the
# daemon: raise the soft limit as far as the hard limit allows.
want=$((IDLE + 1000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
	echo "note: ulimit -Hn is $hard; the idle row needs $want (raise it as root, or set IDLE lower)" >&2
	ulimit -n "$hard"
else
	ulimit -n "$want" 2>/dev/null || true
fi
echo "ulimit -n: $(ulimit -n)" >&2

# The smuggling data lives next to the repository (../shared).
[ -z "${POSTHORN_SHARED:-}" ] && [ -d ../shared ] && POSTHORN_SHARED=$(cd ../shared && pwd) && export POSTHORN_SHARED

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
RELIABILITY_CYCLES=$CYCLES RELIABILITY_IDLE=$IDLE \
	go test ./cmd/posthorn -count=1 -v -timeout "$TIMEOUT" \
	-run '^(TestReliability.*|TestEveryAcknowledgedMessageSurvivesSIGKILL|TestSIGKILLDuringDeliveryLosesNoRecipient)$' >"$out" 2>&1 || status=$?

echo
echo "| fault | behaviour observed | acknowledged | lost | reproduce |"
echo "|---|---|---|---|---|"
grep -o 'RELIABILITY|.*' "$out" | while IFS='|' read -r _ fault behaviour acked lost cmd; do
	echo "| $fault | $behaviour | $acked | $lost | \`$cmd\` |"
done
echo
grep -E '^(--- (FAIL|SKIP)|    .*(skip|Skip|SKIP))' "$out" | sed 's/^/  /' || true
grep -E '^--- (PASS|FAIL|SKIP)' "$out" | sed 's/^/  /'
if [ "$status" -ne 0 ]; then
	echo "FAILED: full output follows" >&2
	tail -100 "$out" >&2
fi
exit "$status"
