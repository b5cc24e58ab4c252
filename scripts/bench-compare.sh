#!/bin/sh
# Compares the Go benchmarks of two commits in one run: each round runs every
# selected benchmark once in the base tree, then once in this tree, so load on
# the machine falls on both alike. benchstat reports medians and ratios.
#   scripts/bench-compare.sh BASE_REV [BENCH_REGEX] [ROUNDS] > report.txt
# Benchmarks under e2e/ start the real binaries: GATEHOUSE_BIN is set per tree.
set -eu
base=${1:?usage: bench-compare.sh BASE_REV [BENCH_REGEX] [ROUNDS]}
pattern=${2:-.}
rounds=${3:-3}
pkgs=${PKGS:-./agent/internal/transport/ ./relay/internal/spool/ ./cloud/internal/store/ ./cluster/}
top=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$top" worktree add --detach -q "$work/base" "$base"
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"
for tree in "$work/base" "$top"; do
	(cd "$tree" && make --no-print-directory build >/dev/null)
done
i=1
while [ "$i" -le "$rounds" ]; do
	for tree in "$work/base" "$top"; do
		name=after
		[ "$tree" = "$work/base" ] && name=before
		echo "round $i/$rounds: $name ($(cd "$tree" && git rev-parse --short HEAD)), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
		(cd "$tree" && GATEHOUSE_BIN="$tree/bin" go test -run '^$' -bench "$pattern" -skip '^BenchmarkAgentFootprint$' \
			-benchmem -count 1 -timeout 30m $pkgs) | grep -E '^(Benchmark|goos|goarch|pkg|cpu)' >>"$work/$name.txt"
	done
	i=$((i + 1))
done
echo "before: $base ($(git -C "$work/base" rev-parse --short HEAD)); after: $(git -C "$top" describe --always --dirty); $rounds alternating rounds"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo
cd "$work" && $benchstat before.txt after.txt
