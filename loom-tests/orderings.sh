#!/usr/bin/env bash
# The ordering sweep: weakens every synchronising atomic ordering of the lane and the wake
# protocol (each `ord!(...)` site in crates/baton-ring/src/lane.rs, lane/shared.rs, lane/log.rs, wake.rs, lookout.rs, reply.rs, events.rs and roster.rs), one at a time, to Relaxed (a
# fence: to none), and runs the loom models against it. Every weakening must be caught by a
# model; one that is not either needs a model or is not needed, and then the code must say why
# and use the weaker ordering. The sites are switched at run time in loom builds only
# (BATON_WEAKEN, see `ord!` in crates/baton-ring/src/sync), so one build serves them all.
#
#   bash loom-tests/orderings.sh            every site
#   bash loom-tests/orderings.sh lane.rs:4  only sites whose name contains this
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
TARGET=target/loom
filter="${1:-}"

# The models, fastest first: a weakening is caught as soon as one of them fails.
models=(
  "log the_last_members_read_is_always_swept"
  "roster a_reader_that_sees_a_generation_reads_its_words"
  "roster a_reader_racing_two_writes_gets_one_whole_generation"
  "events a_published_event_seen_at_first_look_is_read_with_its_own_words"
  "events two_writers_of_one_slot_leave_a_whole_event_or_a_missed_one"
  "reply a_reply_is_read_whole_by_its_requester"
  "reply a_box_is_written_again_only_after_its_last_reply_was_read"
  "reply two_replies_to_one_request_deliver_exactly_one"
  "wake a_receiver_going_to_sleep_while_a_sender_commits_is_woken"
  "wake a_sender_going_to_sleep_while_the_receiver_frees_space_is_woken"
  "wake a_sender_left_waiting_by_a_head_move_is_woken_when_the_owner_goes_idle"
  "wake a_consumer_going_to_sleep_while_a_sender_commits_is_woken_by_a_wake_one"
  "wake a_sleeper_clearing_a_handoff_while_a_sender_commits_gets_the_message"
  "wake a_poller_stopping_while_a_sender_commits_gets_the_message"
  "wake a_sleeper_poked_for_a_cancel_sees_the_cancel"
  "lane a_sender_reuses_cells_only_after_the_receiver_has_read_them"
  "lane a_run_is_published_by_one_commit_and_read_record_by_record"
  "lane a_claim_is_either_committed_and_delivered_or_abandoned_and_skipped"
  "lane a_successor_redelivers_what_a_stopped_owner_handed_out_and_nothing_else"
  "lane a_sender_trusting_the_process_head_cache_reuses_cells_only_after_they_were_read"
  "lane a_cancelled_records_cells_are_reused_only_after_the_writes_into_them"
  "lane an_abandoned_records_cells_are_reused_only_after_the_writes_into_them"
  "lane an_acknowledgement_from_another_thread_frees_cells_only_after_they_were_read"
  "recovery an_owner_dying_after_handing_out_leaves_the_message_for_redelivery"
  "recovery an_owner_dying_after_its_journal_has_acknowledged_the_message"
  "recovery an_owner_dying_between_counters_and_head_counts_the_message_once"
  "recovery an_owner_that_finishes_hands_over_a_clean_lane"
  "lane a_sender_never_sees_a_stamp_from_a_lap_long_gone"
  "shared a_dead_consumers_records_are_taken_again_flagged_each_once"
  "shared a_consumer_starting_at_a_read_moved_into_a_run_never_sees_its_middle_stamps"
  "shared a_record_given_back_was_read_before_its_cell_is_reused"
  "shared two_consumers_take_each_message_once_and_every_ack_at_the_head_is_swept"
  "log two_members_read_every_message_in_order_before_its_cells_are_reused"
)
# The slowest model (a minute) runs only with SLOW=1.
[ "${SLOW:-0}" = 1 ] && models+=("lane two_senders_and_a_receiver_across_the_wrap_around")

# Build once; find each test binary.
declare -A bin
while IFS= read -r line; do
  name=$(sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p' <<<"$line")
  [ -n "$name" ] && bin[${name% *}]=${name#* }
done < <(cargo test -p baton-loom-tests --release --target-dir "$TARGET" --no-run \
           --message-format=json -q 2>/dev/null | grep '"executable":"/')
for f in lane wake recovery shared reply events roster log; do
  [ -n "${bin[$f]:-}" ] || { echo "no loom test binary for $f"; exit 1; }
done

# Every `ord!(` of the three files, as `file:line:column`, the site `column!()` names. A site
# whose comment just above says "not swept:" is listed, with that reason, and not swept.
listing=$(awk '{
  if ($0 ~ /not swept:/) pending = 1
  line = $0; col = 1; found = 0
  while ((i = index(line, "ord!(")) > 0) {
    col += i - 1
    if (line !~ /^[[:space:]]*\/\//) { printf "%s %s:%d:%d\n", (pending ? "K" : "S"), FILENAME, FNR, col; found = 1 }
    line = substr(line, i + 5); col += 5
  }
  if (found) pending = 0
}' crates/baton-ring/src/lane.rs crates/baton-ring/src/lane/shared.rs crates/baton-ring/src/lane/log.rs crates/baton-ring/src/wake.rs crates/baton-ring/src/lookout.rs crates/baton-ring/src/reply.rs crates/baton-ring/src/events.rs crates/baton-ring/src/roster.rs | grep -F -- "$filter")
sites=$(sed -n 's/^S //p' <<<"$listing")
for site in $(sed -n 's/^K //p' <<<"$listing"); do
  echo "kept        $site (not swept: the reason is in the code)   [$(sed -n "$(cut -d: -f2 <<<"$site")p" "$(cut -d: -f1 <<<"$site")" | sed 's/^ *//' | cut -c1-70)]"
done

# One site: runs the models in order until one fails; prints one line.
sweep_site() {
  local site=$1 code start caught="" reached="" m file model out rc why
  code=$(sed -n "$(cut -d: -f2 <<<"$site")p" "$(cut -d: -f1 <<<"$site")" | sed 's/^ *//' | cut -c1-70)
  start=$(date +%s)
  # The models of the site's own file first (a site is nearly always caught by one of them;
  # the others, run first, took most of the sweep's time), then the rest, fastest first.
  local own
  case "$site" in
    */lane/shared.rs:*) own=shared ;;
    */lane/log.rs:*) own=log ;;
    */lane.rs:*) own=lane ;;
    */wake.rs:* | */lookout.rs:*) own=wake ;;
    */reply.rs:*) own=reply ;;
    */events.rs:*) own=events ;;
    */roster.rs:*) own=roster ;;
    *) own="" ;;
  esac
  local ordered=()
  for m in "${models[@]}"; do [ "${m%% *}" = "$own" ] && ordered+=("$m"); done
  for m in "${models[@]}"; do [ "${m%% *}" != "$own" ] && ordered+=("$m"); done
  for m in "${ordered[@]}"; do
    read -r file model <<<"$m"
    out=$(BATON_WEAKEN="$site" timeout 900 "${bin[$file]}" --exact "$model" --nocapture 2>&1)
    rc=$?
    grep -qF "weakened the ordering at $site" <<<"$out" && reached=yes
    if [ $rc -ne 0 ]; then
      why=$(grep -A1 "panicked at" <<<"$out" | sed -n 2p | cut -c1-60)
      caught="$file::$model ($why)"
      break
    fi
  done
  if [ -n "$caught" ]; then
    echo "caught      $site in $(( $(date +%s) - start )) s by $caught   [$code]"
  elif [ -n "$reached" ]; then
    echo "NOT CAUGHT  $site   [$code]"
  else
    echo "NOT REACHED $site (no model runs it)   [$code]"
  fi
}
export -f sweep_site
export models_list="$(printf '%s\n' "${models[@]}")"

# Two sites at a time (loom runs a model on one thread).
results=$(for site in $sites; do echo "$site"; done | xargs -P "${JOBS:-2}" -I{} bash -c '
  declare -A bin; '"$(declare -p bin | sed 's/^declare -A bin=/bin=/')"'
  mapfile -t models <<<"$models_list"
  sweep_site {}')
sort -t: -k1,1 -k2,2n <<<"$results"
total=$(wc -l <<<"$sites")
bad=$(grep -c "^NOT" <<<"$results")
echo "$total sites swept, $bad not caught"
[ "$bad" -eq 0 ]
