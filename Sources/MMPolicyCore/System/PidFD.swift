import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A pidfd: a handle on one process that cannot be confused with a later
/// process reusing its pid. Owned by exactly one object, closed on release.
///
/// The OOM engine kills its victim through this handle, so that a decision
/// made about process N can only ever act on that very process: it opens the
/// pidfd, checks the start time against its snapshot (`init(snapshot:)`),
/// then signals and reaps through the descriptor.
public final class PidFD: Sendable {
    public let pid: Int32
    /// The descriptor, for poll(2): POLLIN once the process has exited.
    public let rawValue: Int32

    /// Opens a pidfd on `pid` (pidfd_open, syscall 434).
    public init(pid: Int32) throws(SystemCallError) {
        let fd = LinuxSyscall.call(LinuxSyscall.pidfdOpen, Int(pid), 0)
        guard fd >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            let fix: String
            switch code {
            case .noSuchProcess:
                fix = "Process \(pid) no longer exists (it exited and was reaped); there is nothing to act on."
            case .invalidArgument:
                fix = "Process \(pid) is not a thread-group leader or the pid is invalid; give the process id (tgid), not a thread id."
            case .noFunction:
                fix = "This kernel has no pidfd_open (needs Linux 5.3)."
            default:
                fix = "Could not get a handle on process \(pid)."
            }
            throw SystemCallError(operation: "pidfd_open", target: "process \(pid)", errno: code, fix: fix)
        }
        self.pid = pid
        rawValue = Int32(fd)
    }

    /// Opens a pidfd on the process `snapshot` describes and checks that the
    /// pid still names that process (same start time), so a victim chosen from
    /// a snapshot can never be confused with a newer process that reused its pid.
    public convenience init(snapshot: ProcessSnapshot) throws(SystemCallError) {
        try self.init(pid: snapshot.pid)
        // The pidfd pins the pid: if the start time still matches now, the
        // descriptor refers to the snapshotted process.
        let now = try ProcessSnapshot.read(pid: snapshot.pid)
        guard now.startTime == snapshot.startTime else {
            throw SystemCallError(operation: "pidfd_open", target: "process \(snapshot.pid)", errno: .noSuchProcess,
                                  fix: "Process \(snapshot.pid) ('\(snapshot.comm)', started at tick \(snapshot.startTime)) no longer exists; the pid now belongs to '\(now.comm)' (started at tick \(now.startTime)).")
        }
    }

    /// Sends `sig` to the process (pidfd_send_signal, syscall 424).
    public func sendSignal(_ sig: Int32) throws(SystemCallError) {
        guard LinuxSyscall.call(LinuxSyscall.pidfdSendSignal, Int(rawValue), Int(sig), 0, 0) == 0 else {
            let code = Errno(rawValue: Glibc.errno)
            let fix: String? = switch code {
            case .noSuchProcess: "Process \(pid) has already exited."
            case .notPermitted: "Sending signals to process \(pid) needs CAP_KILL or the same user."
            case .invalidArgument: "Signal \(sig) is not a valid signal number."
            default: nil
            }
            throw SystemCallError(operation: "pidfd_send_signal(\(sig))", target: "process \(pid)", errno: code, fix: fix)
        }
    }

    /// What `releaseMemory()` found. Right after a SIGKILL either can come
    /// back: it depends only on whether the victim has already passed
    /// exit_mm() when process_mrelease looks.
    public enum MemoryRelease: Sendable, Equatable {
        /// process_mrelease returned 0: the kernel reaped the address space
        /// now, or it had been reaped already (MMF_OOM_SKIP was set).
        case released
        /// ESRCH: no thread of the process holds an address space any more.
        /// Every thread has passed exit_mm() (the process may still be a
        /// zombie its parent has not reaped), or the process is gone
        /// altogether. Its memory is freed, or being freed by its own exit.
        case alreadyExited
    }

    /// Frees the address space of a process that is being killed, without
    /// waiting for it to run its exit path (process_mrelease, syscall 448).
    ///
    /// What the kernel answers (mm/oom_kill.c, `SYSCALL_DEFINE2(process_mrelease)`):
    /// - 0 when it reaped the mm, or the mm had been reaped already: `.released`.
    /// - ESRCH when the process no longer exists or none of its threads still
    ///   has an mm (all have passed exit_mm(), as a SIGKILLed victim soon
    ///   does, zombie or not): `.alreadyExited`. Not an error for a caller
    ///   whose aim is freed memory.
    /// - EINVAL when the process is not dying (no SIGKILL yet: call this only
    ///   after `sendSignal(SIGKILL)`), is dumping core, or shares its mm with
    ///   another process that is not dying (CLONE_VM without CLONE_THREAD,
    ///   e.g. vfork): thrown.
    /// - EAGAIN when the reap could not finish (an mmu notifier would have to
    ///   block), EINTR when taking the mm's lock was interrupted: retried up
    ///   to five times, then thrown.
    /// - ENOSYS before Linux 5.15: thrown.
    @discardableResult
    public func releaseMemory() throws(SystemCallError) -> MemoryRelease {
        var attempts = 0
        while true {
            if LinuxSyscall.call(LinuxSyscall.processMrelease, Int(rawValue), 0) == 0 { return .released }
            let code = Errno(rawValue: Glibc.errno)
            switch code {
            case .noSuchProcess:
                return .alreadyExited
            case .interrupted where attempts < 5, .resourceTemporarilyUnavailable where attempts < 5:
                attempts += 1
                continue
            default:
                let fix: String? = switch code {
                case .invalidArgument: "process_mrelease only works on a process that is dying; send SIGKILL first."
                case .noFunction: "This kernel has no process_mrelease (needs Linux 5.15); wait for the process to exit instead."
                case .resourceTemporarilyUnavailable: "The kernel could not take the address space's lock; the exit path will free the memory."
                default: nil
                }
                throw SystemCallError(operation: "process_mrelease", target: "process \(pid)", errno: code, fix: fix)
            }
        }
    }

    /// True once the process has exited (a zombie counts: its memory is gone).
    public var hasExited: Bool { pollOne(rawValue, events: Int16(POLLIN), timeoutMs: 0) & Int16(POLLIN) != 0 }

    /// Throws ESRCH if the process has exited. Called after reading `what`
    /// (a /proc/PID file, the process's memory) by pid: a process still
    /// alive now was not reaped during the read, so its pid could not have
    /// been reused, and what was read is this process's.
    public func checkAlive(after what: String) throws(SystemCallError) {
        guard hasExited else { return }
        throw SystemCallError(operation: "read", target: what, errno: .noSuchProcess,
                              fix: "Process \(pid) exited during the read; what was read is dropped, since its pid may already name another process.")
    }

    /// Waits up to `timeoutMs` for the process to exit; true if it did.
    public func waitForExit(timeoutMs: Int32) -> Bool {
        pollOne(rawValue, events: Int16(POLLIN), timeoutMs: timeoutMs) & Int16(POLLIN) != 0
    }

    deinit { close(rawValue) }
}
