/* Ring-buffer wake-ups shared by the collectors' eBPF programs.
 *
 * Waking the reader for every record costs the agent a thread wake-up and
 * a scheduler round per event. Instead a record wakes the reader only when
 * the reader asked for it (reader_armed, set by an idle reader and cleared
 * by the first record after) or when the ring is a quarter full (a burst
 * must not overflow it before the reader's next tick). A busy reader reads
 * on its own ticks (collect.ReadRecords). Call before output. */
#ifndef GATEHOUSE_WAKEUP_H
#define GATEHOUSE_WAKEUP_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reader_armed SEC(".maps");

static __always_inline __u64 wakeup_flags(void *ring, __u64 ring_bytes)
{
	__u32 k = 0;
	__u32 *armed = bpf_map_lookup_elem(&reader_armed, &k);
	if (armed && *armed) {
		*armed = 0; /* two CPUs racing here both wake it: harmless */
		return BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= ring_bytes / 4)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

#endif
