#!/usr/bin/env bash
# Switchyard quickstart: builds the gateway, starts a small upstream (python's http.server
# on 127.0.0.1:9000 serving static/), then runs `switchyard standalone` in the foreground on
# 127.0.0.1:8080 (admin on 127.0.0.1:9901) with the resources in this folder.
# Ctrl-C stops the gateway; the upstream is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root

echo "building switchyard (release)..."
cargo build --release -p switchyard

python3 -m http.server 9000 --bind 127.0.0.1 --directory examples/quickstart/static &
UPSTREAM_PID=$!
trap 'kill "$UPSTREAM_PID" 2>/dev/null || true' EXIT

# Wait (up to ~5 s) for the upstream to answer, so the first curl through the gateway works.
for _ in $(seq 50); do
    if curl -fsS -o /dev/null http://127.0.0.1:9000/hello.txt 2>/dev/null; then break; fi
    if ! kill -0 "$UPSTREAM_PID" 2>/dev/null; then
        echo "the upstream did not start (is port 9000 free?)" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<'TRY'

Switchyard is starting on http://127.0.0.1:8080 (admin on http://127.0.0.1:9901). Try:

  curl -i http://127.0.0.1:8080/hello                # mock API: {"message":"hello from switchyard"}
  curl -i http://127.0.0.1:8080/files/hello.txt      # upstream serves /hello.txt (prefix stripped)
  curl -i http://127.0.0.1:8080/files/               # upstream's index.html
  curl -i http://127.0.0.1:8080/nope                 # 404, x-ca-error-code: A404NF
  curl -s http://127.0.0.1:9901/readyz               # admin: ready once the snapshot is loaded
  curl -s http://127.0.0.1:9901/status               # conditions of every resource

Edit examples/quickstart/resources.yaml while it runs: changes apply within a second.
Press Ctrl-C to stop.

TRY

target/release/switchyard standalone --config-dir examples/quickstart \
    --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9901
