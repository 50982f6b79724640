#!/bin/bash
# Replays a recorded Claude Code stdout (REPLAY_FIXTURE) line by line, reading one stdin line for
# the prompt and one after every control_request, as the real CLI does; what it read goes to
# REPLAY_RECEIVED, its arguments to REPLAY_RECEIVED.args. Exits with REPLAY_EXIT.
# With --resume, REPLAY_RESUME_FIXTURE (and REPLAY_RESUME_EXIT) is replayed instead.
# REPLAY_BACKGROUND=<file> first starts `sleep 300` in a session of its own, as the CLI's Bash
# tool does, and writes its pid to <file>. REPLAY_HOLD_STDOUT=<file> starts one that keeps the
# CLI's stdout open after the CLI exits (a background process that inherited it).
printf '%s\n' "$*" >> "$REPLAY_RECEIVED.args"
fixture="$REPLAY_FIXTURE"
exit_code="${REPLAY_EXIT:-0}"
case " $* " in
  *' --resume '*) if [ -n "$REPLAY_RESUME_FIXTURE" ]; then fixture="$REPLAY_RESUME_FIXTURE"; exit_code="${REPLAY_RESUME_EXIT:-1}"; fi ;;
esac
if [ -n "$REPLAY_BACKGROUND" ]; then
  setsid sleep 300 < /dev/null > /dev/null 2>&1 &
  echo $! > "$REPLAY_BACKGROUND"
fi
if [ -n "$REPLAY_HOLD_STDOUT" ]; then
  sleep 300 < /dev/null 2>/dev/null &
  echo $! > "$REPLAY_HOLD_STDOUT"
fi
IFS= read -r turn
printf '%s\n' "$turn" >> "$REPLAY_RECEIVED"
while IFS= read -r line <&3; do
  printf '%s\n' "$line"
  case "$line" in
    *'"type":"control_request"'*) IFS= read -r answer; printf '%s\n' "$answer" >> "$REPLAY_RECEIVED" ;;
  esac
done 3< "$fixture"
[ -n "$REPLAY_SLEEP" ] && sleep "$REPLAY_SLEEP"
exit "$exit_code"
