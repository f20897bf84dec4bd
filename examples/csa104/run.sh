#!/usr/bin/env bash
# csa104 under `baton supervise`: the SAFplus eval guide's story with the supervisor as AMF.
# Two receivers of the queue csa104msgqueue form a redundancy set (the active receives; the
# standby waits to own the queue); a sender sends numbered messages. The script kills the
# queue's owner (the active receiver) four times. At each death the standby, waiting on the
# queue's owner lock, takes the queue over with every message at once (baton's mechanism); the
# supervisor's policy decides what becomes of the dead one: the first two kills are restarts
# in place (each receiver once: retry_count = 1), the next two are past retry_count, so the
# supervisor fails over (the standby is made the active; the failed one restarts as the
# standby). At the end every number must have arrived, once, or again flagged as a
# redelivery, and the supervisor's log must show restart, restart, failover, failover.
#
#   bash examples/csa104/run.sh [MESSAGES] [INTERVAL_MS]      (default 40 messages, 100 ms)
set -euo pipefail
cd "$(dirname "$0")/../.."
messages=${1:-40}
interval=${2:-100}
baton=${BATON_BIN:-$PWD/target/release/baton}
[ -x "$baton" ] || cargo build --release -q -p baton-cli
work=$(mktemp -d)
export BATON_DOMAIN=csa104-sup-$$
sup=""
cleanup() {
    [ -n "$sup" ] && kill "$sup" 2>/dev/null && wait "$sup" 2>/dev/null || true
    rm -f /dev/shm/baton."$BATON_DOMAIN"~* /dev/shm/baton."$BATON_DOMAIN".*
    rm -rf "$work"
}
trap cleanup EXIT

"$baton" create csa104msgqueue > /dev/null
# A receiver of the queue, in the redundancy set: the active receives, the standby waits.
receiver() {
    cat <<COMPONENT
[[component]]
name = "$1"
command = '"$baton" --json recv --standby csa104msgqueue >> "$work/received"'
queues = ["csa104msgqueue"]
redundancy = "csa104"
probe = "queue"
probe_interval = "200ms"
retry_count = 1
retry_interval = "1m"
restart_backoff = "50ms"
stop_timeout = "1s"
COMPONENT
}
cat > "$work/csa104.toml" <<CONF
[supervisor]
name = "csa104"
domain = "$BATON_DOMAIN"
failover_limit = 2
failover_window = "1m"

$(receiver receiver-1)

$(receiver receiver-2)

[[component]]
name = "sender"
command = 'for n in \$(seq 1 $messages); do "$baton" send csa104msgqueue "Msg \$n from csa104CompI1"; sleep $(awk "BEGIN { print $interval / 1000 }"); done; exec sleep 3600'
CONF
"$baton" supervise "$work/csa104.toml" > "$work/supervisor.log" 2>&1 &
sup=$!
tail -f "$work/supervisor.log" & tailer=$!
owner() { "$baton" --json stat csa104msgqueue | tr ',' '\n' | sed -n 's/.*"owner_pid": *\([0-9][0-9]*\).*/\1/p'; }
kill_active() {
    local pid=""
    until [ -n "$pid" ]; do pid=$(owner); sleep 0.05; done
    echo "--- kill -9 $pid (the queue's owner: the active receiver) ---"
    kill -9 "$pid"
    sleep 0.6
}
sleep 1
for _ in 1 2 3 4; do kill_active; done
until grep -q "\"Msg $messages from" "$work/received" 2>/dev/null; do sleep 0.1; done
sleep 0.3
kill "$tailer" 2>/dev/null || true
"$baton" supervise status "$work/csa104.toml"
missing=() ; twice=()
for n in $(seq 1 "$messages"); do
    c=$(grep -c "\"Msg $n from" "$work/received" || true)
    if [ "$c" -eq 0 ]; then missing+=("$n"); fi
    if [ "$c" -gt 1 ] && ! grep "\"Msg $n from" "$work/received" | tail -n +2 | grep -q '"redelivered":true'; then
        twice+=("$n")
    fi
done
restarts=$(grep -c ': restart ' "$work/supervisor.log" || true)
failovers=$(grep -c ': failover ' "$work/supervisor.log" || true)
echo "escalation: $restarts restarts, $failovers failovers"
if [ "$restarts" -ne 2 ] || [ "$failovers" -ne 2 ]; then
    echo "expected 2 restarts then 2 failovers"
    exit 1
fi
if [ ${#missing[@]} -ne 0 ] || [ ${#twice[@]} -ne 0 ]; then
    echo "MISSING: ${missing[*]:-none}; TWICE UNFLAGGED: ${twice[*]:-none}"
    exit 1
fi
echo "--- all $messages messages arrived, each once or flagged, through 4 kills of the active ---"
