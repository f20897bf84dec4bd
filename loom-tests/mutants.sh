#!/usr/bin/env bash
# Runs each loom model against the deliberate bug it exists to catch, and fails unless loom
# reports every one. (The models themselves pass without a mutant: that is the loom suite, run
# by the README's test command before this.) The bugs are compiled into loom builds only and switched on at run time
# by BATON_MUTANT (see `mutant` in crates/baton-ring/src/sync), so one build serves them all.
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
TARGET=target/loom

# mutant | test file | model | the bug
cases=(
  "commit_relaxed|lane|two_senders_and_a_receiver_across_the_wrap_around|commit without Release"
  "head_relaxed|lane|a_sender_reuses_cells_only_after_the_receiver_has_read_them|freeing without Release"
  "commit_store|lane|a_claim_is_either_committed_and_delivered_or_abandoned_and_skipped|commit by store, not compare-and-swap"
  "no_read_mark|lane|a_successor_redelivers_what_a_stopped_owner_handed_out_and_nothing_else|hand out without marking delivered"
  "notify_no_fence|wake|a_receiver_going_to_sleep_while_a_sender_commits_is_woken|notifier without its SeqCst fence"
  "wait_no_recheck|wake|a_sender_going_to_sleep_while_the_receiver_frees_space_is_woken|waiter checks before announcing, not after"
  "space_not_owed|wake|a_sender_left_waiting_by_a_head_move_is_woken_when_the_owner_goes_idle|a skipped wake-up of senders is not owed"
  "no_journal_replay|recovery|an_owner_dying_between_counters_and_head_counts_the_message_once|recovery skips the journal replay"
  "sweep_no_fence|shared|two_consumers_take_each_message_once_and_every_ack_at_the_head_is_swept|acknowledger and sweeper without their SeqCst fences"
  "returned_uncounted|shared|a_dead_consumers_records_are_taken_again_flagged_each_once|a record given back is not counted"
  "run_stamps_late|lane|a_run_is_published_by_one_commit_and_read_record_by_record|a run's later stamps stored after its commit"
  "lookout_no_fence|wake|a_sleeper_clearing_a_handoff_while_a_sender_commits_gets_the_message|a cleared handoff without its SeqCst fence"
  "reply_win_store|reply|two_replies_to_one_request_deliver_exactly_one|a reply box won by store, not compare-and-swap"
  "reply_publish_relaxed|reply|a_reply_is_read_whole_by_its_requester|a reply published without Release"
  "reply_free_relaxed|reply|a_box_is_written_again_only_after_its_last_reply_was_read|a reply box freed without Release"
  "reply_cas_relaxed|reply|a_reply_dropped_for_a_gone_requester_comes_before_the_next_reply|a dropped reply's box freed without Release"
  "event_no_checksum|events|two_writers_of_one_slot_leave_a_whole_event_or_a_missed_one|an event's checksum not checked"
  "event_no_seq|events|two_writers_of_one_slot_leave_a_whole_event_or_a_missed_one|an event's sequence number not checked"
  "log_free_past_cursor|log|two_members_read_every_message_in_order_before_its_cells_are_reused|a log freed past the slowest member's cursor"
  "log_sweep_no_fence|log|the_last_members_read_is_always_swept|a member and a log sweeper without their SeqCst fences"
  "roster_no_writing_stamp|roster|a_reader_racing_two_writes_gets_one_whole_generation|a group's table rewritten under its old stamp"
)

cargo test -p baton-loom-tests --release --target-dir "$TARGET" --no-run -q || exit 1
failed=0
for c in "${cases[@]}"; do
  IFS='|' read -r mutant file model what <<<"$c"
  start=$(date +%s)
  out=$(BATON_MUTANT="$mutant" timeout 600 cargo test -q -p baton-loom-tests --release \
      --target-dir "$TARGET" --test "$file" -- --exact "$model" 2>&1)
  rc=$?
  # What loom (or the model's assertion) said: the line after "panicked at".
  why=$(grep -A1 "panicked at" <<<"$out" | sed -n 2p | cut -c1-90)
  if [ $rc -eq 0 ]; then
    echo "NOT CAUGHT  $mutant ($what): $file::$model passed"
    failed=1
  elif [ $rc -eq 124 ] || [ -z "$why" ]; then
    echo "NO VERDICT  $mutant ($what): $file::$model failed without a model failure (rc $rc)"
    failed=1
  else
    echo "caught      $mutant ($what) by $file::$model in $(( $(date +%s) - start )) s: $why"
  fi
done
exit $failed
