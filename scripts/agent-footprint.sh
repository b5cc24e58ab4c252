#!/usr/bin/env bash
# Agent footprint: RSS and CPU (share of one core) of a running
# gatehouse-agent, idle and under ~100 and ~1000 events/s of mixed security
# telemetry (process exec+exit, TCP connect/accept/close, file writes).
# Needs root (eBPF). Usage: scripts/agent-footprint.sh BIN_DIR [SECONDS]
set -euo pipefail
BIN=${1:-bin}; SECS=${2:-20}
[ "$(id -u)" = 0 ] || { echo "agent-footprint: needs root, skipped"; exit 0; }
W=$(mktemp -d); trap 'kill $AG 2>/dev/null && wait $AG 2>/dev/null; rm -rf "$W"' EXIT
mkdir -p "$W/watch"
cat > "$W/agent.yaml" <<YAML
data_dir: $W/data
relays: ["127.0.0.1:9"]
filemod: {enabled: true, paths: ["$W/watch"]}
auth: {enabled: false}
YAML
"$BIN/gatehouse-agent" run --config "$W/agent.yaml" --log-file "$W/agent.log" & AG=$!
sleep 3
tck=$(getconf CLK_TCK)
seq() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("next_seq",0))' "$W/data/status.json" 2>/dev/null || echo 0; }
measure() { # label [min_batches]: the load must have made batches in the ring
  local t0 t1 rss s0 s1
  s0=$(seq)
  t0=$(awk '{print $14+$15}' /proc/$AG/stat); sleep "$SECS"; t1=$(awk '{print $14+$15}' /proc/$AG/stat)
  rss=$(awk '/VmRSS/{print $2}' /proc/$AG/status)
  sleep 3; s1=$(seq) # status.json is rewritten within 2s of a change
  if [ -n "${2:-}" ] && [ $((s1 - s0)) -lt "$2" ]; then
    echo "agent-footprint: $1: the load made $((s1 - s0)) batches, want at least $2 (collectors not running?)" >&2; exit 1
  fi
  printf '| %s | %.1f MB | %.2f %% | %d |\n' "$1" "$(echo "$rss/1024" | bc -l)" "$(echo "($t1-$t0)*100/$tck/$SECS" | bc -l)" $((s1 - s0))
}
load() { # events/s; each round = exec+exit (2), connect+accept+2 close (4), create+modify+delete (3) = 9 events
  local rate=$1 per=$(( $1 / 9 )); [ $per -lt 1 ] && per=1
  python3 - "$per" "$W/watch" >/dev/null 2>&1 <<'PY' &
import os, socket, subprocess, sys, time
per, d = int(sys.argv[1]), sys.argv[2]
ln = socket.socket(); ln.bind(("127.0.0.1", 0)); ln.listen(128)
i = 0
while True:
    t = time.time()
    for _ in range(per):
        subprocess.run(["/bin/true"])
        c = socket.create_connection(ln.getsockname()); s, _ = ln.accept(); c.close(); s.close()
        p = os.path.join(d, "f%d" % i); i += 1
        with open(p, "w") as f: f.write("x")
        os.remove(p)
    time.sleep(max(0, 1 - (time.time() - t)))
PY
  echo $!
}
echo "| load | agent RSS | agent CPU (one core) | batches made |"
echo "| --- | --- | --- | --- |"
measure "idle"
L=$(load 100); sleep 2; measure "~100 events/s" 2; kill $L
L=$(load 1000); sleep 2; measure "~1000 events/s" 2; kill $L
