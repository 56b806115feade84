# Helpers shared by bench/run.sh and bench/cost.sh (sourced; callers set LOG_PREFIX).

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "${LOG_PREFIX:-bench}" "$*" >&2; exit 1; }

# free_ports N: print N distinct free loopback ports.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_http LOG PID URL SECONDS: wait until URL answers 200 while PID stays alive.
wait_http() {
  local logf=$1 pid=$2 url=$3 secs=$4 i
  for ((i = 0; i < secs * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logf" >&2 || true; die "pid $pid exited during startup (log: $logf)"; }
    [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" || true) == 200 ]] && return 0
    sleep 0.2
  done
  tail -n 30 "$logf" >&2 || true
  die "$url did not answer 200 within ${secs}s (log: $logf)"
}
