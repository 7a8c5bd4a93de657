import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What one `ProcessMadvise.advise` did: how much the kernel advised, and
/// the error that stopped or skipped part of it. Partial progress is never
/// lost: `bytes` counts every range the kernel took, even when a later one
/// failed.
public struct MadviseOutcome: Sendable {
    /// Bytes of the given ranges the kernel advised (its own count, summed
    /// over the calls).
    public var bytes: UInt64 = 0
    /// The error worth reporting: the one that stopped the work (the process
    /// exited, no permission, advice not allowed), else the first range that
    /// failed. nil when every range was advised.
    public var error: SystemCallError?
    /// The range `error` is about; nil when the error is about the process
    /// or the advice (`stoppedEarly`).
    public var failedRange: AddressRange?
    /// The index of `failedRange` in the ranges given; when the work stopped
    /// early, the index of the first range that was not advised.
    public var failedRangeIndex: Int?
    /// How many ranges failed (each is skipped, the rest are still advised).
    public var failedRanges = 0
    /// True when an error about the process or the advice ended the work:
    /// the ranges after `failedRangeIndex` were not tried.
    public var stoppedEarly = false
    /// process_madvise calls made.
    public var calls = 0

    public init() {}

    /// True when every range was advised.
    public var isComplete: Bool { error == nil }
}

/// process_madvise(2) (syscall 440 on every architecture, Linux 5.10): gives
/// advice about another process's memory through a pidfd, which is how
/// tiering moves a process's memory to the slow tier (`.pageOut`) and back
/// (`.willNeed`) without its cooperation.
///
/// The kernel takes at most UIO_MAXIOV (1024) ranges and ~2 GiB (MAX_RW_COUNT)
/// per call, goes through them in order, and on an error returns the bytes of
/// the ranges it finished before it (a partly advised range counts nothing).
/// `advise` batches, carries on from where a call stopped, skips a range the
/// kernel refuses (not mapped, mlocked, ...) and goes on with the next, and
/// stops only for errors every later call would repeat (process gone, no
/// permission, advice not allowed).
///
/// Measured on this machine (Linux 6.18, x86_64, 2 cores, zram lzo-rle;
/// two runs of `TieringPrimitivesTests.measure`, debug build):
/// - One call on one 2 MiB range: MADV_COLD 33-45 µs; MADV_WILLNEED 2-3 µs
///   on resident memory and 1.0-1.2 ms on swapped memory (zram decompresses
///   in the calling thread, so the pages are in the swap cache when the call
///   returns); MADV_PAGEOUT 1.0-1.5 ms (512 pages into zram), 3 µs on a
///   range already out.
/// - MADV_PAGEOUT of 256 MiB of the test workload (one word per page, which
///   zram stores in ~45 bytes): 1573-1830 MiB/s (0.56-0.65 s/GiB) with the
///   target stopped (SIGSTOP), 1517-1653 MiB/s running but idle, and
///   184-722 MiB/s (1.4-5.5 s/GiB) while it writes every page in a loop, when
///   most of it comes straight back (VmSwap 7-63 MiB of 256 right after).
///   256 MiB of random bytes: 802-888 MiB/s, stored whole (zram used =
///   stored). kernel-facts.md has ~1 s/GiB stopped and 2.6 s/GiB running
///   for a 512 MiB process with 100 MiB hot.
public enum ProcessMadvise {
    /// UIO_MAXIOV: the most ranges one call takes.
    public static let maxRangesPerCall = 1024

    /// Advises `ranges` (page-aligned starts; in any order) of the process
    /// `pidfd` refers to. Never throws: what was done and what failed are in
    /// the outcome.
    public static func advise(_ pidfd: PidFD, ranges: [AddressRange], advice: MemoryAdvice) -> MadviseOutcome {
        let fd = Int(pidfd.rawValue)
        return advise(ranges: ranges, advice: advice, pid: pidfd.pid) { batch in
            var vectors = batch.map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.start)), iov_len: Int($0.length)) }
            let result = vectors.withUnsafeMutableBufferPointer { buffer in
                LinuxSyscall.call(LinuxSyscall.processMadvise, fd, Int(bitPattern: buffer.baseAddress), buffer.count,
                                  Int(advice.rawValue), 0)
            }
            return result >= 0 ? .advised(UInt64(result)) : .failed(Errno(rawValue: Glibc.errno))
        }
    }

    /// What one process_madvise call returned.
    enum CallResult: Sendable, Equatable {
        case advised(UInt64)
        case failed(Errno)
    }

    /// The loop of `advise` with the system call given as `call` (tests give
    /// a scripted kernel). `call` is handed at most `maxRangesPerCall` ranges;
    /// an empty batch asks only whether the process and the advice are acceptable.
    static func advise(ranges: [AddressRange], advice: MemoryAdvice, pid: Int32, pageSize: UInt64 = ProcessSnapshot.pageSize,
                       call: ([AddressRange]) -> CallResult) -> MadviseOutcome {
        var outcome = MadviseOutcome()
        var index = 0
        var done: UInt64 = 0  // bytes of ranges[index] already advised
        var retries = 0
        var oneAtATimeBefore = 0  // after an EFAULT: single-range calls up to this index
        var adviceChecked = false

        func fail(_ code: Errno, at rangeIndex: Int?, stops: Bool, fix: String? = nil) {
            let range = rangeIndex.map { ranges[$0] }
            let target = range.map { "process \(pid), range \($0.hexDescription) (#\(rangeIndex!) of \(ranges.count))" } ?? "process \(pid)"
            let error = SystemCallError(operation: "process_madvise(\(advice))", target: target, errno: code,
                                        fix: fix ?? Self.fix(for: code, advice: advice, pid: pid))
            if rangeIndex != nil { outcome.failedRanges += 1 }
            if outcome.error == nil || stops {
                (outcome.error, outcome.failedRange, outcome.failedRangeIndex) = (error, range, rangeIndex)
            }
            outcome.stoppedEarly = stops
        }
        func isCallable(_ range: AddressRange) -> Bool { range.length > 0 && range.start % pageSize == 0 }

        while index < ranges.count {
            let first = ranges[index]
            if first.length == 0 { index += 1; continue }
            if done == 0 && first.start % pageSize != 0 {
                fail(.invalidArgument, at: index, stops: false,
                     fix: "The range's start is not a multiple of the page size (\(pageSize)); the kernel takes page-aligned ranges only.")
                index += 1
                continue
            }
            // The rest of ranges[index], then following ranges; each call at
            // most UIO_MAXIOV ranges. An empty or misaligned range ends the batch.
            var batch = [AddressRange(start: first.start + done, end: first.end)]
            var next = index + 1
            let capacity = index < oneAtATimeBefore ? 1 : maxRangesPerCall
            while batch.count < capacity, next < ranges.count, isCallable(ranges[next]) {
                batch.append(ranges[next])
                next += 1
            }
            outcome.calls += 1
            switch call(batch) {
            case .advised(let bytes):
                retries = 0
                guard bytes > 0 else {
                    fail(.ioError, at: index, stops: true, fix: "The kernel advised nothing and reported no error; stopped rather than loop.")
                    return outcome
                }
                outcome.bytes += bytes
                var left = bytes, finished = 0
                while finished < batch.count, left >= batch[finished].length {
                    left -= batch[finished].length
                    finished += 1
                }
                if finished == batch.count {
                    (index, done) = (next, 0)
                } else {
                    // Stopped inside batch[finished] (MAX_RW_COUNT): go on from there.
                    done = (finished == 0 ? done : 0) + left
                    index += finished
                }
            case .failed(let code):
                // Nothing of this batch was advised: its first range failed,
                // or (EFAULT) the kernel refused to read one of the batch's ranges.
                if code == .resourceTemporarilyUnavailable && retries < 3 { retries += 1; continue }
                retries = 0
                if code == .badAddress && batch.count > 1 { oneAtATimeBefore = next; continue }
                if code == .invalidArgument && !adviceChecked {
                    // A call without ranges fails with EINVAL only if the advice itself is refused.
                    adviceChecked = true
                    outcome.calls += 1
                    if call([]) == .failed(.invalidArgument) {
                        fail(.invalidArgument, at: nil, stops: true,
                             fix: "This kernel does not take \(advice) for another process (process_madvise allows MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED from Linux 5.10).")
                        return outcome
                    }
                }
                let stops = Self.stopsEveryLaterCall(code)
                fail(code, at: stops ? nil : index, stops: stops)
                if stops { outcome.failedRangeIndex = index; return outcome }
                (index, done) = (index + 1, 0)
            }
        }
        return outcome
    }

    /// Errors about the process, the caller or the system: every later call would fail the same way.
    static func stopsEveryLaterCall(_ code: Errno) -> Bool {
        switch code {
        case .noSuchProcess, .notPermitted, .permissionDenied, .badFileDescriptor, .noFunction, .interrupted: true
        default: false
        }
    }

    static func fix(for code: Errno, advice: MemoryAdvice, pid: Int32) -> String? {
        switch code {
        case .noSuchProcess:
            "Process \(pid) has exited; its memory is gone and there is nothing to move."
        case .notPermitted:
            "process_madvise on another process needs CAP_SYS_NICE; run the daemon as root."
        case .permissionDenied:
            "Reading process \(pid)'s address space was refused (ptrace access mode READ): it belongs to another user, or Yama's ptrace_scope forbids it; needs CAP_SYS_PTRACE."
        case .noMemory:
            "Part of the range is not mapped in process \(pid) (unmapped since its map was read, or between mappings); the kernel still advises the mapped part but counts none of it. Clip ranges to ProcessMemoryMap.anonymousRanges."
        case .invalidArgument:
            "The kernel refuses \(advice) on this range: for MADV_COLD and MADV_PAGEOUT it is mlocked, hugetlb or a PFN mapping."
        case .badAddress:
            "The range lies outside the user address space."
        case .badFileDescriptor:
            "The pidfd is not valid, or MADV_WILLNEED met a special mapping with no file behind it."
        case .noFunction:
            "This kernel has no process_madvise (needs Linux 5.10)."
        case .interrupted:
            "The calling thread received a fatal signal."
        case .resourceTemporarilyUnavailable:
            "A kernel resource was temporarily unavailable; retried 3 times."
        default:
            nil
        }
    }
}
