//go:build ignore

// Process creation and termination from the sched tracepoints. No vmlinux.h:
// the tracepoint records are declared from their tracefs format files, and
// the few task_struct fields we read are relocated by CO-RE against the
// running kernel's BTF (preserve_access_index).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "../bpf/wakeup.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EV_EXEC 1
#define EV_EXIT 2

#define FLAG_EXIT 1 /* emit terminations (workstation tier) */

struct signal_struct {
	int group_exit_code;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	struct mm_struct *mm;
	struct signal_struct *signal;
	int exit_code;
	unsigned long long start_time;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

/* sched/sched_process_exec format */
struct exec_args {
	__u64 common;
	__u32 filename_loc; /* __data_loc: offset in the low 16 bits */
	int pid;
	int old_pid;
};

/* sched/sched_process_exit format (fields we use) */
struct exit_args {
	__u64 common;
	char comm[16];
	int pid;
};

#define ARGS_MAX 1024 /* a power of two: lengths are masked with ARGS_MAX-1 */
#define FLAG_ARGS_TRUNCATED 1

/* Record layout decoded by record.go: keep both in step. A record is sent
 * without the unused tail of args, so most are a few hundred bytes. */
struct event {
	__u32 type;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__s32 exit_code;
	__u64 start_ns; /* task start, CLOCK_MONOTONIC ns */
	char comm[16];
	char filename[256];
	__u32 args_len; /* bytes of args: the NUL-separated argv */
	__u32 flags;
	char args[ARGS_MAX];
};

#define RING_BYTES (128 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} events SEC(".maps");

/* Built here, not on the 512-byte stack, then copied into the ring at its
 * real length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

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

SEC("tracepoint/sched/sched_process_exec")
int on_exec(struct exec_args *ctx)
{
	__u32 k = 0;
	struct event *e = bpf_map_lookup_elem(&scratch, &k);
	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 ug = bpf_get_current_uid_gid();
	e->type = EV_EXEC;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ug;
	e->gid = ug >> 32;
	e->exit_code = 0;
	e->start_ns = BPF_CORE_READ(task, start_time);
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), (void *)ctx + (ctx->filename_loc & 0xFFFF));
	/* The new image's argv, read here because a short-lived process is
	 * gone from /proc before the agent could read its cmdline. */
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	e->flags = 0;
	if (len > ARGS_MAX - 1) {
		len = ARGS_MAX - 1;
		e->flags |= FLAG_ARGS_TRUNCATED;
	}
	len &= ARGS_MAX - 1;
	if (len && bpf_probe_read_user(&e->args, len, (void *)start))
		len = 0;
	e->args_len = len;
	__u64 size = offsetof(struct event, args) + len;
	if (bpf_ringbuf_output(&events, e, size, wakeup_flags(&events, RING_BYTES)))
		count_lost();
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(struct exit_args *ctx)
{
	if (!(flags() & FLAG_EXIT))
		return 0;
	__u64 pt = bpf_get_current_pid_tgid();
	if ((pt >> 32) != (__u32)pt)
		return 0; /* a thread, not the process */
	__u32 k = 0;
	struct event *e = bpf_map_lookup_elem(&scratch, &k);
	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 ug = bpf_get_current_uid_gid();
	e->type = EV_EXIT;
	e->pid = pt >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ug;
	e->gid = ug >> 32;
	/* do_group_exit() sets the group's code before do_exit(); the task's
	 * own exit_code may not be set yet when the tracepoint fires. */
	e->exit_code = BPF_CORE_READ(task, signal, group_exit_code);
	if (!e->exit_code)
		e->exit_code = BPF_CORE_READ(task, exit_code);
	e->start_ns = BPF_CORE_READ(task, start_time);
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	e->filename[0] = 0;
	e->args_len = 0;
	e->flags = 0;
	if (bpf_ringbuf_output(&events, e, offsetof(struct event, args), wakeup_flags(&events, RING_BYTES)))
		count_lost();
	return 0;
}
