import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An inotify descriptor (close-on-exec, non-blocking) watching one file for
/// IN_MODIFY. Owns the descriptor; closing it (on release) drops the watch.
///
/// cgroup v2 raises a modify event on memory.events whenever a counter in it
/// changes (an OOM, an OOM kill, hitting memory.max), so the v2 OOM engine
/// polls this instead of re-reading the file on a timer.
public final class FileModificationWatch: Sendable {
    /// The descriptor, for poll(2) with POLLIN.
    public let rawValue: Int32
    public let path: String

    public init(path: String) throws(SystemCallError) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else {
            throw SystemCallError.current("inotify_init1", path,
                                          fix: "The inotify instance limit is reached; raise /proc/sys/fs/inotify/max_user_instances.")
        }
        guard inotify_add_watch(fd, path, UInt32(IN_MODIFY)) >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            close(fd)
            throw SystemCallError(operation: "inotify_add_watch(IN_MODIFY)", target: path, errno: code,
                                  fix: code == .noSpace
                                      ? "The inotify watch limit is reached; raise /proc/sys/fs/inotify/max_user_watches."
                                      : KernelFile.defaultFix(code))
        }
        rawValue = fd
        self.path = path
    }

    /// Reads every pending event without waiting; returns how many there were.
    public func drain() -> Int {
        var count = 0
        // Room for many events (each is a 16-byte header plus a name, and a
        // watch on a file carries no name).
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
            if n < 0 && Glibc.errno == EINTR { continue }
            guard n > 0 else { return count }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size
            while offset + header <= n {
                let nameLength = buffer.withUnsafeBytes { $0.load(fromByteOffset: offset + 12, as: UInt32.self) }
                offset += header + Int(nameLength)
                count += 1
            }
        }
    }

    /// Waits up to `timeoutMs` for an event; true if one is pending. Does not consume it.
    public func wait(timeoutMs: Int32) -> Bool {
        pollOne(rawValue, events: Int16(POLLIN), timeoutMs: timeoutMs) & Int16(POLLIN) != 0
    }

    deinit { close(rawValue) }
}
