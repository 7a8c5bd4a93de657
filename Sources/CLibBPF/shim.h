/* libbpf (Debian libbpf-dev 1.1) and libelf, for BPFKit. */
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
#endif
