#!/bin/sh
# Runs every Go benchmark and writes the results, with the machine they ran
# on and the command, to the file given as $1 (docs/benchmarks.md).
set -eu
out=${1:-docs/benchmarks.md}
benchtime=${BENCHTIME:-1s}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cmd="go test -run '^\$' -bench . -benchmem -benchtime $benchtime -count 1 ./..."
echo "running: $cmd" >&2
go test -run '^$' -bench . -benchmem -benchtime "$benchtime" -count 1 ./... 2>&1 | grep -E '^(Benchmark|goos|goarch|pkg|cpu|ok|FAIL|---)' | tee "$tmp" >&2
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
	if [ -n "${GATEHOUSE_BIN:-}" ] && [ "$(id -u)" = 0 ]; then
		echo
		echo "## Agent footprint"
		echo
		echo "scripts/agent-footprint.sh (real eBPF/fanotify collectors, no relay reachable: the"
		echo "agent keeps batches in its ring). RSS and CPU as a share of one core, measured"
		echo "over ${FOOTPRINT_SECS:-20}s; the load is exec+exit, TCP connect/accept/close and file"
		echo "create/modify/delete. The host's own activity (builds, tests) adds process"
		echo "events and executable hashing to every row."
		echo
		scripts/agent-footprint.sh "$GATEHOUSE_BIN" "${FOOTPRINT_SECS:-20}"
	fi
	# Hand-kept reading of the numbers (ratios against peers, targets).
	if [ -f docs/benchmarks-notes.md ]; then
		echo
		cat docs/benchmarks-notes.md
	fi
} > "$out"
echo "wrote $out" >&2
