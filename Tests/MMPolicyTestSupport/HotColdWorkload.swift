#if canImport(Glibc)
import Glibc
#endif

/// `mmpolicy-workload hotcold` for a test: a process with a hot part (written
/// over and over) and a cold part (written once) of known addresses, each
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

    /// Starts `hotcold --hot hotBytes --cold coldBytes --interval-ms intervalMs`
    /// (with `--untouched`: nothing is touched until the first ``touchAll()``).
    public init(hotBytes: UInt64, coldBytes: UInt64, intervalMs: Int = 10, untouched: Bool = false,
                extra: [String] = []) throws {
        let arguments = ["hotcold", "--hot", String(hotBytes), "--cold", String(coldBytes), "--interval-ms", String(intervalMs)]
            + (untouched ? ["--untouched"] : []) + extra
        process = try ChildProcess(TestPaths.product("mmpolicy-workload"), arguments, waitFor: nil)
        // ready <pid> hot 0x<start> <bytes> cold 0x<start> <bytes>
        let line = try process.readLine(timeoutSeconds: 20)
        let words = line.split(separator: " ")
        func number(_ index: Int, hex: Bool) -> UInt64? {
            guard index < words.count else { return nil }
            return hex ? UInt64(words[index].dropFirst(2), radix: 16) : UInt64(words[index])
        }
        guard words.count == 8, words[0] == "ready", words[2] == "hot", words[5] == "cold",
              let hotStart = number(3, hex: true), let hotBytes = number(4, hex: false),
              let coldStart = number(6, hex: true), let coldBytes = number(7, hex: false)
        else { throw ChildProcessError.unexpectedOutput(path: "mmpolicy-workload hotcold", line: line) }
        hot = (hotStart, hotBytes)
        cold = (coldStart, coldBytes)
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
