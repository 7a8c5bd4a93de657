import BPFKit
import SystemPackage
import TOMLKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Mode and scope

/// Whether a policy's decisions are carried out or only recorded.
///
/// `observe` lets a new policy run next to the kernel's default behaviour and
/// report what it would have done, so it can be trusted before it is enforced.
public enum PolicyMode: String, CaseIterable, Sendable, Codable {
    case enforce
    case observe
}

/// Which memory a policy governs: the whole system, or one cgroup subtree.
///
/// Manifests (`scope = ...`) and the command line (`--scope`) both name a scope
/// as text; this type is the one place that text is checked, so both accept
/// exactly the same spellings.
public enum ScopeSpec: Sendable, Hashable, CustomStringConvertible {
    /// Every task on the machine.
    case system
    /// One cgroup and its descendants. The path is absolute (e.g.
    /// `/sys/fs/cgroup/batch`) or relative to the cgroup mount (e.g. `batch/jobs`),
    /// with repeated, trailing and `.` separators removed.
    case cgroup(String)

    /// Why a scope string was rejected.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The text that was given.
        public var input: String
        /// What is wrong with it, e.g. "it contains a '..' component".
        public var problem: String

        public init(input: String, problem: String) {
            self.input = input
            self.problem = problem
        }

        public var description: String {
            "invalid scope \(ManifestError.quote(input)): \(problem); expected \(ScopeSpec.expectation)."
        }
    }

    /// What a scope must look like, for error messages.
    public static let expectation =
        "\"system\" or a cgroup path without '..' (absolute like \"/sys/fs/cgroup/batch\" or relative like \"batch/jobs\")"

    /// Parses `system` or a cgroup path. A cgroup literally named `system` can be
    /// written `./system`.
    public init(parsing text: String) throws(ParseError) {
        if text == "system" {
            self = .system
            return
        }
        if text.isEmpty { throw ParseError(input: text, problem: "it is empty") }
        if text.unicodeScalars.contains("\0") {
            throw ParseError(input: text, problem: "it contains a NUL character")
        }
        if text.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) {
            throw ParseError(input: text, problem: "it is blank")
        }
        let components = text.split(separator: "/", omittingEmptySubsequences: true)
        if components.contains("..") {
            throw ParseError(input: text, problem: "it contains a '..' component")
        }
        let kept = components.filter { $0 != "." }
        let absolute = text.hasPrefix("/")
        if kept.isEmpty {
            throw ParseError(
                input: text,
                problem: absolute
                    ? "it names the filesystem root, not a cgroup (use \"system\" for the whole machine)"
                    : "it names no cgroup")
        }
        self = .cgroup((absolute ? "/" : "") + kept.joined(separator: "/"))
    }

    /// `system`, or the cgroup path; parsing it gives back the same scope.
    public var description: String {
        switch self {
        case .system: return "system"
        case .cgroup(let path): return path == "system" ? "./system" : path
        }
    }
}

// MARK: - Guards and protection

/// Limits the daemon enforces on a running policy, each optional.
///
/// A BPF policy can be wrong in ways the verifier cannot see: too slow, too
/// trigger-happy, or making memory pressure worse. When a guard is breached the
/// daemon falls back to the kernel's default behaviour, so a bad policy costs a
/// little performance instead of the machine. `nil` means the daemon's default.
public struct GuardSettings: Sendable, Equatable {
    /// Time a decision may take before the kernel's default is used, in milliseconds (>= 1).
    public var deadlineMs: Int?
    /// OOM kills the policy may cause per minute (>= 0).
    public var maxKillsPerMinute: Int?
    /// Consecutive decisions that may fall back to the default before the policy is detached (>= 0).
    public var maxConsecutiveFallbacks: Int?
    /// Decisions the daemon may reject as invalid in any 60 s (>= 0).
    public var maxRejections: Int?
    /// Mean run time of the policy's callbacks over the last minute, in microseconds (>= 1).
    public var maxCallbackUs: Int?
    /// Highest tolerated refault ratio (refaulted / evicted pages), 0...1.
    public var maxRefaultRatio: Double?
    /// Lowest tolerated reclaim scan efficiency, 0...1.
    public var minScanEfficiency: Double?
    /// Highest tolerated PSI `some avg10` for memory, in percent, 0...100.
    public var maxPSISomeAvg10: Double?
    /// Consecutive measurement windows a limit must be breached before acting (>= 1).
    public var breachWindows: Int?
    /// Seconds to wait after a guard trips before the policy may be re-armed (>= 0).
    public var cooldownS: Int?
    /// Callbacks that may fail (BPF_PROG_RUN error, error return, malformed output) in any 60 s (>= 0).
    public var maxDecisionErrors: Int?
    /// Decisions that may overrun deadline_ms in any 60 s (>= 0).
    public var maxDeadlineMisses: Int?
    /// Memory the policy's BPF maps may hold, in KiB (>= 1).
    public var maxMapMemoryKB: Int?
    /// Mean run time of the policy's BPF programs (sensors and callbacks) in a window, in nanoseconds (>= 1).
    public var maxBPFNsPerRun: Int?
    /// The policy's BPF run time as a share of one CPU, in percent (> 0; above 100 on several CPUs).
    public var maxBPFCPUPercent: Double?
    /// Highest tolerated refaults per second per GiB of the scope's memory (>= 0).
    public var maxRefaultRatePerGiB: Double?

    public init(
        deadlineMs: Int? = nil, maxKillsPerMinute: Int? = nil, maxConsecutiveFallbacks: Int? = nil,
        maxRejections: Int? = nil, maxCallbackUs: Int? = nil, maxRefaultRatio: Double? = nil,
        minScanEfficiency: Double? = nil, maxPSISomeAvg10: Double? = nil, breachWindows: Int? = nil,
        cooldownS: Int? = nil, maxDecisionErrors: Int? = nil, maxDeadlineMisses: Int? = nil,
        maxMapMemoryKB: Int? = nil, maxBPFNsPerRun: Int? = nil, maxBPFCPUPercent: Double? = nil,
        maxRefaultRatePerGiB: Double? = nil
    ) {
        self.deadlineMs = deadlineMs
        self.maxKillsPerMinute = maxKillsPerMinute
        self.maxConsecutiveFallbacks = maxConsecutiveFallbacks
        self.maxRejections = maxRejections
        self.maxCallbackUs = maxCallbackUs
        self.maxRefaultRatio = maxRefaultRatio
        self.minScanEfficiency = minScanEfficiency
        self.maxPSISomeAvg10 = maxPSISomeAvg10
        self.breachWindows = breachWindows
        self.cooldownS = cooldownS
        self.maxDecisionErrors = maxDecisionErrors
        self.maxDeadlineMisses = maxDeadlineMisses
        self.maxMapMemoryKB = maxMapMemoryKB
        self.maxBPFNsPerRun = maxBPFNsPerRun
        self.maxBPFCPUPercent = maxBPFCPUPercent
        self.maxRefaultRatePerGiB = maxRefaultRatePerGiB
    }

    /// The keys a `[guards]` table may hold, in documentation order.
    public static let knownKeys = [
        "deadline_ms", "max_kills_per_minute", "max_consecutive_fallbacks", "max_rejections",
        "max_callback_us", "max_refault_ratio", "min_scan_efficiency", "max_psi_some_avg10",
        "breach_windows", "cooldown_s", "max_decision_errors", "max_deadline_misses",
        "max_map_memory_kb", "max_bpf_ns_per_run", "max_bpf_cpu_percent", "max_refault_rate_per_gib",
    ]
}

/// Tasks and cgroups a policy must never act against.
///
/// Keeps the machine reachable and manageable whatever a policy decides: an OOM
/// policy that picks `sshd` or something in `system.slice` has its choice
/// overridden by the daemon.
public struct ProtectList: Sendable, Equatable {
    /// Process names (`comm`, 1...15 bytes).
    public var comms: [String]
    /// Cgroup paths; a task in one of them or below it is protected.
    public var cgroups: [String]

    public init(comms: [String] = [], cgroups: [String] = []) {
        self.comms = comms
        self.cgroups = cgroups
    }

    /// The keys a `[protect]` table may hold.
    public static let knownKeys = ["comms", "cgroups"]

    /// Longest `comm` the kernel keeps (`TASK_COMM_LEN` - 1).
    public static let maxCommBytes = 15
}

/// When a scope counts as running out of memory before the kernel says so.
///
/// The kernel's OOM killer acts late, after reclaim has thrashed; these
/// settings let the daemon ask the policy earlier: at system scope when
/// MemAvailable and SwapFree fall below their thresholds (earlyoom's rule) or
/// a PSI trigger fires, and for a cgroup v2 scope when memory.current comes
/// within a headroom of memory.max. `nil` means the kind's default.
public struct TriggerSettings: Sendable, Equatable {
    /// Act when MemAvailable is at or below this percent of MemTotal (and swap is short too).
    public var memAvailablePercent: Double?
    /// ... and SwapFree is at or below this percent of SwapTotal (a system without swap counts as 0 %).
    public var swapFreePercent: Double?
    /// A PSI memory trigger that wakes the daemon; it acts if memory is also short.
    public var psi: PSITriggerSpec?
    /// cgroup v2: act when memory.current is within this percent of memory.max.
    public var memcgHeadroomPercent: Double?
    /// cgroup v2: raise the policy's next victim's oom_score_adj so that a kernel OOM kill agrees with it.
    public var steerOOMScoreAdj: Bool?

    public init(memAvailablePercent: Double? = nil, swapFreePercent: Double? = nil, psi: PSITriggerSpec? = nil,
                memcgHeadroomPercent: Double? = nil, steerOOMScoreAdj: Bool? = nil) {
        self.memAvailablePercent = memAvailablePercent
        self.swapFreePercent = swapFreePercent
        self.psi = psi
        self.memcgHeadroomPercent = memcgHeadroomPercent
        self.steerOOMScoreAdj = steerOOMScoreAdj
    }

    /// The keys a `[trigger]` table may hold.
    public static let knownKeys = [
        "mem_available_percent", "swap_free_percent", "psi", "memcg_headroom_percent", "steer_oom_score_adj",
    ]
}

/// A PSI trigger as the kernel takes it: "some|full STALL_US WINDOW_US".
public struct PSITriggerSpec: Sendable, Equatable, CustomStringConvertible {
    public var full: Bool
    public var stallMicroseconds: UInt64
    public var windowMicroseconds: UInt64

    public init(full: Bool, stallMicroseconds: UInt64, windowMicroseconds: UInt64) {
        self.full = full
        self.stallMicroseconds = stallMicroseconds
        self.windowMicroseconds = windowMicroseconds
    }

    /// Parses "some 150000 2000000"; nil unless the stall is positive and at most the window.
    public init?(parsing text: String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[0] == "some" || parts[0] == "full",
              let stall = UInt64(parts[1]), let window = UInt64(parts[2]), stall > 0, stall <= window else { return nil }
        self.init(full: parts[0] == "full", stallMicroseconds: stall, windowMicroseconds: window)
    }

    public var description: String { "\(full ? "full" : "some") \(stallMicroseconds) \(windowMicroseconds)" }
}

// MARK: - Manifest

/// One policy as declared in `policies/<name>.toml`: which BPF object to load,
/// what kind it is, where it applies, its parameters and its safety limits.
///
/// Manifests keep policies data rather than code: adding or retuning a policy
/// is a reviewed text change, and everything the daemon needs to load, scope
/// and guard a policy is checked here, up front, with errors that say how to
/// fix them.
public struct Manifest: Sendable, Equatable {
    /// The policy's name: 1...31 of `a-z`, `0-9`, `_`; equal to the file's name without `.toml`.
    public var name: String
    public var kind: PolicyKind
    /// A BPF object file name (looked up on the object search path) or a path to one.
    public var object: String
    /// What the policy does, for people.
    public var description: String
    public var scope: ScopeSpec
    public var mode: PolicyMode
    /// Values for the object's `const volatile` globals. Every key is also in ``paramOrder``.
    public var params: [String: ParameterValue]
    /// The keys of ``params`` in the order the file declares them.
    public var paramOrder: [String]
    public var guards: GuardSettings
    public var protect: ProtectList
    /// When the daemon asks the policy to decide (early triggers); `nil` fields take the kind's defaults.
    public var trigger: TriggerSettings = TriggerSettings()
    /// The file the manifest was read from.
    public var path: String

    public init(
        name: String, kind: PolicyKind, object: String, description: String,
        scope: ScopeSpec = .system, mode: PolicyMode = .enforce,
        params: [(String, ParameterValue)] = [], guards: GuardSettings = GuardSettings(),
        protect: ProtectList = ProtectList(), path: String = ""
    ) {
        self.name = name
        self.kind = kind
        self.object = object
        self.description = description
        self.scope = scope
        self.mode = mode
        self.params = [:]
        self.paramOrder = []
        self.guards = guards
        self.protect = protect
        self.path = path
        for (key, value) in params { setParam(key, to: value) }
    }

    /// The parameters in declaration order.
    public var orderedParams: [(name: String, value: ParameterValue)] {
        paramOrder.compactMap { key in params[key].map { (key, $0) } }
    }

    /// Sets a parameter (e.g. from `--set key=value`), keeping its place if it
    /// was already declared and appending it otherwise.
    public mutating func setParam(_ key: String, to value: ParameterValue) {
        if params.updateValue(value, forKey: key) == nil { paramOrder.append(key) }
    }

    /// The top-level keys a manifest may hold.
    public static let knownKeys = [
        "name", "kind", "object", "description", "scope", "mode", "params", "guards", "protect", "trigger",
    ]

    /// The top-level keys a manifest must hold.
    public static let requiredKeys = ["name", "kind", "object", "description"]

    /// Longest policy name.
    public static let maxNameLength = 31

    /// Manifest files larger than this are refused rather than read.
    static let maxFileBytes = 1 << 20

    /// Whether `name` is an acceptable policy name (`[a-z0-9_]{1,31}`).
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return !bytes.isEmpty && bytes.count <= maxNameLength
            && bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// Whether `key` is a C identifier, as a parameter name must be.
    public static func isCIdentifier(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard let first = bytes.first else { return false }
        func letter(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || b == 0x5F }
        return letter(first) && bytes.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    /// The name a manifest at `path` must have: its file name without `.toml`,
    /// or `nil` if the file name does not end in `.toml` (then any name is accepted).
    public static func expectedName(forPath path: String) -> String? {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        guard file.hasSuffix(".toml"), file.count > 5 else { return nil }
        return String(file.dropLast(5))
    }

    /// Reads and checks the manifest at `path`.
    public static func load(path: String) throws(ManifestError) -> Manifest {
        let bytes: [UInt8]
        switch readWholeFile(path, limit: maxFileBytes) {
        case .success(let data): bytes = data
        case .failure(let code): throw ManifestError(path: path, key: "", reason: .unreadable(errno: code.rawValue))
        }
        if let (line, column, problem) = firstEncodingProblem(bytes) {
            throw ManifestError(
                path: path, key: "", reason: .syntax(line: line, column: column, message: problem))
        }
        return try parse(toml: String(decoding: bytes, as: UTF8.self), path: path)
    }

    /// Checks the manifest text `toml`; `path` is where it came from, used for
    /// messages and the name check.
    public static func parse(toml: String, path: String) throws(ManifestError) -> Manifest {
        if let (line, column, problem) = firstEncodingProblem(Array(toml.utf8)) {
            throw ManifestError(
                path: path, key: "", reason: .syntax(line: line, column: column, message: problem))
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: toml)
        } catch let error as TOMLParseError {
            throw ManifestError(
                path: path, key: "",
                reason: .syntax(
                    line: error.source.begin.line, column: error.source.begin.column,
                    message: error.description))
        } catch {
            throw ManifestError(
                path: path, key: "", reason: .syntax(line: 0, column: 0, message: String(describing: error)))
        }
        return try ManifestReader(path: path, source: toml).read(root)
    }
}

// MARK: - Reading

/// Turns a parsed TOML table into a ``Manifest``, one key at a time.
private struct ManifestReader {
    let path: String
    let source: String

    func fail(_ key: [String], _ reason: ManifestError.Reason) -> ManifestError {
        ManifestError(path: path, key: ManifestError.keyPath(key), reason: reason)
    }

    /// Rejects any key of `table` not in `known`, in sorted order.
    func checkKeys(_ table: TOMLTable, at prefix: [String], known: [String]) throws(ManifestError) {
        for key in table.keys.sorted() where !known.contains(key) {
            throw fail(prefix + [key], .unknownKey(known: known))
        }
    }

    func read(_ root: TOMLTable) throws(ManifestError) -> Manifest {
        try checkKeys(root, at: [], known: Manifest.knownKeys)

        let nameRule = "a string of 1 to \(Manifest.maxNameLength) characters from a-z, 0-9 and _"
        let name = try requiredString(root, "name", expected: nameRule)
        guard Manifest.isValidName(name) else {
            throw fail(["name"], .invalidValue(expected: nameRule, found: found(name)))
        }
        if let stem = Manifest.expectedName(forPath: path), stem != name {
            throw fail(["name"], .nameMismatch(name: name, stem: stem))
        }

        let kinds = PolicyKind.allCases.map { ManifestError.quote($0.rawValue) }.joined(separator: ", ")
        let kindRule = "one of \(kinds)"
        let kindText = try requiredString(root, "kind", expected: "a string, \(kindRule)")
        guard let kind = PolicyKind(rawValue: kindText) else {
            throw fail(["kind"], .invalidValue(expected: kindRule, found: found(kindText)))
        }

        let objectRule = "a non-empty string: a BPF object file name (looked up on the object search path) or a path to one"
        let object = try requiredString(root, "object", expected: objectRule)
        if object.isEmpty || object.hasSuffix("/") || object.unicodeScalars.contains("\0") {
            throw fail(["object"], .invalidValue(expected: objectRule, found: found(object)))
        }

        let descriptionRule = "a non-empty string saying what the policy does"
        let description = try requiredString(root, "description", expected: descriptionRule)
        if description.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) {
            throw fail(["description"], .invalidValue(expected: descriptionRule, found: found(description)))
        }

        var scope = ScopeSpec.system
        if let value = root["scope"] {
            guard let text = value.string else {
                throw fail(["scope"], .wrongType(expected: "a string, \(ScopeSpec.expectation)", found: found(value)))
            }
            do {
                scope = try ScopeSpec(parsing: text)
            } catch {
                throw fail(
                    ["scope"],
                    .invalidValue(expected: ScopeSpec.expectation, found: "\(found(text)) (\(error.problem))"))
            }
        }

        var mode = PolicyMode.enforce
        if let value = root["mode"] {
            let modeRule = PolicyMode.allCases.map { ManifestError.quote($0.rawValue) }.joined(separator: " or ")
            guard let text = value.string else {
                throw fail(["mode"], .wrongType(expected: "a string, \(modeRule)", found: found(value)))
            }
            guard let parsed = PolicyMode(rawValue: text) else {
                throw fail(["mode"], .invalidValue(expected: modeRule, found: found(text)))
            }
            mode = parsed
        }

        var manifest = Manifest(
            name: name, kind: kind, object: object, description: description, scope: scope, mode: mode,
            path: path)
        if let value = root["params"] {
            for (key, param) in try readParams(value) { manifest.setParam(key, to: param) }
        }
        if let value = root["guards"] { manifest.guards = try readGuards(value) }
        if let value = root["protect"] { manifest.protect = try readProtect(value) }
        if let value = root["trigger"] { manifest.trigger = try readTrigger(value) }
        return manifest
    }

    func requiredString(_ table: TOMLTable, _ key: String, expected: String) throws(ManifestError) -> String {
        guard let value = table[key] else { throw fail([key], .missingKey(expected: expected)) }
        guard let text = value.string else {
            throw fail([key], .wrongType(expected: expected, found: found(value)))
        }
        return text
    }

    func table(_ value: TOMLValueConvertible, _ key: String) throws(ManifestError) -> TOMLTable {
        guard let table = value.table else {
            throw fail([key], .wrongType(expected: "a table ([\(key)])", found: found(value)))
        }
        return table
    }

    // MARK: params

    func readParams(_ value: TOMLValueConvertible) throws(ManifestError) -> [(String, ParameterValue)] {
        let params = try table(value, "params")
        let rule = "a C identifier (letters, digits and _, not starting with a digit), "
            + "because it sets the BPF object's global of the same name"
        for key in params.keys.sorted() where !Manifest.isCIdentifier(key) {
            throw fail(["params", key], .invalidKey(expected: rule))
        }
        var result: [String: ParameterValue] = [:]
        for key in params.keys.sorted() {
            let value = params[key]!
            let expected = "an integer, boolean or string (the value of the BPF global '\(key)')"
            switch value.type {
            case .int: result[key] = .integer(Int64(value.int!))
            case .bool: result[key] = .boolean(value.bool!)
            case .string: result[key] = .string(value.string!)
            default: throw fail(["params", key], .wrongType(expected: expected, found: found(value)))
            }
        }
        return declarationOrder(of: Array(result.keys), under: "params").map { ($0, result[$0]!) }
    }

    /// `keys` (all direct children of `table`) in the order the source declares them;
    /// any the scan cannot place come last, sorted.
    func declarationOrder(of keys: [String], under table: String) -> [String] {
        let wanted = Set(keys)
        var seen = Set<String>()
        var order: [String] = []
        for keyPath in TOMLKeyOrder.keyPaths(in: source)
        where keyPath.count == 2 && keyPath[0] == table && wanted.contains(keyPath[1]) {
            if seen.insert(keyPath[1]).inserted { order.append(keyPath[1]) }
        }
        return order + keys.filter { !seen.contains($0) }.sorted()
    }

    // MARK: guards

    func readGuards(_ value: TOMLValueConvertible) throws(ManifestError) -> GuardSettings {
        let guards = try table(value, "guards")
        try checkKeys(guards, at: ["guards"], known: GuardSettings.knownKeys)
        var settings = GuardSettings()
        for key in guards.keys.sorted() {
            let value = guards[key]!
            switch key {
            case "deadline_ms":
                settings.deadlineMs = try integer(value, key, min: 1, "an integer >= 1 (milliseconds)")
            case "max_kills_per_minute":
                settings.maxKillsPerMinute = try integer(value, key, min: 0, "an integer >= 0 (kills per minute)")
            case "max_consecutive_fallbacks":
                settings.maxConsecutiveFallbacks = try integer(value, key, min: 0, "an integer >= 0")
            case "max_rejections":
                settings.maxRejections = try integer(value, key, min: 0, "an integer >= 0")
            case "max_callback_us":
                settings.maxCallbackUs = try integer(value, key, min: 1, "an integer >= 1 (microseconds)")
            case "max_refault_ratio":
                settings.maxRefaultRatio = try number(value, key, in: 0...1, "a number from 0 to 1 (a ratio)")
            case "min_scan_efficiency":
                settings.minScanEfficiency = try number(value, key, in: 0...1, "a number from 0 to 1 (a ratio)")
            case "max_psi_some_avg10":
                settings.maxPSISomeAvg10 = try number(value, key, in: 0...100, "a number from 0 to 100 (percent)")
            case "breach_windows":
                settings.breachWindows = try integer(value, key, min: 1, "an integer >= 1")
            case "cooldown_s":
                settings.cooldownS = try integer(value, key, min: 0, "an integer >= 0 (seconds)")
            case "max_decision_errors":
                settings.maxDecisionErrors = try integer(value, key, min: 0, "an integer >= 0 (errors per minute)")
            case "max_deadline_misses":
                settings.maxDeadlineMisses = try integer(value, key, min: 0, "an integer >= 0 (misses per minute)")
            case "max_map_memory_kb":
                settings.maxMapMemoryKB = try integer(value, key, min: 1, "an integer >= 1 (KiB)")
            case "max_bpf_ns_per_run":
                settings.maxBPFNsPerRun = try integer(value, key, min: 1, "an integer >= 1 (nanoseconds)")
            case "max_bpf_cpu_percent":
                settings.maxBPFCPUPercent = try number(value, key, in: Double.leastNonzeroMagnitude...100_000, "a number above 0, at most 100000 (percent of one CPU)")
            case "max_refault_rate_per_gib":
                settings.maxRefaultRatePerGiB = try number(value, key, in: 0...1e12, "a number >= 0 (refaulted pages per second per GiB)")
            default:
                throw fail(["guards", key], .unknownKey(known: GuardSettings.knownKeys))
            }
        }
        return settings
    }

    func integer(_ value: TOMLValueConvertible, _ key: String, min: Int, _ rule: String,
                 table: String = "guards") throws(ManifestError) -> Int {
        guard let number = value.int else {
            throw fail([table, key], .wrongType(expected: rule, found: found(value)))
        }
        guard number >= min else {
            throw fail([table, key], .invalidValue(expected: rule, found: found(value)))
        }
        return number
    }

    func number(
        _ value: TOMLValueConvertible, _ key: String, in range: ClosedRange<Double>, _ rule: String,
        table: String = "guards"
    ) throws(ManifestError) -> Double {
        let number: Double
        if let double = value.double {
            number = double
        } else if let int = value.int {
            number = Double(int)
        } else {
            throw fail([table, key], .wrongType(expected: rule, found: found(value)))
        }
        guard range.contains(number) else {  // false for NaN too
            throw fail([table, key], .invalidValue(expected: rule, found: found(value)))
        }
        return number
    }

    // MARK: trigger

    func readTrigger(_ value: TOMLValueConvertible) throws(ManifestError) -> TriggerSettings {
        let trigger = try table(value, "trigger")
        try checkKeys(trigger, at: ["trigger"], known: TriggerSettings.knownKeys)
        var settings = TriggerSettings()
        for key in trigger.keys.sorted() {
            let value = trigger[key]!
            switch key {
            case "mem_available_percent":
                settings.memAvailablePercent = try number(value, key, in: 0...100, "a number from 0 to 100 (percent of MemTotal)", table: "trigger")
            case "swap_free_percent":
                settings.swapFreePercent = try number(value, key, in: 0...100, "a number from 0 to 100 (percent of SwapTotal)", table: "trigger")
            case "memcg_headroom_percent":
                settings.memcgHeadroomPercent = try number(value, key, in: 0...50, "a number from 0 to 50 (percent of memory.max)", table: "trigger")
            case "psi":
                let rule = "a PSI trigger \"some|full STALL_US WINDOW_US\", e.g. \"full 500000 2000000\""
                guard let text = value.string else { throw fail(["trigger", key], .wrongType(expected: rule, found: found(value))) }
                guard let psi = PSITriggerSpec(parsing: text) else {
                    throw fail(["trigger", key], .invalidValue(expected: rule, found: found(value)))
                }
                settings.psi = psi
            case "steer_oom_score_adj":
                guard let flag = value.bool else {
                    throw fail(["trigger", key], .wrongType(expected: "true or false", found: found(value)))
                }
                settings.steerOOMScoreAdj = flag
            default:
                throw fail(["trigger", key], .unknownKey(known: TriggerSettings.knownKeys))
            }
        }
        return settings
    }

    // MARK: protect

    func readProtect(_ value: TOMLValueConvertible) throws(ManifestError) -> ProtectList {
        let protect = try table(value, "protect")
        try checkKeys(protect, at: ["protect"], known: ProtectList.knownKeys)
        var list = ProtectList()
        let commRule = "a process name of 1 to \(ProtectList.maxCommBytes) bytes "
            + "(the kernel keeps only \(ProtectList.maxCommBytes) bytes of a task's comm)"
        if let value = protect["comms"] {
            list.comms = try strings(value, "comms", "an array of process names (strings)") { comm in
                (1...ProtectList.maxCommBytes).contains(comm.utf8.count) ? nil : commRule
            }
        }
        if let value = protect["cgroups"] {
            list.cgroups = try strings(value, "cgroups", "an array of cgroup paths (strings)") { cgroup in
                cgroup.isEmpty ? "a non-empty cgroup path" : nil
            }
        }
        return list
    }

    /// Reads an array of strings, `problem` giving the expectation an element fails, if any.
    func strings(
        _ value: TOMLValueConvertible, _ key: String, _ rule: String, problem: (String) -> String?
    ) throws(ManifestError) -> [String] {
        guard let array = value.array else {
            throw fail(["protect", key], .wrongType(expected: rule, found: found(value)))
        }
        var result: [String] = []
        for index in 0..<array.count {
            let element = array[index]
            let elementKey = "protect.\(ManifestError.keyPath([key]))[\(index)]"
            guard let text = element.string else {
                throw ManifestError(
                    path: path, key: elementKey, reason: .wrongType(expected: "a string", found: found(element)))
            }
            if let expected = problem(text) {
                throw ManifestError(
                    path: path, key: elementKey, reason: .invalidValue(expected: expected, found: found(text)))
            }
            result.append(text)
        }
        return result
    }

    // MARK: describing values

    func found(_ text: String) -> String {
        "string \(ManifestError.quote(text))"
    }

    func found(_ value: TOMLValueConvertible) -> String {
        func shortened(_ text: String) -> String {
            let flat = text.split(whereSeparator: { $0 == "\n" }).map { $0.trimmingSpaces }.joined(separator: " ")
            return flat.count > 64 ? String(flat.prefix(63)) + "…" : flat
        }
        switch value.type {
        case .string: return found(value.string ?? "")
        case .int: return "integer \(value.int ?? 0)"
        case .double: return "floating-point number \(value.double ?? 0)"
        case .bool: return "boolean \(value.bool ?? false)"
        case .array: return "array \(shortened(value.debugDescription))"
        case .table: return "a table"
        case .date: return "date \(shortened(value.debugDescription))"
        case .time: return "time \(shortened(value.debugDescription))"
        case .dateTime: return "date-time \(shortened(value.debugDescription))"
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }
}

// MARK: - File access

/// Reads a whole file, failing with an errno (EISDIR for a directory, EFBIG past `limit`).
private func readWholeFile(_ path: String, limit: Int) -> Result<[UInt8], Errno> {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return .failure(Errno(rawValue: errno)) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { return .failure(Errno(rawValue: errno)) }
    if info.st_mode & 0o170000 == 0o040000 { return .failure(.isDirectory) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            return .failure(Errno(rawValue: errno))
        }
        if count == 0 { return .success(bytes) }
        bytes += buffer[0..<count]
        if bytes.count > limit { return .failure(.fileTooLarge) }
    }
}

/// The position and nature of the first byte that makes `bytes` unusable as a
/// TOML document: invalid UTF-8, or a NUL (which would silently end the
/// document at the C boundary).
private func firstEncodingProblem(_ bytes: [UInt8]) -> (line: Int, column: Int, problem: String)? {
    var line = 1
    var column = 1
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .emptyInput:
            return nil
        case .error:
            return (line, column, "the file is not valid UTF-8 text")
        case .scalarValue(let scalar):
            if scalar == "\0" { return (line, column, "a NUL character (U+0000) is not allowed in a TOML document") }
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
    }
}

// MARK: - Key order

/// Recovers the order in which a TOML document declares its keys.
///
/// toml++ stores tables as sorted maps, so TOMLKit loses declaration order;
/// parameters are shown and applied in the order their author wrote them.
/// The scanner runs only over documents toml++ has already accepted, and
/// stops quietly at anything it does not understand; callers place any key it
/// missed after the ones it found.
private struct TOMLKeyOrder {
    private let bytes: [UInt8]
    private var index = 0
    private var found: [[String]] = []
    private var seen = Set<[String]>()

    private init(_ text: String) { bytes = Array(text.utf8) }

    /// Full key paths (table headers and keys) in order of first appearance.
    static func keyPaths(in text: String) -> [[String]] {
        var scanner = TOMLKeyOrder(text)
        scanner.scanDocument()
        return scanner.found
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func peek(_ offset: Int) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func record(_ path: [String]) {
        if seen.insert(path).inserted { found.append(path) }
    }

    private mutating func skipSpaces() {
        while let byte = current, byte == 0x20 || byte == 0x09 { index += 1 }
    }

    /// Skips spaces, newlines and comments.
    private mutating func skipTrivia() {
        while let byte = current {
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                index += 1
            } else if byte == UInt8(ascii: "#") {
                skipToLineEnd()
            } else {
                return
            }
        }
    }

    private mutating func skipToLineEnd() {
        while let byte = current, byte != 0x0A { index += 1 }
    }

    private mutating func scanDocument() {
        var table: [String] = []
        while true {
            skipTrivia()
            guard let byte = current else { return }
            let start = index
            if byte == UInt8(ascii: "[") {
                let arrayOfTables = peek(1) == UInt8(ascii: "[")
                index += arrayOfTables ? 2 : 1
                skipSpaces()
                guard let key = parseKey(), current == UInt8(ascii: "]") else { return }
                table = key
                record(key)
                index += arrayOfTables ? 2 : 1
            } else {
                guard let key = parseKey(), current == UInt8(ascii: "=") else { return }
                index += 1
                skipSpaces()
                record(table + key)
                guard skipValue(recordingUnder: table + key) else { return }
            }
            skipToLineEnd()
            if index == start { return }
        }
    }

    /// Parses a dotted key and the spaces after it.
    private mutating func parseKey() -> [String]? {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard let part = parseSimpleKey() else { return nil }
            parts.append(part)
            skipSpaces()
            guard current == UInt8(ascii: ".") else { return parts }
            index += 1
        }
    }

    private mutating func parseSimpleKey() -> String? {
        switch current {
        case UInt8(ascii: "\""): return parseBasicString()
        case UInt8(ascii: "'"): return parseLiteralString()
        default:
            let start = index
            while let byte = current,
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x5F || byte == 0x2D || byte >= 0x80
            {
                index += 1
            }
            return index > start ? String(decoding: bytes[start..<index], as: UTF8.self) : nil
        }
    }

    /// Parses a single-line `"..."` string, decoding escapes.
    private mutating func parseBasicString() -> String? {
        index += 1
        var out: [UInt8] = []
        while let byte = current {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escape = current else { return nil }
                index += 1
                switch escape {
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "e"): out.append(0x1B)
                case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let digits = escape == UInt8(ascii: "x") ? 2 : escape == UInt8(ascii: "u") ? 4 : 8
                    guard index + digits <= bytes.count,
                        let value = UInt32(String(decoding: bytes[index..<index + digits], as: UTF8.self), radix: 16),
                        let scalar = Unicode.Scalar(value)
                    else { return nil }
                    index += digits
                    out += Array(String(Character(scalar)).utf8)
                default: out.append(escape)
                }
            case 0x0A:
                return nil
            default:
                out.append(byte)
            }
        }
        return nil
    }

    private mutating func parseLiteralString() -> String? {
        index += 1
        let start = index
        while let byte = current, byte != UInt8(ascii: "'"), byte != 0x0A { index += 1 }
        guard current == UInt8(ascii: "'") else { return nil }
        defer { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// Skips a multi-line string whose opening triple `quote` is at `index`.
    private mutating func skipMultilineString(_ quote: UInt8) -> Bool {
        index += 3
        while let byte = current {
            if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                index += 2
            } else if byte == quote && peek(1) == quote && peek(2) == quote {
                index += 3
                var extra = 0
                while extra < 2, current == quote {
                    index += 1
                    extra += 1
                }
                return true
            } else {
                index += 1
            }
        }
        return false
    }

    /// Skips one value, recording the keys of inline tables under `prefix` (nil: don't record).
    private mutating func skipValue(recordingUnder prefix: [String]?) -> Bool {
        guard let byte = current else { return false }
        switch byte {
        case UInt8(ascii: "\""):
            if peek(1) == byte && peek(2) == byte { return skipMultilineString(byte) }
            return parseBasicString() != nil
        case UInt8(ascii: "'"):
            if peek(1) == byte && peek(2) == byte { return skipMultilineString(byte) }
            return parseLiteralString() != nil
        case UInt8(ascii: "["):
            index += 1
            while true {
                skipTrivia()
                guard let next = current else { return false }
                if next == UInt8(ascii: "]") {
                    index += 1
                    return true
                }
                if next == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                let start = index
                guard skipValue(recordingUnder: nil), index > start else { return false }
            }
        case UInt8(ascii: "{"):
            index += 1
            while true {
                skipTrivia()
                guard let next = current else { return false }
                if next == UInt8(ascii: "}") {
                    index += 1
                    return true
                }
                if next == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard let key = parseKey(), current == UInt8(ascii: "=") else { return false }
                index += 1
                skipSpaces()
                let full = prefix.map { $0 + key }
                if let full { record(full) }
                guard skipValue(recordingUnder: full) else { return false }
                // A date-time with a space is two scalar chunks.
                skipSpaces()
                while let more = current, more != UInt8(ascii: ","), more != UInt8(ascii: "}"),
                    more != UInt8(ascii: "#"), more != 0x0A, more != 0x0D
                {
                    guard skipScalar() else { return false }
                    skipSpaces()
                }
            }
        default:
            return skipScalar()
        }
    }

    /// Skips a number, boolean or date chunk.
    private mutating func skipScalar() -> Bool {
        let start = index
        while let byte = current, byte != UInt8(ascii: ","), byte != UInt8(ascii: "]"), byte != UInt8(ascii: "}"),
            byte != UInt8(ascii: "#"), byte != 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D
        {
            index += 1
        }
        return index > start
    }
}
