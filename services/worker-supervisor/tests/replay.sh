#!/bin/bash
# Replays a recorded Claude Code stdout (REPLAY_FIXTURE) line by line, reading one stdin line for
# the prompt and one after every control_request, as the real CLI does; what it read goes to
# REPLAY_RECEIVED. Exits with REPLAY_EXIT.
IFS= read -r turn
printf '%s\n' "$turn" >> "$REPLAY_RECEIVED"
while IFS= read -r line <&3; do
  printf '%s\n' "$line"
  case "$line" in
    *'"type":"control_request"'*) IFS= read -r answer; printf '%s\n' "$answer" >> "$REPLAY_RECEIVED" ;;
  esac
done 3< "$REPLAY_FIXTURE"
[ -n "$REPLAY_SLEEP" ] && sleep "$REPLAY_SLEEP"
exit "${REPLAY_EXIT:-0}"
