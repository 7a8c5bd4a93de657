import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One inotify descriptor (close-on-exec, non-blocking) watching directories
/// for entries created in them (IN_CREATE). Owns the descriptor; closing it
/// (on release) drops every watch, and a removed directory drops its own.
///
/// It exists so that a process watching a cgroup subtree learns of a new
/// child group when it is made (cgroupfs raises IN_CREATE on mkdir) instead
/// of walking the tree on a short timer: the guardian watches every held
/// memcg this way, at no cost while nothing changes.
public final class DirectoryCreationWatch: Sendable {
    /// The descriptor, for poll(2) with POLLIN.
    public let rawValue: Int32

    public init() throws(SystemCallError) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else {
            throw SystemCallError.current("inotify_init1", "inotify",
                                          fix: "The inotify instance limit is reached; raise /proc/sys/fs/inotify/max_user_instances.")
        }
        rawValue = fd
    }

    /// Watches `directory` (again: adding a watched directory changes nothing).
    public func watch(_ directory: String) throws(SystemCallError) {
        guard inotify_add_watch(rawValue, directory, UInt32(IN_CREATE) | UInt32(IN_ONLYDIR)) >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            throw SystemCallError(operation: "inotify_add_watch(IN_CREATE)", target: directory, errno: code,
                                  fix: code == .noSpace
                                      ? "The inotify watch limit is reached; raise /proc/sys/fs/inotify/max_user_watches."
                                      : KernelFile.defaultFix(code))
        }
    }

    /// Reads every pending event without waiting; true if there was any.
    public func drain() -> Bool {
        var any = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
            if n < 0 && Glibc.errno == EINTR { continue }
            guard n > 0 else { return any }
            any = true
        }
    }

    deinit { close(rawValue) }
}
