/* libbpf (Debian libbpf-dev 1.1) and libelf, for BPFKit; glibc's malloc tuning, for the daemon. */
#ifndef MMPOLICY_CLIBBPF_SHIM_H
#define MMPOLICY_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdio.h>
/* mallopt/malloc_trim: the daemon tunes glibc's malloc for libbpf's large, short-lived BTF buffers. */
#include <malloc.h>
#endif
