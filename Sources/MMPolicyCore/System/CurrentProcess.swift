import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Settings of the calling process itself: its name, OOM score, locked
/// memory, and who reaps its orphans.
///
/// It exists for the guardian, a process that must survive what kills the
/// daemon (the OOM killer, reclaim stalls), and for tests that adopt the
/// processes the daemon leaves behind.
public enum CurrentProcess {
    /// Sets the process name that `ps`, `top` and /proc/PID/comm show (the
    /// main thread's name, as prctl PR_SET_NAME on the main thread would,
    /// but from any thread: an async `main` runs on a pool thread). At most
    /// 15 bytes are kept.
    public static func setName(_ name: String) throws(SystemCallError) {
        try KernelFile.write("/proc/self/comm", String(decoding: name.utf8.prefix(15), as: UTF8.self))
    }

    /// Writes /proc/self/oom_score_adj. Lowering it below the value the
    /// process inherited needs CAP_SYS_RESOURCE; the error says so.
    public static func setOOMScoreAdj(_ value: Int) throws(SystemCallError) {
        try KernelFile.write("/proc/self/oom_score_adj", String(value), fix: { code in
            code == .permissionDenied || code == .notPermitted
                ? "Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this process lacks; it keeps its inherited score."
                : KernelFile.defaultFix(code)
        })
    }

    /// The current /proc/self/oom_score_adj, or nil if it cannot be read.
    public static var oomScoreAdj: Int? {
        (try? KernelFile.read("/proc/self/oom_score_adj")).flatMap { Int($0.trimmingWhitespace()) }
    }

    /// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): every page the
    /// process has touched or will touch stays resident, and nothing is
    /// faulted in just to lock it (so the resident size stays what is used).
    public static func lockMemory() throws(SystemCallError) {
        guard mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0 else {
            throw SystemCallError.current("mlockall", "process \(getpid())",
                                          fix: "Locking memory needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK; without it pages may be reclaimed under pressure.")
        }
    }

    /// Makes this process the reaper of its descendants' orphans
    /// (PR_SET_CHILD_SUBREAPER): a grandchild whose parent dies is
    /// re-parented here, not to init, so this process can wait for it.
    public static func becomeChildSubreaper() throws(SystemCallError) {
        guard LinuxSyscall.prctl(Self.prSetChildSubreaper, 1) == 0 else {
            throw SystemCallError.current("prctl(PR_SET_CHILD_SUBREAPER)", "process \(getpid())")
        }
    }

    // <linux/prctl.h>
    static let prSetChildSubreaper: Int32 = 36
}
