#if canImport(Glibc)
import Glibc
#endif

/// Descriptor numbers the kernel releases first when the daemon dies.
///
/// When a process dies, Linux closes its descriptors and then releases the
/// files highest number first (the deferred releases run newest first). A
/// daemon's BPF links and programs sit above the descriptors it opened at
/// start, and detaching each waits for RCU grace periods: measured here,
/// the guardian's link closed about 150 ms after the daemon's threads had
/// exited, and that grows with every policy loaded. Moved to the top of the
/// table, the state directory's lock and the guardian's link are released
/// before any of that, so the guardian hears of the death (and can take the
/// lock) as soon as the daemon's memory is gone. Only the delay depends on
/// this order, never correctness.
enum ReleasedFirst {
    /// The slots used are the `rank`-th highest below this (or the open-file
    /// limit, if lower): high enough to stay above what the daemon opens,
    /// low enough not to grow the descriptor table much.
    static let ceiling: rlim_t = 1024

    /// Moves `fd` to the `rank`-th highest slot (0: the top), close-on-exec,
    /// and closes the original; returns the new number, or `fd` itself if it
    /// cannot be moved (a tiny open-file limit, the slot taken).
    static func move(_ fd: Int32, rank: Int32) -> Int32 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return fd }
        let top = Int32(min(limit.rlim_cur, ceiling)) - 1 - rank
        guard top > fd + 8 else { return fd }
        // F_DUPFD_CLOEXEC gives the lowest free number >= top: exactly top unless it is taken.
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, top)
        guard moved >= 0 else { return fd }
        close(fd)
        return moved
    }
}
