import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Turns on the kernel's per-program run statistics (`run_cnt`,
/// `run_time_ns` in ``BPFProgramInfo``) for as long as it lives.
///
/// It exists so that measuring BPF cost does not mean flipping the global
/// `kernel.bpf_stats_enabled` sysctl and having to restore it: the kernel
/// counts the holders of BPF_ENABLE_STATS file descriptors and keeps the
/// statistics on while any is open (or the sysctl is 1). Owns that file
/// descriptor and closes it when released.
public final class BPFStatsSession: Sendable {
    private let fd: Int32

    public init() throws(BPFError) {
        let rc = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard rc >= 0 else {
            throw BPFError(.query, object: "kernel", errno: Errno(rawValue: -rc), reason: "the kernel refused to turn on BPF run statistics",
                           fix: "Run as root (BPF_ENABLE_STATS needs CAP_SYS_ADMIN)")
        }
        fd = rc
    }

    deinit { close(fd) }
}
