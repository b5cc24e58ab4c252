package collect

import "runtime/debug"

// ReleaseLoadMemory gives back the heap that loading eBPF objects used:
// cilium/ebpf (v0.22) parses the kernel's BTF into a cache that lives only
// for the load (there is no global spec to flush, unlike older versions'
// btf.FlushKernelSpec), but the pages it grew the heap by stay resident
// until the scavenger gets to them. The eBPF collectors call this once
// attached; the agent's steady-state heap is a few MB.
func ReleaseLoadMemory() { debug.FreeOSMemory() }
