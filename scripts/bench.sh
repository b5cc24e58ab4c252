#!/bin/sh
# Runs every Go benchmark and writes the results, with the machine they ran
# on and the command, to the file given as $1 (docs/benchmarks.md).
set -eu
out=${1:-docs/benchmarks.md}
benchtime=${BENCHTIME:-1s}
tmp=$(mktemp)
fp=$(mktemp)
trap 'rm -f "$tmp" "$fp"' EXIT
# BenchmarkAgentFootprint is left out here: it measures over fixed windows,
# once, in its own run below.
cmd="go test -run '^\$' -bench . -skip '^BenchmarkAgentFootprint\$' -benchmem -benchtime $benchtime -count 1 ./..."
echo "running: $cmd" >&2
go test -run '^$' -bench . -skip '^BenchmarkAgentFootprint$' -benchmem -benchtime "$benchtime" -count 1 ./... 2>&1 | grep -E '^(Benchmark|goos|goarch|pkg|cpu|ok|FAIL|---)' | tee "$tmp" >&2

# Agent footprint: the real agent connected through a real relay to a real
# cloud (e2e/footprint_bench_test.go). Needs root (eBPF, fanotify) and the
# binaries in GATEHOUSE_BIN.
fpsecs=${GATEHOUSE_FOOTPRINT_SECS:-20}
fpcmd="go test -run '^\$' -bench '^BenchmarkAgentFootprint\$' -benchtime 1x -count 1 -timeout 30m ./e2e/"
fpran=0
fpstatus=0
if [ -n "${GATEHOUSE_BIN:-}" ] && [ "$(id -u)" = 0 ]; then
	fpran=1
	echo "running: GATEHOUSE_BIN=$GATEHOUSE_BIN GATEHOUSE_FOOTPRINT_SECS=$fpsecs $fpcmd" >&2
	GATEHOUSE_FOOTPRINT_SECS=$fpsecs go test -run '^$' -bench '^BenchmarkAgentFootprint$' -benchtime 1x -count 1 -timeout 30m ./e2e/ >"$fp" 2>&1 || fpstatus=$?
	cat "$fp" >&2
fi
{
	echo "# Benchmarks"
	echo
	echo "Written by \`make bench\` ($cmd) on $(date -u +%Y-%m-%d)."
	echo
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM,"
	echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr), $(go version | cut -d' ' -f3)."
	echo
	echo "Read ns/op as the cost of one operation; where a benchmark has a peer"
	echo "(the same work done another way), the ratio is in docs/design.md's notes."
	echo
	echo '```'
	cat "$tmp"
	echo '```'
	echo
	echo "## Agent footprint"
	echo
	if [ "$fpran" = 1 ]; then
		echo "\`BenchmarkAgentFootprint\` ($fpcmd, at commit $(git describe --always --dirty 2>/dev/null || echo unknown))."
		echo "The agent runs as it does in production: its default settings, the eBPF process and"
		echo "netflow collectors and the fanotify filemod collector (on a temporary directory),"
		echo "workstation tier, auth off, connected to a real relay that forwards to a real cloud,"
		echo "all on this machine. A generator in the benchmark process makes rounds of 9 events,"
		echo "paced evenly over each second: exec+exit of /bin/true, a loopback TCP"
		echo "connect/accept/close pair, a file create+write+delete in the watched directory."
		echo "After 5 s of settling, RSS (VmRSS at the end of the window, and the largest sampled"
		echo "every second) and CPU (utime+stime as a share of one core) are measured over ${fpsecs} s."
		echo "\"Shipped\" counts every event of the agent dated in the window that reached the cloud"
		echo "(the load's and the host's own: builds and tests on the machine add process events and"
		echo "executable hashing to every row); the last column counts the load's own events found in"
		echo "the cloud afterwards. The relay and the cloud run on the same cores."
		echo
		echo '```'
		grep -E '^(Benchmark|ok|FAIL)' "$fp" || true
		echo '```'
		echo
		echo "| load | RSS (end) | max RSS | CPU (one core) | events/s made | events/s shipped | load events delivered |"
		echo "| --- | --- | --- | --- | --- | --- | --- |"
		sed -n 's/^ *footprint_bench_test\.go:[0-9]*: \(|.*|\)$/\1/p' "$fp"
		if [ "$fpstatus" != 0 ]; then
			echo
			echo "**The footprint benchmark failed** (exit $fpstatus); the end of its output:"
			echo
			echo '```'
			tail -n 40 "$fp"
			echo '```'
		fi
	else
		echo "Not measured: BenchmarkAgentFootprint needs root and GATEHOUSE_BIN (run \`make bench\` as root)."
	fi
	# Hand-kept reading of the numbers (ratios against peers, targets).
	if [ -f docs/benchmarks-notes.md ]; then
		echo
		cat docs/benchmarks-notes.md
	fi
} > "$out"
echo "wrote $out" >&2
if [ "$fpstatus" != 0 ]; then
	echo "BenchmarkAgentFootprint failed (exit $fpstatus)" >&2
	exit "$fpstatus"
fi
