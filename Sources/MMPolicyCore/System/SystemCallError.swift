import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call or kernel-file access, with what an operator needs to
/// act on it: the operation, the object it was applied to (a path, a pid), the
/// errno, and one sentence saying what to do.
///
/// The OOM engine meets these on its hot path (a victim that exited, a cgroup
/// that was removed), so the errno is kept for code to branch on and the
/// description is written for the log.
public struct SystemCallError: Error, Sendable, CustomStringConvertible {
    /// What was being done, e.g. "pidfd_open" or "write".
    public var operation: String
    /// What it was done to, e.g. "/proc/pressure/memory" or "process 1234".
    public var target: String
    public var errno: Errno
    /// One sentence (ending in a period) saying how to fix or read the failure.
    public var fix: String?

    public init(operation: String, target: String, errno: Errno, fix: String? = nil) {
        self.operation = operation
        self.target = target
        self.errno = errno
        self.fix = fix
    }

    /// An error for the calling thread's current `errno`.
    static func current(_ operation: String, _ target: String, fix: String? = nil) -> SystemCallError {
        SystemCallError(operation: operation, target: target, errno: Errno(rawValue: Glibc.errno), fix: fix)
    }

    /// Kernel text that did not have the expected format. Reported as EBADMSG
    /// so that callers handle it like any other failure to read the file.
    public static func format(_ target: String, _ fix: String) -> SystemCallError {
        SystemCallError(operation: "parse", target: target, errno: .badMessage, fix: fix)
    }

    /// True when the failure means the process or cgroup is gone (ESRCH, ENOENT, ENODEV).
    public var meansGone: Bool { errno == .noSuchProcess || errno == .noSuchFileOrDirectory || errno == .operationNotSupportedByDevice }

    public var description: String {
        let text = "\(operation) on \(target) failed: \(String(cString: strerror(errno.rawValue))) (errno \(errno.rawValue))."
        guard let fix else { return text }
        return text + " " + fix
    }
}

/// Reading and writing the small text files of /proc, /sys and cgroupfs,
/// whose stat size is 0, with errors that name the file.
///
/// Public so that the other library modules (the watchdog's signal readers)
/// read kernel files the same way and fail with the same errors.
public enum KernelFile {
    /// Reads the whole file. `fix` picks the advice for an errno.
    public static func read(_ path: String, fix: (Errno) -> String? = defaultFix) throws(SystemCallError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open", path, fix) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw fail("read", path, fix)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` in one write(2), as cgroup and /proc knobs expect.
    static func write(_ path: String, _ text: String, fix: (Errno) -> String? = defaultFix) throws(SystemCallError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open", path, fix) }
        defer { close(fd) }
        try write(fd: fd, text, target: path, fix: fix)
    }

    /// Writes `text` to an open descriptor in one write(2).
    static func write(fd: Int32, _ text: String, target: String, fix: (Errno) -> String? = defaultFix) throws(SystemCallError) {
        let bytes = Array(text.utf8)
        while true {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && Glibc.errno == EINTR { continue }
            guard n == bytes.count else {
                if n >= 0 {
                    throw SystemCallError(operation: "write", target: target, errno: .ioError,
                                          fix: "The kernel took \(n) of \(bytes.count) bytes of '\(text)'; knobs must be written whole.")
                }
                throw fail("write", target, fix)
            }
            return
        }
    }

    /// The file's contents as one unsigned integer (e.g. memory.usage_in_bytes).
    public static func readUInt64(_ path: String, fix: (Errno) -> String? = defaultFix) throws(SystemCallError) -> UInt64 {
        let text = try read(path, fix: fix).trimmingWhitespace()
        guard let value = UInt64(text) else {
            throw SystemCallError.format(path, "Expected one unsigned integer, found '\(text.prefix(40))'.")
        }
        return value
    }

    /// A list of pids, one per line (cgroup.procs).
    static func readPIDs(_ path: String, fix: (Errno) -> String? = defaultFix) throws(SystemCallError) -> [Int32] {
        try read(path, fix: fix).split(separator: "\n").compactMap { Int32($0) }
    }

    private static func fail(_ operation: String, _ path: String, _ fix: (Errno) -> String?) -> SystemCallError {
        let code = Errno(rawValue: Glibc.errno)
        return SystemCallError(operation: operation, target: path, errno: code, fix: fix(code))
    }

    /// The advice for errnos every kernel file can give (gone, not root, bad value).
    public static func defaultFix(_ code: Errno) -> String? {
        switch code {
        case .noSuchFileOrDirectory, .operationNotSupportedByDevice:
            return "The file is gone or never existed: the cgroup may have been removed, the process may have exited, or this kernel lacks the interface."
        case .permissionDenied, .notPermitted:
            return "Run as root; cgroup and /proc knobs are writable only with privileges."
        case .invalidArgument:
            return "The kernel rejected the value; check the file's documented format and range."
        default:
            return nil
        }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> Substring {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\n" || first == "\t" { view = view.dropFirst() }
        while let last = view.last, last == " " || last == "\n" || last == "\t" { view = view.dropLast() }
        return view
    }
}

/// Linux system calls that glibc's Swift module does not import (they live in
/// headers Swift's Glibc map leaves out, or need the variadic `syscall`).
/// The numbers of pidfd_open (434), pidfd_send_signal (424),
/// process_madvise (440) and process_mrelease (448) are the same on every
/// architecture: they come from the unified syscall table added in Linux 5.1.
/// process_vm_readv's number differs (310 on x86_64, 270 on aarch64), so
/// glibc's wrapper is called instead.
enum LinuxSyscall {
    static let pidfdSendSignal = 424
    static let pidfdOpen = 434
    static let processMadvise = 440
    static let processMrelease = 448

    private typealias Syscall = @convention(c) (Int, Int, Int, Int, Int, Int) -> Int
    private typealias ProcessVMReadv = @convention(c) (Int32, UnsafeRawPointer?, UInt, UnsafeRawPointer?, UInt, UInt) -> Int
    private typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
    private typealias EventFDCreate = @convention(c) (UInt32, Int32) -> Int32
    private typealias Accept4 = @convention(c) (Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32) -> Int32

    // glibc's `syscall` is variadic, which Swift cannot call; its x86_64 and
    // aarch64 implementations only move integer registers, so calling it
    // through a fixed-argument pointer is sound.
    private static let syscallFunction: Syscall = unsafeBitCast(dlsym(nil, "syscall")!, to: Syscall.self)
    private static let eventfdFunction: EventFDCreate = unsafeBitCast(dlsym(nil, "eventfd")!, to: EventFDCreate.self)
    // accept4 is behind _GNU_SOURCE in glibc's Swift module.
    private static let accept4Function: Accept4 = unsafeBitCast(dlsym(nil, "accept4")!, to: Accept4.self)
    // prctl is variadic too (<sys/prctl.h> is not in Swift's Glibc map), and
    // its syscall number differs between architectures, so call glibc's.
    private static let prctlFunction: Prctl = unsafeBitCast(dlsym(nil, "prctl")!, to: Prctl.self)
    // process_vm_readv is behind _GNU_SOURCE in glibc's Swift module.
    private static let processVMReadvFunction: ProcessVMReadv = unsafeBitCast(dlsym(nil, "process_vm_readv")!, to: ProcessVMReadv.self)

    /// Returns the result, or -1 with `errno` set.
    static func call(_ number: Int, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0) -> Int {
        syscallFunction(number, a, b, c, d, e)
    }

    /// process_vm_readv(2): copies from `pid`'s memory (`remote` iovecs) into
    /// ours (`local` iovecs). Bytes read, or -1 with `errno` set.
    static func processVMReadv(_ pid: Int32, local: UnsafePointer<iovec>, _ localCount: Int,
                               remote: UnsafePointer<iovec>, _ remoteCount: Int) -> Int {
        processVMReadvFunction(pid, local, UInt(localCount), remote, UInt(remoteCount), 0)
    }

    static func eventfd(initialValue: UInt32, flags: Int32) -> Int32 {
        eventfdFunction(initialValue, flags)
    }

    static func accept4(_ listener: Int32, flags: Int32) -> Int32 {
        accept4Function(listener, nil, nil, flags)
    }

    /// prctl(option, a, b, c, d); -1 with `errno` set on failure.
    static func prctl(_ option: Int32, _ a: UInt = 0, _ b: UInt = 0, _ c: UInt = 0, _ d: UInt = 0) -> Int32 {
        prctlFunction(option, a, b, c, d)
    }
}

/// Accepts a connection on `listener` with close-on-exec and non-blocking
/// set atomically, so a process spawned at the same moment (the guardian)
/// never inherits it. -1 with `errno` set on failure.
public func acceptCloseOnExecNonBlocking(_ listener: Int32) -> Int32 {
    LinuxSyscall.accept4(listener, flags: Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
}

/// poll(2) on one descriptor, retrying on EINTR with the time left.
/// Returns the revents (0 on timeout or error).
func pollOne(_ fd: Int32, events: Int16, timeoutMs: Int32) -> Int16 {
    var pfd = pollfd(fd: fd, events: events, revents: 0)
    let deadline = MonotonicMilliseconds.now + Int64(max(timeoutMs, 0))
    var wait = timeoutMs
    while true {
        let n = poll(&pfd, 1, wait)
        if n > 0 { return pfd.revents }
        if n == 0 || Glibc.errno != EINTR { return 0 }
        if timeoutMs >= 0 { wait = Int32(max(0, deadline - MonotonicMilliseconds.now)) }
    }
}

enum MonotonicMilliseconds {
    static var now: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
