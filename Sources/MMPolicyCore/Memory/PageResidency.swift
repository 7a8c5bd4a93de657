import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where the pages of some ranges of a process are: in RAM, in swap, or
/// nowhere yet. Read from /proc/PID/pagemap (bit 63 present, bit 62 swapped).
///
/// Exists so that tiering can look at a process's memory without moving it:
/// reading a swapped page (process_vm_readv) faults it back in, reading its
/// page-map entry does not. It also tells, range by range, how much of a
/// demotion took, which VmSwap (one number per process) cannot.
public struct PageResidency: Sendable, Equatable {
    /// Pages in RAM (bit 63).
    public var residentPages: Int = 0
    /// Pages in swap (bit 62). A page MADV_WILLNEED read back into the swap
    /// cache stays here until the process touches it.
    public var swappedPages: Int = 0
    /// Pages neither resident nor swapped: never touched, or file pages not in the cache.
    public var absentPages: Int = 0

    public init(residentPages: Int = 0, swappedPages: Int = 0, absentPages: Int = 0) {
        self.residentPages = residentPages
        self.swappedPages = swappedPages
        self.absentPages = absentPages
    }

    public static let presentBit: UInt64 = 1 << 63
    public static let swappedBit: UInt64 = 1 << 62

    /// Counts one pagemap entry.
    public mutating func count(entry: UInt64) {
        if entry & Self.presentBit != 0 { residentPages += 1 } else if entry & Self.swappedBit != 0 { swappedPages += 1 } else { absentPages += 1 }
    }

    /// The pages of `ranges` (each rounded out to whole pages) of the process
    /// `pidfd` refers to. Reads at most 64 Ki entries (512 KiB) at a time.
    public static func read(_ pidfd: PidFD, ranges: [AddressRange]) throws(SystemCallError) -> PageResidency {
        let pageMap = try PageMapFile(pidfd)
        var residency = PageResidency()
        let pageSize = ProcessSnapshot.pageSize
        for range in ranges where range.length > 0 {
            var page = range.start / pageSize
            let end = (range.end + pageSize - 1) / pageSize
            while page < end {
                let count = Int(min(end - page, 65_536))
                for entry in try pageMap.entries(firstPage: page, count: count) { residency.count(entry: entry) }
                page += UInt64(count)
            }
        }
        try pidfd.checkAlive(after: pageMap.path)
        return residency
    }
}

/// An open /proc/PID/pagemap: one 64-bit entry per virtual page.
struct PageMapFile: ~Copyable {
    let path: String
    let pid: Int32
    private let fd: Int32

    init(_ pidfd: PidFD) throws(SystemCallError) {
        pid = pidfd.pid
        path = "/proc/\(pidfd.pid)/pagemap"
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            let gone = code == .noSuchProcess || code == .noSuchFileOrDirectory
            throw SystemCallError(operation: "open", target: path, errno: code,
                                  fix: gone ? "Process \(pidfd.pid) no longer exists." : code == .permissionDenied || code == .notPermitted
                                      ? "Reading another process's page map needs ptrace read access (root, or CAP_SYS_PTRACE)." : nil)
        }
    }

    /// The entries of `count` pages from virtual page `firstPage` on.
    func entries(firstPage: UInt64, count: Int) throws(SystemCallError) -> [UInt64] {
        var entries = [UInt64](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = entries.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress! + filled * 8, (count - filled) * 8, off_t((firstPage + UInt64(filled)) * 8))
            }
            if n < 0 && Glibc.errno == EINTR { continue }
            if n < 0 {
                throw SystemCallError(operation: "pread", target: path, errno: Errno(rawValue: Glibc.errno),
                                      fix: "The page map could not be read at page 0x\(String(firstPage, radix: 16)).")
            }
            // The kernel answers 0 bytes once the process has no address space.
            guard n > 0 else {
                throw SystemCallError(operation: "pread", target: path, errno: .noSuchProcess,
                                      fix: "Process \(pid) has exited; its address space is gone.")
            }
            filled += n / 8
        }
        return entries
    }

    deinit { close(fd) }
}
