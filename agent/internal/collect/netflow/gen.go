package netflow

// BPF_MULTIARCH is the build machine's multiarch triplet, where its
// asm/ headers live (`make generate` sets it from clang -print-multiarch).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -I/usr/include/$BPF_MULTIARCH" -target bpfel netflow netflow.c
