// The tiering benchmark's contenders and its workload processes
// (`mmpolicy-workload tierload`): where their parts are, and their hot
// loops' reports.
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// One way of deciding which memory leaves RAM, run on the same workload
/// as every other.
///
/// Exists so that the harness treats every policy alike: a policy
/// contender is only "a daemon loads policies/NAME.toml in enforce mode
/// with the run's memcg as scope", so a new policy is measured by naming
/// it in `--contenders`.
enum TierContender: Equatable, Hashable, CustomStringConvertible {
    /// Nothing moves: the slowdown baseline.
    case none
    /// memory.limit_in_bytes at the hot sets x 1.1 plus the processes'
    /// other memory: the oracle an operator who knows the working set would
    /// set; the kernel's LRU picks the pages.
    case staticLimit
    /// `mmpolicy load NAME --scope MEMCG --mode enforce` on a daemon of the benchmark's own.
    case policy(String)

    init(parsing text: String) {
        switch text {
        case "none": self = .none
        case "static": self = .staticLimit
        default: self = .policy(text)
        }
    }

    var description: String {
        switch self {
        case .none: "none"
        case .staticLimit: "static"
        case .policy(let name): name
        }
    }

    var policyName: String? {
        if case .policy(let name) = self { return name }
        return nil
    }

    /// Throws, saying what is missing, unless the contender can run: a
    /// policy needs its manifest in `policies` and the object it names in `objects`.
    func checkAvailable(policies: String, objects: String) throws {
        guard let name = policyName else { return }
        let manifest = policies + "/" + name + ".toml"
        let hint = "(has the policy landed in this tree, and did `make bpf` build it?); choose the contenders with --contenders, e.g. --contenders none,static,tier_cold"
        guard let text = readSmallFile(manifest) else {
            throw BenchError("contender \(name): no manifest \(manifest) \(hint)")
        }
        let objectLine = text.split(separator: "\n").first { String($0).trimmed(" \t").hasPrefix("object") && $0.contains("=") }
        guard let objectLine, let object = objectLine.split(separator: "=", maxSplits: 1).last.map({ String($0).trimmed(" \t\"") }),
              !object.isEmpty else {
            throw BenchError("contender \(name): \(manifest) names no object")
        }
        let path = object.hasPrefix("/") ? object : objects + "/" + object
        guard access(path, R_OK) == 0 else { throw BenchError("contender \(name): no policy object \(path) \(hint)") }
        guard text.contains("kind = \"tiering\"") else { throw BenchError("contender \(name): \(manifest) is not a tiering policy") }
    }
}

/// The three parts of a workload process's memory.
enum TierPart: String, CaseIterable {
    case hot, cold, incompressible
}

/// One `mmpolicy-workload tierload` process: its parts' address ranges and
/// its hot loop's reports (touches and the loop thread's CPU time).
final class TierWorkload {
    /// One `tput` line.
    struct Report {
        var ns: UInt64
        var touches: UInt64
        var cpuNs: UInt64
    }

    let process: ChildProcess
    let parts: [TierPart: AddressRange]
    private(set) var reports: [Report] = []
    var pid: pid_t { process.pid }

    /// Starts one process; `init(waitingFor:)` then waits until it is ready.
    /// Several started first and waited for after fill their memory at once.
    static func start(workload: String, hot: String, cold: String, incompressible: String, dutyPercent: Int, memcg: String?) throws -> ChildProcess {
        try ChildProcess(workload, ["tierload", "--hot", hot, "--cold", cold, "--incompressible", incompressible,
                                    "--duty-percent", String(dutyPercent), "--report-ms", "1000"] + (memcg.map { ["--cgroup", $0] } ?? []))
    }

    init(waitingFor process: ChildProcess) throws {
        self.process = process
        guard let line = process.readLine(timeoutMs: 60_000), line.hasPrefix("ready") else {
            process.kill(SIGKILL)
            throw BenchError("mmpolicy-workload tierload (pid \(process.pid)) did not become ready: \(process.wait(timeoutMs: 1000).map(describeStatus) ?? "still running")")
        }
        // ready <pid> hot 0x<start> <bytes> cold 0x<start> <bytes> incompressible 0x<start> <bytes>
        let words = line.split(separator: " ").map(String.init)
        var parts: [TierPart: AddressRange] = [:]
        var i = 2
        while i + 2 < words.count {
            if let part = TierPart(rawValue: words[i]), let start = UInt64(words[i + 1].dropFirst(2), radix: 16), let bytes = UInt64(words[i + 2]) {
                parts[part] = AddressRange(start: start, length: bytes)
            }
            i += 3
        }
        guard parts.count == TierPart.allCases.count else { throw BenchError("unexpected ready line of tierload: \(line)") }
        self.parts = parts
    }

    /// Reads the reports printed since the last call.
    func poll() {
        for line in process.availableLines() where line.hasPrefix("tput ") {
            let words = line.split(separator: " ")
            if words.count == 4, let ns = UInt64(words[1]), let touches = UInt64(words[2]), let cpu = UInt64(words[3]) {
                reports.append(Report(ns: ns, touches: touches, cpuNs: cpu))
            }
        }
    }

    /// The first report at or after `ns`.
    func report(atOrAfter ns: UInt64) -> Report? { reports.first { $0.ns >= ns } }

    /// Where each part's pages are now (pagemap).
    func residency() throws -> [TierPart: PageResidency] {
        var result: [TierPart: PageResidency] = [:]
        for (part, range) in parts { result[part] = try PageResidency.read(process.pidfd, ranges: [range]) }
        return result
    }

    /// Throws if the process has exited.
    func checkAlive() throws {
        if let status = process.reapIfExited() {
            throw BenchError("workload pid \(pid) exited during the run (\(describeStatus(status)))")
        }
    }
}
