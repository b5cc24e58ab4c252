//go:build ignore

// TCP connect, accept and close from sock/inet_sock_set_state (declared
// from its tracefs format, no vmlinux.h) plus the exit of accept(2) and
// accept4(2) to learn which process accepted a connection: the new fd is
// followed to its struct sock through CO-RE-relocated kernel structs.
//
// A state change often runs in softirq context, where "current" is whatever
// task was interrupted, so the owner of a socket is recorded only where the
// kernel runs in the owner's context: connect() (CLOSE -> SYN_SENT) and the
// return of accept().

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "../bpf/wakeup.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define IPPROTO_TCP 6

#define EV_CONNECT 1
#define EV_ACCEPT 2
#define EV_CLOSE 3

#define FLAG_ACCEPT_CLOSE 1 /* workstation tier */

struct set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

/* Record layout decoded by record.go: keep both in step. */
struct event {
	__u8 type;
	__u8 oldstate;
	__u16 family;
	__u32 pid;
	__u16 sport; /* local port */
	__u16 dport; /* remote port */
	__u32 pad;
	__u8 saddr[16]; /* local address (IPv4 in the first 4 bytes) */
	__u8 daddr[16]; /* remote address */
	char comm[16];
};

struct owner {
	__u32 pid;
	char comm[16];
};

#define RING_BYTES (64 * 1024) /* 800 records */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct event);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&lost, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u32 flags(void)
{
	__u32 k = 0;
	__u32 *v = bpf_map_lookup_elem(&config, &k);
	return v ? *v : 0;
}

static __always_inline void fill(struct event *e, struct set_state_args *ctx, __u8 type)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->oldstate = ctx->oldstate;
	e->family = ctx->family;
	e->sport = ctx->sport;
	e->dport = ctx->dport;
	if (ctx->family == 2) {
		__builtin_memcpy(e->saddr, ctx->saddr, 4);
		__builtin_memcpy(e->daddr, ctx->daddr, 4);
	} else {
		__builtin_memcpy(e->saddr, ctx->saddr_v6, 16);
		__builtin_memcpy(e->daddr, ctx->daddr_v6, 16);
	}
}

static __always_inline void emit(struct event *src, __u64 sk)
{
	struct owner *o = bpf_map_lookup_elem(&owners, &sk);
	if (o) {
		src->pid = o->pid;
		__builtin_memcpy(src->comm, o->comm, sizeof(src->comm));
	}
	if (bpf_ringbuf_output(&events, src, sizeof(*src), wakeup_flags(&events, RING_BYTES)))
		count_lost();
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_set_state(struct set_state_args *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	__u64 sk = (__u64)ctx->skaddr;
	int os = ctx->oldstate, ns = ctx->newstate;
	struct event e;

	if (os == TCP_CLOSE && ns == TCP_SYN_SENT) {
		struct owner o = {};
		o.pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(&o.comm, sizeof(o.comm));
		bpf_map_update_elem(&owners, &sk, &o, BPF_ANY);
		return 0;
	}
	if (os == TCP_SYN_SENT && ns == TCP_ESTABLISHED) {
		fill(&e, ctx, EV_CONNECT);
		emit(&e, sk);
		return 0;
	}
	if (os == TCP_SYN_RECV && ns == TCP_ESTABLISHED) {
		if (!(flags() & FLAG_ACCEPT_CLOSE))
			return 0;
		fill(&e, ctx, EV_ACCEPT);
		bpf_map_update_elem(&pending, &sk, &e, BPF_ANY);
		return 0;
	}
	if (ns == TCP_CLOSE) {
		if (os != TCP_LISTEN && os != TCP_CLOSE && (flags() & FLAG_ACCEPT_CLOSE)) {
			fill(&e, ctx, EV_CLOSE);
			emit(&e, sk);
		}
		bpf_map_delete_elem(&owners, &sk);
		bpf_map_delete_elem(&pending, &sk);
	}
	return 0;
}

struct socket {
	void *sk;
} __attribute__((preserve_access_index));

struct file {
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

/* syscalls/sys_exit_accept{,4} format */
struct sys_exit_args {
	__u64 common;
	int nr;
	long ret;
};

static __always_inline int accepted(struct sys_exit_args *ctx)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return 0;
	__u64 sk = (__u64)BPF_CORE_READ(so, sk);
	if (!sk)
		return 0;
	/* Only sockets seen reaching ESTABLISHED from SYN_RECV are in
	 * pending: other fds (not TCP, not ours) are left alone. */
	struct event *p = bpf_map_lookup_elem(&pending, &sk);
	if (!p)
		return 0;
	struct owner o = {};
	o.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&o.comm, sizeof(o.comm));
	bpf_map_update_elem(&owners, &sk, &o, BPF_ANY);
	struct event e;
	__builtin_memcpy(&e, p, sizeof(e));
	bpf_map_delete_elem(&pending, &sk);
	emit(&e, sk);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4(struct sys_exit_args *ctx)
{
	return accepted(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept(struct sys_exit_args *ctx)
{
	return accepted(ctx);
}
