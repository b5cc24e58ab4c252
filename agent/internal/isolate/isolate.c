//go:build ignore

// Host isolation: cgroup_skb programs on the root cgroup v2 (ingress and
// egress) that let a packet pass only when the remote address is in an
// allow-list LPM trie (one for IPv4, one for IPv6). IPv6 neighbour
// discovery and MLD always pass so the host keeps its links; ARP is not IP
// and never reaches these hooks. Maps are pinned by name so a restarted
// agent finds them.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define LIBBPF_PIN_BY_NAME 1

struct key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct key4);
	__type(value, __u8);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct key6);
	__type(value, __u8);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} allow6 SEC(".maps");

/* drops[0]: ingress, drops[1]: egress */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} drops SEC(".maps");

static __always_inline int drop(__u32 dir)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &dir);
	if (n)
		*n += 1;
	return 0;
}

static __always_inline int nd_or_mld(__u8 type)
{
	/* MLD query/report/done 130-132, RS 133, RA 134, NS 135, NA 136,
	 * redirect 137, MLDv2 report 143 */
	return (type >= 130 && type <= 137) || type == 143;
}

static __always_inline int filter(struct __sk_buff *skb, __u32 egress)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		struct key4 k = { .prefixlen = 32 };
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return drop(egress);
		__builtin_memcpy(k.addr, egress ? (void *)&ip.daddr : (void *)&ip.saddr, 4);
		if (bpf_map_lookup_elem(&allow4, &k))
			return 1;
		return drop(egress);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		struct key6 k = { .prefixlen = 128 };
		__u8 type;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return drop(egress);
		__builtin_memcpy(k.addr, egress ? (void *)&ip6.daddr : (void *)&ip6.saddr, 16);
		if (bpf_map_lookup_elem(&allow6, &k))
			return 1;
		if (ip6.nexthdr == IPPROTO_ICMPV6 &&
		    bpf_skb_load_bytes(skb, sizeof(ip6), &type, 1) == 0 && nd_or_mld(type))
			return 1;
		return drop(egress);
	}
	return 1; /* not IP: not ours to judge */
}

SEC("cgroup_skb/ingress")
int isolate_ingress(struct __sk_buff *skb)
{
	return filter(skb, 0);
}

SEC("cgroup_skb/egress")
int isolate_egress(struct __sk_buff *skb)
{
	return filter(skb, 1);
}
