import BPFKit

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

// MARK: - Protection

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

    /// The `cgroups` entry that covers cgroup directory `path`, if any. An
    /// entry may be absolute or relative to the hierarchy's root (`mount`).
    public func cgroupEntry(containing path: String, mount: MemoryCgroupMount?) -> String? {
        cgroups.first { CgroupTree.isWithin(path, Self.absolute($0, mount: mount)) }
    }

    /// The `cgroups` entries that cover cgroup directory `path` or groups
    /// below it: what reclaim of `path`'s whole subtree would reach.
    public func cgroupEntries(reachedFrom path: String, mount: MemoryCgroupMount?) -> [String] {
        cgroups.filter { entry in
            let absolute = Self.absolute(entry, mount: mount)
            return CgroupTree.isWithin(path, absolute) || CgroupTree.isWithin(absolute, path)
        }
    }

    /// Entry `entry` as an absolute path: as it is, or read against the hierarchy's root.
    static func absolute(_ entry: String, mount: MemoryCgroupMount?) -> String {
        let root = mount.map { $0.path.hasSuffix("/") ? String($0.path.dropLast()) : $0.path } ?? ""
        return entry.hasPrefix("/") && (root.isEmpty || entry.hasPrefix(root + "/")) ? entry
            : root + "/" + entry.drop(while: { $0 == "/" })
    }
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
    /// Values for the object's `const volatile` globals.
    public var params: [String: ParameterValue]
    public var guards: GuardSettings
    public var protect: ProtectList
    /// What the kind read from its own sections (e.g. oom's `[trigger]`);
    /// nil when the manifest has none of them, and the kind's defaults apply.
    public var kindSettings: (any KindManifestSettings)?
    /// The file the manifest was read from.
    public var path: String

    public init(
        name: String, kind: PolicyKind, object: String, description: String,
        scope: ScopeSpec = .system, mode: PolicyMode = .enforce,
        params: [(String, ParameterValue)] = [], guards: GuardSettings = GuardSettings(),
        protect: ProtectList = ProtectList(), kindSettings: (any KindManifestSettings)? = nil, path: String = ""
    ) {
        self.name = name
        self.kind = kind
        self.object = object
        self.description = description
        self.scope = scope
        self.mode = mode
        self.params = [:]
        self.guards = guards
        self.protect = protect
        self.kindSettings = kindSettings
        self.path = path
        for (key, value) in params { setParam(key, to: value) }
    }

    public static func == (a: Manifest, b: Manifest) -> Bool {
        let sameKindSettings: Bool
        switch (a.kindSettings, b.kindSettings) {
        case (nil, nil): sameKindSettings = true
        case (let x?, let y?): sameKindSettings = x.isEqual(to: y)
        default: sameKindSettings = false
        }
        return sameKindSettings && a.name == b.name && a.kind == b.kind && a.object == b.object
            && a.description == b.description && a.scope == b.scope && a.mode == b.mode && a.params == b.params
            && a.guards == b.guards && a.protect == b.protect && a.path == b.path
    }

    /// The parameters sorted by name. Parameters are independent globals of
    /// the object, so the order they are set in does not matter; a fixed one
    /// keeps output and logs stable.
    public var orderedParams: [(name: String, value: ParameterValue)] {
        params.keys.sorted().map { ($0, params[$0]!) }
    }

    /// Sets a parameter (e.g. from `--set key=value`).
    public mutating func setParam(_ key: String, to value: ParameterValue) {
        params[key] = value
    }

    /// The top-level keys every manifest may hold; a kind adds its own
    /// sections (``PolicyKindDefinition/manifestSections``).
    public static let knownKeys = [
        "name", "kind", "object", "description", "scope", "mode", "params", "guards", "protect",
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

    /// Reads and checks the manifest at `path`; `kinds` are the kinds it may be of.
    public static func load(path: String, kinds: KindRegistry) throws(ManifestError) -> Manifest {
        try parse(bytes: try readBytes(path: path), path: path, kinds: kinds)
    }

    /// The bytes of the manifest file at `path` (at most 1 MiB, not a directory).
    static func readBytes(path: String) throws(ManifestError) -> [UInt8] {
        switch readWholeFile(path, limit: maxFileBytes) {
        case .success(let data): return data
        case .failure(let code): throw ManifestError(path: path, key: "", reason: .unreadable(errno: code.rawValue))
        }
    }

    /// Checks the manifest file content `bytes` read from `path`.
    static func parse(bytes: [UInt8], path: String, kinds: KindRegistry) throws(ManifestError) -> Manifest {
        if let (line, column, problem) = firstEncodingProblem(bytes) {
            throw ManifestError(
                path: path, key: "", reason: .syntax(line: line, column: column, message: problem))
        }
        return try parse(toml: String(decoding: bytes, as: UTF8.self), path: path, kinds: kinds)
    }

    /// Checks the manifest text `toml`; `path` is where it came from, used for
    /// messages and the name check; `kinds` are the kinds it may be of.
    public static func parse(toml: String, path: String, kinds: KindRegistry) throws(ManifestError) -> Manifest {
        let values = TOMLValues(path: path)
        return try ManifestReader(values: values, kinds: kinds).read(values.parseDocument(toml))
    }
}
