#!/usr/bin/env bash
# Agent footprint: RSS and CPU (share of one core) of a running
# gatehouse-agent, idle and under ~100 and ~1000 events/s of mixed security
# telemetry (process exec+exit, TCP connect/accept/close, file writes).
# Needs root (eBPF). Usage: scripts/agent-footprint.sh BIN_DIR [SECONDS]
set -euo pipefail
BIN=${1:-bin}; SECS=${2:-20}
[ "$(id -u)" = 0 ] || { echo "agent-footprint: needs root, skipped"; exit 0; }
W=$(mktemp -d); trap 'kill $AG 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/watch"
cat > "$W/agent.yaml" <<YAML
data_dir: $W/data
relays: ["127.0.0.1:9"]
filemod: {enabled: true, paths: ["$W/watch"]}
auth: {enabled: false}
YAML
GOMEMLIMIT=24MiB "$BIN/gatehouse-agent" run --config "$W/agent.yaml" --log-file "$W/agent.log" & AG=$!
sleep 3
tck=$(getconf CLK_TCK)
measure() { # label
  local t0 t1 rss
  t0=$(awk '{print $14+$15}' /proc/$AG/stat); sleep "$SECS"; t1=$(awk '{print $14+$15}' /proc/$AG/stat)
  rss=$(awk '/VmRSS/{print $2}' /proc/$AG/status)
  printf '| %s | %.1f MB | %.2f %% |\n' "$1" "$(echo "$rss/1024" | bc -l)" "$(echo "($t1-$t0)*100/$tck/$SECS" | bc -l)"
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
echo "| load | agent RSS | agent CPU (one core) |"
echo "| --- | --- | --- |"
measure "idle"
L=$(load 100); sleep 2; measure "~100 events/s"; kill $L
L=$(load 1000); sleep 2; measure "~1000 events/s"; kill $L
