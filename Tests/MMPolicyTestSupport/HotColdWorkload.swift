#if canImport(Glibc)
import Glibc
#endif

/// `mmpolicy-workload hotcold` for a test: a process with a hot part (written
/// over and over), a cold part (written once) and optionally an
/// incompressible part (random bytes, written once) of known addresses, each
/// starting on a 2 MiB boundary (a tiering region) with 4 KiB pages. Killed
/// and reaped when released.
///
/// It exists so that tiering tests can say which regions of a real process
/// are hot and which are cold, and make every page of it fault again on
/// demand (``touchAll()``), for exact counts.
public final class HotColdWorkload {
    public let process: ChildProcess
    public var pid: Int32 { process.pid }
    /// The hot part: its first byte and length (length 0: none).
    public let hot: (start: UInt64, bytes: UInt64)
    /// The cold part.
    public let cold: (start: UInt64, bytes: UInt64)
    /// The incompressible part (random bytes, touched once; length 0: none).
    public let incompressible: (start: UInt64, bytes: UInt64)

    /// Starts `hotcold --hot hotBytes --cold coldBytes --interval-ms intervalMs`
    /// (with `--untouched`: nothing is touched until the first ``touchAll()``;
    /// with `incompressibleBytes`, `--incompressible` too).
    public init(hotBytes: UInt64, coldBytes: UInt64, incompressibleBytes: UInt64? = nil, intervalMs: Int = 10,
                untouched: Bool = false, extra: [String] = []) throws {
        let arguments = ["hotcold", "--hot", String(hotBytes), "--cold", String(coldBytes), "--interval-ms", String(intervalMs)]
            + (incompressibleBytes.map { ["--incompressible", String($0)] } ?? []) + (untouched ? ["--untouched"] : []) + extra
        process = try ChildProcess(TestPaths.product("mmpolicy-workload"), arguments, waitFor: nil)
        let line = try process.readLine(timeoutSeconds: 20)
        guard let parts = Self.parseReady(line) else {
            throw ChildProcessError.unexpectedOutput(path: "mmpolicy-workload hotcold", line: line)
        }
        (hot, cold, incompressible) = (parts.hot, parts.cold, parts.incompressible)
    }

    /// The parts of a ready line,
    /// `ready <pid> hot 0x<start> <bytes> cold 0x<start> <bytes> [incompressible 0x<start> <bytes>]`;
    /// nil if it is not one. A line without the third part has an empty one.
    public static func parseReady(_ line: String)
        -> (pid: Int32, hot: (start: UInt64, bytes: UInt64), cold: (start: UInt64, bytes: UInt64),
            incompressible: (start: UInt64, bytes: UInt64))? {
        let words = line.split(separator: " ")
        func part(_ index: Int, _ name: String) -> (start: UInt64, bytes: UInt64)? {
            guard index + 2 < words.count, words[index] == name, words[index + 1].hasPrefix("0x"),
                  let start = UInt64(words[index + 1].dropFirst(2), radix: 16), let bytes = UInt64(words[index + 2])
            else { return nil }
            return (start, bytes)
        }
        guard words.count == 8 || words.count == 11, words[0] == "ready", let pid = Int32(words[1]),
              let hot = part(2, "hot"), let cold = part(5, "cold") else { return nil }
        guard words.count == 11 else { return (pid, hot, cold, (0, 0)) }
        guard let incompressible = part(8, "incompressible") else { return nil }
        return (pid, hot, cold, incompressible)
    }

    /// Has it write every page of both parts once (SIGUSR1) and waits until
    /// it has; returns how many pages it wrote.
    @discardableResult
    public func touchAll(timeoutSeconds: Double = 60) throws -> Int {
        kill(pid, SIGUSR1)
        let line = try process.readLine(timeoutSeconds: timeoutSeconds)
        guard line.hasPrefix("touched "), let pages = Int(line.dropFirst(8)) else {
            throw ChildProcessError.unexpectedOutput(path: "mmpolicy-workload hotcold", line: line)
        }
        return pages
    }

    /// Has it write both parts to a memfd (SIGUSR2): the kernel reads every
    /// page, and a page paged out faults back in kernel mode, without a user
    /// page fault. Returns how many pages it copied.
    @discardableResult
    public func copyAll(timeoutSeconds: Double = 60) throws -> Int {
        kill(pid, SIGUSR2)
        let line = try process.readLine(timeoutSeconds: timeoutSeconds)
        guard line.hasPrefix("copied "), let pages = Int(line.dropFirst(7)) else {
            throw ChildProcessError.unexpectedOutput(path: "mmpolicy-workload hotcold", line: line)
        }
        return pages
    }

    /// The 2 MiB regions (address >> 21) the part covers.
    public static func regions(of part: (start: UInt64, bytes: UInt64)) -> [UInt64] {
        guard part.bytes > 0 else { return [] }
        return Array((part.start >> 21)...((part.start + part.bytes - 1) >> 21))
    }
}
