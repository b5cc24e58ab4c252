#!/bin/sh
# Benchmarks the relay's DNS server against unbound serving the same
# overrides (local-data), both on loopback, with dnsperf (Debian packages
# dnsperf, unbound). Reports queries/s at saturation, p50/p99 latency at a
# fixed rate both can sustain, and peak RSS, with the ratios; writes the
# section to $1 (docs/benchmarks-dns.md).
#
# The machine may be shared with other work: the servers are measured in
# DNS_BENCH_ROUNDS rounds, alternating which goes first, and the medians are
# reported (every round is listed too).
#
# Knobs: DNS_BENCH_OVERRIDES (1000), DNS_BENCH_SECONDS (15),
# DNS_BENCH_LATENCY_QPS (50000), DNS_BENCH_CLIENTS (8), DNS_BENCH_ROUNDS (3).
set -eu
out=${1:-docs/benchmarks-dns.md}
n=${DNS_BENCH_OVERRIDES:-1000}
secs=${DNS_BENCH_SECONDS:-15}
latqps=${DNS_BENCH_LATENCY_QPS:-50000}
clients=${DNS_BENCH_CLIENTS:-8}
rounds=${DNS_BENCH_ROUNDS:-3}
gport=15353
uport=15354
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v dnsperf >/dev/null 2>&1 || ! command -v unbound >/dev/null 2>&1; then
	"$root/scripts/install-test-deps.sh" dnsperf unbound
fi
for c in dnsperf unbound dig; do
	command -v $c >/dev/null 2>&1 || { echo "dns-bench: $c missing (Debian dnsperf, unbound, bind9-dnsutils): skipped" >&2; exit 0; }
done

tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

(cd "$root" && go build -o "$tmp/gatehouse-dnsbench" ./relay/cmd/gatehouse-dnsbench)

# The same N overrides for both servers, and the query file.
i=0
{
	echo "server:"
	echo "  interface: 127.0.0.1"
	echo "  port: $uport"
	echo "  num-threads: $(nproc)"
	echo "  so-reuseport: yes"
	echo "  do-daemonize: no"
	echo "  chroot: \"\""
	echo "  username: \"\""
	echo "  directory: \"$tmp\""
	echo "  pidfile: \"$tmp/unbound.pid\""
	echo "  logfile: \"\""
	echo "  use-syslog: no"
	echo "  verbosity: 0"
	echo "  access-control: 127.0.0.0/8 allow"
	echo "  local-zone: \"bench.gatehouse.internal.\" static"
	awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "  local-data: \"host%d.bench.gatehouse.internal. 60 IN A 10.%d.%d.%d\"\n", i, int(i/65536)%256, int(i/256)%256, i%256 }'
	echo "remote-control:"
	echo "  control-enable: no"
} > "$tmp/unbound.conf"
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "host%d.bench.gatehouse.internal A\n", i }' > "$tmp/queries"
unbound-checkconf "$tmp/unbound.conf" >/dev/null

wait_ready() { # port
	for _ in $(seq 1 100); do
		if [ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" host1.bench.gatehouse.internal A 2>/dev/null)" = "10.0.0.1" ]; then return 0; fi
		sleep 0.1
	done
	echo "dns-bench: server on port $1 never answered" >&2
	exit 1
}

# bench NAME PORT PID: sets qps, avg, p50, p99, rss, lost
bench() {
	dnsperf -s 127.0.0.1 -p "$2" -d "$tmp/queries" -l "$secs" -c "$clients" -T 2 -q 1000 > "$tmp/$1.max" 2>&1
	qps=$(awk '/Queries per second/ { printf "%.0f", $4 }' "$tmp/$1.max")
	lost=$(awk '/Queries lost/ { print $4 }' "$tmp/$1.max" | tr -d '()')
	dnsperf -s 127.0.0.1 -p "$2" -d "$tmp/queries" -l 5 -c "$clients" -T 2 -Q "$latqps" -v > "$tmp/$1.lat" 2>&1
	awk '/^> / { print $NF * 1000000 }' "$tmp/$1.lat" | sort -n > "$tmp/$1.us"
	cnt=$(wc -l < "$tmp/$1.us")
	p50=$(awk -v c="$cnt" 'NR == int(c*0.50) { print; exit }' "$tmp/$1.us")
	p99=$(awk -v c="$cnt" 'NR == int(c*0.99) { print; exit }' "$tmp/$1.us")
	rss=$(awk '/VmHWM/ { printf "%.1f", $2/1024 }' "/proc/$3/status")
	echo "$1: $qps q/s (lost $lost), at $latqps q/s p50 ${p50}us p99 ${p99}us, peak RSS ${rss} MiB" >&2
}

run_gatehouse() {
	"$tmp/gatehouse-dnsbench" -listen "127.0.0.1:$gport" -overrides "$n" 2> "$tmp/gatehouse.log" &
	gpid=$!
	pids="$pids $gpid"
	wait_ready $gport
	bench gatehouse $gport $gpid
	echo "$qps $lost $p50 $p99 $rss" >> "$tmp/gatehouse.rounds"
	kill $gpid; wait $gpid 2>/dev/null || true
}
run_unbound() {
	unbound -d -c "$tmp/unbound.conf" 2> "$tmp/unbound.log" &
	upid=$!
	pids="$pids $upid"
	wait_ready $uport
	bench unbound $uport $upid
	echo "$qps $lost $p50 $p99 $rss" >> "$tmp/unbound.rounds"
	kill $upid; wait $upid 2>/dev/null || true
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
	echo "round $r of $rounds" >&2
	if [ $((r % 2)) -eq 1 ]; then run_gatehouse; run_unbound; else run_unbound; run_gatehouse; fi
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# median COLUMN FILE (peak RSS: the maximum)
median() { cut -d' ' -f"$1" "$2" | tr -d '%' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
maxcol() { cut -d' ' -f"$1" "$2" | sort -n | tail -1; }
g_qps=$(median 1 "$tmp/gatehouse.rounds") g_lost=$(median 2 "$tmp/gatehouse.rounds")%
g_p50=$(median 3 "$tmp/gatehouse.rounds") g_p99=$(median 4 "$tmp/gatehouse.rounds") g_rss=$(maxcol 5 "$tmp/gatehouse.rounds")
u_qps=$(median 1 "$tmp/unbound.rounds") u_lost=$(median 2 "$tmp/unbound.rounds")%
u_p50=$(median 3 "$tmp/unbound.rounds") u_p99=$(median 4 "$tmp/unbound.rounds") u_rss=$(maxcol 5 "$tmp/unbound.rounds")

# Hand-written notes after this marker line survive a re-run.
marker='<!-- notes below are kept by scripts/dns-bench.sh -->'
notes=""
if [ -f "$out" ]; then notes=$(awk -v m="$marker" '$0 == m { on = 1 } on' "$out"); fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
{
	echo "## DNS server: Gatehouse vs unbound"
	echo
	echo "Written by \`scripts/dns-bench.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
	echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr), $(go version | cut -d' ' -f3),"
	echo "$(dnsperf -h 2>&1 | awk '/^Version/ { print "dnsperf " $2 }'), $(unbound -V 2>/dev/null | awk '/^Version/ { print "unbound " $2 }')."
	echo
	echo "Gatehouse is \`relay/cmd/gatehouse-dnsbench\`: the relay's \`dnsserver\` with the"
	echo "relay's defaults (one SO_REUSEPORT UDP socket per CPU, no GOGC or memory-limit"
	echo "tuning; the answer path allocates nothing, so the GC does not run under load)."
	echo "Both serve the same $n A records (Gatehouse overrides; unbound \`local-data\`"
	echo "in a static zone, $(nproc) threads, so-reuseport) on loopback; dnsperf runs on the"
	echo "same cores (2 threads, $clients clients). Throughput: ${secs}s at saturation"
	echo "(up to 1000 queries outstanding). Latency: 5s at a fixed $latqps q/s, per-query"
	echo "latency from dnsperf -v. RSS: peak (VmHWM) over both runs. $rounds rounds,"
	echo "alternating which server goes first; the table has the medians (RSS: the"
	echo "maximum). Load average (1/5/15 min) before: $load0, after: $load1."
	echo
	echo "| server | queries/s | lost | p50 (us) | p99 (us) | peak RSS (MiB) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	echo "| Gatehouse | $g_qps | $g_lost | $g_p50 | $g_p99 | $g_rss |"
	echo "| unbound | $u_qps | $u_lost | $u_p50 | $u_p99 | $u_rss |"
	echo "| Gatehouse / unbound | $(ratio "$g_qps" "$u_qps") | | $(ratio "$g_p50" "$u_p50") | $(ratio "$g_p99" "$u_p99") | $(ratio "$g_rss" "$u_rss") |"
	echo
	echo "Every round (queries/s, lost, p50 us, p99 us, peak RSS MiB):"
	echo
	echo '```'
	i=0
	while read -r a b c d e; do i=$((i + 1)); echo "gatehouse round $i: $a $b $c $d $e"; done < "$tmp/gatehouse.rounds"
	i=0
	while read -r a b c d e; do i=$((i + 1)); echo "unbound   round $i: $a $b $c $d $e"; done < "$tmp/unbound.rounds"
	echo '```'
	if [ -n "$notes" ]; then
		echo
		printf '%s\n' "$notes"
	fi
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out" >&2
echo "wrote $out" >&2
