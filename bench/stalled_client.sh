#!/bin/bash
# A client that never reads its stream: starts `simba serve` (the CLI given, default this build's),
# sends one streaming chat request (n=16, top_logprobs 20, 4,096 tokens per choice, end-of-text
# banned) on a raw socket that never reads, and prints the server's RSS before and 16 s after.
#
#   bash bench/stalled_client.sh [CLI_MAIN_JS] [PORT]
#
# SIMBA_ADDON_PATH picks the addon as usual (for a before / after comparison with an old build).
set -euo pipefail
CLI=${1:-$(dirname "$0")/../dist/lib/cli/main.js}
PORT=${2:-18601}
node "$CLI" serve --port "$PORT" --max-running 16 >/dev/null 2>&1 &
PID=$!
trap 'kill $PID ${CLIENT:-} 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
r0=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
python3 - "$PORT" <<'PY' &
import json, socket, sys, time
port = int(sys.argv[1])
body = json.dumps({"model": "brown-mamba-s", "messages": [{"role": "user", "content": "Tell me about the jury."}],
                   "n": 16, "max_tokens": 4096, "logprobs": True, "top_logprobs": 20, "stream": True,
                   "logit_bias": {"0": -100}}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
time.sleep(30)  # never reads
PY
CLIENT=$!
sleep 16
r1=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
echo "server RSS $((r0 / 1024)) MB -> $((r1 / 1024)) MB 16 s after a never-reading stream request"
