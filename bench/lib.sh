# Helpers shared by the bench scripts (sourced; callers set LOG_PREFIX, and RUN before
# nginx_conf).

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

# nginx_conf NAME WORKERS HTTP_LINES [MAIN_LINES]: write $RUN/NAME/nginx.conf,
# prefix-local; MAIN_LINES go to the main context (e.g. `master_process off;`).
nginx_conf() {
  local dir=$RUN/$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes $2;
${4:-}
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$3
}
EOF
}

# haproxy_conf NAME THREADS LISTEN_PORT UPSTREAM_PORT: write $RUN/NAME/haproxy.cfg, a
# reverse proxy like the nginx peer's: HTTP/1.1 keep-alive on both sides, idle upstream
# connections shared by all client connections (`http-reuse always`), no log lines (no
# `log` directive anywhere). Run it with `haproxy -db -f FILE` (foreground, one process).
haproxy_conf() {
  local dir=$RUN/$1
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread $2
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 600s
frontend bench
  bind 127.0.0.1:$3
  default_backend up
backend up
  server up 127.0.0.1:$4
EOF
}

# install_peers: nginx, wrk and haproxy from the Debian packages when missing.
install_peers() {
  local missing=() sudo=
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v haproxy >/dev/null || missing+=(haproxy)
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || sudo=sudo
  log "installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
