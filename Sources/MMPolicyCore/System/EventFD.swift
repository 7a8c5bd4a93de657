import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An eventfd counter (close-on-exec, non-blocking) owned by exactly one
/// object, closed when it is released.
///
/// It exists because the cgroup v1 OOM notification speaks eventfd (the
/// kernel adds to the counter on each OOM), and because a decision loop that
/// polls several descriptors needs one it can signal to wake itself (e.g. on
/// shutdown).
public final class EventFD: Sendable {
    /// The descriptor, for poll(2) with POLLIN. Valid as long as this object lives.
    public let rawValue: Int32

    public init() throws(SystemCallError) {
        // EFD_CLOEXEC and EFD_NONBLOCK are defined as O_CLOEXEC and O_NONBLOCK.
        let fd = LinuxSyscall.eventfd(initialValue: 0, flags: O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw SystemCallError.current("eventfd", "a new eventfd",
                                          fix: "The process or system is out of file descriptors; raise RLIMIT_NOFILE or close unused ones.")
        }
        rawValue = fd
    }

    /// Reads and resets the counter; nil when it is 0 (EAGAIN).
    public func read() -> UInt64? {
        var value: UInt64 = 0
        while true {
            let n = withUnsafeMutableBytes(of: &value) { Glibc.read(rawValue, $0.baseAddress, 8) }
            if n == 8 { return value }
            if n < 0 && Glibc.errno == EINTR { continue }
            return nil
        }
    }

    /// Adds `n` to the counter, waking pollers. A counter that would pass
    /// UInt64.max - 1 is left as it is (the write would block, and this one
    /// is non-blocking); it is already signalled then.
    public func signal(_ n: UInt64 = 1) {
        var value = n
        while withUnsafeBytes(of: &value, { Glibc.write(rawValue, $0.baseAddress, 8) }) < 0 && Glibc.errno == EINTR {}
    }

    deinit { close(rawValue) }
}
