import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Pressure stall information for memory: the share of wall time in which
/// some (or all, "full") non-idle tasks were stalled waiting for memory.
///
/// The OOM engine's early trigger and the watchdog's stall guard read it
/// from /proc/pressure/memory (system) or a cgroup v2 memory.pressure.
public struct PressureStall: Sendable, Equatable {
    /// One line of a pressure file.
    public struct Stall: Sendable, Equatable {
        /// Percent of time stalled, averaged over 10 s, 60 s and 300 s.
        public var avg10: Double
        public var avg60: Double
        public var avg300: Double
        /// Total stall time in microseconds since boot (or cgroup creation).
        public var total: UInt64

        public init(avg10: Double, avg60: Double, avg300: Double, total: UInt64) {
            self.avg10 = avg10
            self.avg60 = avg60
            self.avg300 = avg300
            self.total = total
        }
    }

    /// At least one task stalled.
    public var some: Stall
    /// All non-idle tasks stalled at once (present in every memory pressure file).
    public var full: Stall

    public init(some: Stall, full: Stall) {
        self.some = some
        self.full = full
    }

    /// Parses "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull ...".
    public init(parsing text: String, target: String = "/proc/pressure/memory") throws(SystemCallError) {
        var some: Stall?, full: Stall?
        for line in text.split(separator: "\n") where !line.isEmpty {
            let words = line.split(separator: " ")
            var fields: [Substring: Substring] = [:]
            for word in words.dropFirst() {
                let pair = word.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[pair[0]] = pair[1] }
            }
            guard let a10 = fields["avg10"].flatMap({ Double($0) }), let a60 = fields["avg60"].flatMap({ Double($0) }),
                  let a300 = fields["avg300"].flatMap({ Double($0) }), let total = fields["total"].flatMap({ UInt64($0) })
            else {
                throw SystemCallError.format(target, "Expected 'some|full avg10=X avg60=X avg300=X total=N', found '\(line.prefix(80))'.")
            }
            let stall = Stall(avg10: a10, avg60: a60, avg300: a300, total: total)
            switch words[0] {
            case "some": some = stall
            case "full": full = stall
            default: continue
            }
        }
        guard let some, let full else {
            throw SystemCallError.format(target, "Expected both a 'some' and a 'full' line (memory pressure files have both since Linux 4.20).")
        }
        self.init(some: some, full: full)
    }

    /// Reads a pressure file (default: the system's memory pressure).
    public static func read(_ path: String = "/proc/pressure/memory") throws(SystemCallError) -> PressureStall {
        let text = try KernelFile.read(path, fix: { code in
            code == .noSuchFileOrDirectory || code == .notSupported || code == .notSupportedOnSocket
                ? "PSI is off: boot with psi=1 (CONFIG_PSI), or on cgroup v2 enable cgroup.pressure." : KernelFile.defaultFix(code)
        })
        return try PressureStall(parsing: text, target: path)
    }
}

/// A PSI trigger: the kernel raises POLLPRI on the descriptor when tasks
/// stalled for at least `stall` µs within a `window` µs window. Owns the
/// descriptor; closing it (on release) removes the trigger.
///
/// It exists so the OOM engine can wake on pressure instead of sampling:
/// poll `rawValue` for POLLPRI alongside the memcg notifiers.
public final class PSITrigger: Sendable {
    /// Which stall the trigger counts.
    public enum Kind: String, Sendable { case some, full }

    /// The descriptor, for poll(2) with POLLPRI.
    public let rawValue: Int32
    public let path: String

    /// Opens `path` and writes "<kind> <stall_us> <window_us>\0".
    ///
    /// The kernel accepts windows from 500 ms to 10 s with stall ≤ window;
    /// without CAP_SYS_RESOURCE the window must also be a multiple of 2 s.
    /// Either violation is EINVAL (EPERM on some kernels), thrown with a fix
    /// that names the constraint.
    public init(path: String = "/proc/pressure/memory", kind: Kind = .some,
                stallMicroseconds: UInt64, windowMicroseconds: UInt64) throws(SystemCallError) {
        let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            throw SystemCallError(operation: "open", target: path, errno: code, fix: code == .noSuchFileOrDirectory
                ? "PSI is not available: boot with psi=1 (CONFIG_PSI), or give a cgroup v2 memory.pressure file."
                : KernelFile.defaultFix(code))
        }
        let request = "\(kind.rawValue) \(stallMicroseconds) \(windowMicroseconds)\0"
        do {
            try KernelFile.write(fd: fd, request, target: path, fix: { code in
                Self.fix(for: code, stall: stallMicroseconds, window: windowMicroseconds)
            })
        } catch {
            close(fd)
            var failed = error
            failed.operation = "write trigger '\(request.dropLast())'"
            throw failed
        }
        rawValue = fd
        self.path = path
    }

    static func fix(for code: Errno, stall: UInt64, window: UInt64) -> String? {
        switch code {
        case .invalidArgument, .notPermitted:
            var reasons: [String] = []
            if window < 500_000 || window > 10_000_000 { reasons.append("the window must be 500 ms to 10 s") }
            if stall == 0 || stall > window { reasons.append("the stall must be more than 0 and at most the window") }
            if !hasCapSysResource && window % 2_000_000 != 0 {
                reasons.append("without CAP_SYS_RESOURCE (which this process lacks) the window must be a multiple of 2 s")
            }
            if reasons.isEmpty { reasons.append("the kernel refused the trigger (window 500 ms to 10 s, stall at most the window; a multiple of 2 s without CAP_SYS_RESOURCE)") }
            let constraint = reasons.joined(separator: "; ")
            return "PSI trigger rejected: \(constraint). Use a window such as 2000000 µs (e.g. 'some 150000 2000000')."
        case .resourceBusy:
            return "This descriptor already has a trigger; open a new one per trigger."
        case .notSupported:
            return "PSI triggers are off for this file (cgroup.pressure disabled, or psi=0)."
        default:
            return KernelFile.defaultFix(code)
        }
    }

    /// CAP_SYS_RESOURCE (bit 24) in this process's effective capabilities.
    static var hasCapSysResource: Bool {
        guard let status = try? KernelFile.read("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingWhitespace(), radix: 16) else { return false }
        return mask & (1 << 24) != 0
    }

    /// True if the trigger fired since the last call (polls for POLLPRI
    /// without waiting; polling consumes the event). Also true with POLLERR,
    /// when the pressure file's cgroup was removed and the trigger is dead.
    public func fired() -> Bool {
        pollOne(rawValue, events: Int16(POLLPRI), timeoutMs: 0) & Int16(POLLPRI | POLLERR) != 0
    }

    deinit { close(rawValue) }
}

extension PSITrigger {
    /// Arms a trigger from a manifest's `[trigger] psi` spec.
    public convenience init(spec: PSITriggerSpec, path: String = "/proc/pressure/memory") throws(SystemCallError) {
        try self.init(path: path, kind: spec.full ? .full : .some,
                      stallMicroseconds: spec.stallMicroseconds, windowMicroseconds: spec.windowMicroseconds)
    }
}
