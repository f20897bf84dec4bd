#!/usr/bin/env bash
# csa104 as the SAFplus eval guide runs it, without AMF: an active receiving, a standby sending
# numbered messages, the active killed with SIGKILL, the next active (already waiting in
# saMsgQueueOpen) taking the queue over; then a check that every number arrived.
#
#   bash examples/c/csa104/run.sh [MESSAGES] [INTERVAL_MS]     (default 20 messages, 300 ms)
#
# The test suite runs the same story with exact waits (crates/baton-ffi/tests/csa104.rs).
set -euo pipefail
cd "$(dirname "$0")/../../.."
messages=${1:-20}
interval=${2:-300}
cargo build --release -q -p baton-ffi
work=$(mktemp -d)
exe=$work/csa104
cc -std=c11 -Wall -Wextra -Werror -Itarget/include -o "$exe" \
    examples/c/csa104/msgFns.c examples/c/csa104/main.c \
    -Ltarget/release -Wl,-rpath,"$PWD/target/release" -lSaMsg -lpthread
export BATON_DOMAIN=csa104-demo-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f /dev/shm/baton."$BATON_DOMAIN"~* /dev/shm/baton."$BATON_DOMAIN".*
    rm -rf "$work"
}
trap cleanup EXIT

"$exe" active > "$work/active1.log" & active1=$!; pids+=("$active1")
until grep -q "queue open" "$work/active1.log"; do sleep 0.05; done
"$exe" active > "$work/active2.log" & active2=$!; pids+=("$active2")
sleep 0.5 # the second active waits in saMsgQueueOpen: the queue's standby
echo "active $active1 receives; active $active2 waits to take over"
"$exe" standby csa104CompI1 "$interval" "$messages" > "$work/standby.log" & standby=$!
pids+=("$standby")
tail -q -n +1 -f "$work/active1.log" "$work/active2.log" & pids+=($!)
sleep "$(awk "BEGIN { print $messages * $interval / 2000 }")"
echo "--- kill -9 $active1 (the active) ---"
kill -9 "$active1"
wait "$standby"
until grep -q "Msg $(printf '%4d' "$messages") " "$work/active2.log"; do sleep 0.05; done
sleep 0.2
lost=()
for n in $(seq 1 "$messages"); do
    grep -qh "Received Message : Msg $(printf '%4d' "$n") " "$work/active1.log" "$work/active2.log" \
        || lost+=("$n")
done
if [ ${#lost[@]} -ne 0 ]; then
    echo "LOST: ${lost[*]}"
    exit 1
fi
echo "--- all $messages messages arrived, through the active's death ---"
