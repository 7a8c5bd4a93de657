import ArgumentParser
import BPFKit
import Logging
import MMPolicyCore
import MMPolicyDaemon

#if canImport(Glibc)
import Glibc
#endif

/// Options of every command that talks to the daemon.
struct DaemonConnectionOptions: ParsableArguments {
    @Option(name: .customLong("socket"), help: "The daemon's control socket (default: $MMPOLICY_SOCKET or \(DaemonDefaults.socketPath)).")
    var socketPath: String?

    var client: ControlClient {
        let path = socketPath ?? getenv("MMPOLICY_SOCKET").map { String(cString: $0) } ?? DaemonDefaults.socketPath
        return ControlClient(socketPath: path)
    }

    /// Sends `request`; a refusal or a transport error becomes the command's error.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        let response: ControlResponse
        do { response = try client.send(request) } catch { throw CommandError("\(error)") }
        guard response.ok else { throw CommandError(response.error ?? "the daemon refused the request without saying why.") }
        return response
    }
}

/// `mmpolicy daemon`: the service itself, in the foreground.
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the mmpolicy daemon in the foreground: load the desired policy set, serve the control socket, act on decisions. SIGTERM or SIGINT unloads everything and restores every knob.",
        discussion: """
            One daemon per state directory: it locks <state-dir>/daemon.lock for its whole life (a second daemon on \
            the same directory waits 3 s, then exits with an error naming the first).

            Before it changes any kernel knob, the daemon starts its guardian, a small process \
            (`mmpolicy-guard` in ps, pid in the log) in a session of its own that outlives it. If the daemon dies \
            without a clean shutdown (SIGKILL, a crash, the OOM killer), the guardian restores every journaled \
            knob within milliseconds, first oom_kill_disable=0 on every memcg whose kernel OOM killer the daemon \
            had turned off, records it in the audit trail (`mmpolicy events`) and exits. After a graceful stop it \
            simply exits. A daemon started again on the same state directory takes over: whichever of it and the \
            old guardian gets the lock first restores, and the guardian never undoes a newer daemon's work. \
            See docs/guardian.md.
            """)

    @Option(name: .customLong("socket"), help: "Control socket path.") var socketPath = DaemonDefaults.socketPath
    @Option(name: .customLong("state-dir"), help: "State directory (SQLite database).") var stateDirectory = DaemonDefaults.stateDirectory
    @OptionGroup var location: PolicyLocationOptions
    @Option(name: .customLong("defaults"), help: "Policy set loaded on first start (default: default.toml in the policy directory).")
    var defaultSet: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"

    func run() async throws {
        guard geteuid() == 0 else {
            throw CommandError("mmpolicy daemon must run as root: it loads BPF programs, writes memory cgroup files and kills processes. Run it with sudo.")
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw CommandError("--log-level '\(logLevel)' is not a level: use trace, debug, info, notice, warning, error or critical.")
        }
        let directory = try location.directory()
        var defaults = defaultSet
        if defaults == nil {
            let candidate = directory + "/" + PolicyCatalog.setFileName
            if access(candidate, R_OK) == 0 { defaults = candidate }
        }
        if let defaults { _ = try PolicySet.load(path: defaults) }  // refuse a broken set before starting
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mmpolicy")
        let configuration = DaemonConfiguration(socketPath: socketPath, stateDirectory: stateDirectory,
                                                policyDirectory: directory, defaultSetPath: defaults)
        try await DaemonService.runUntilSignalled(configuration: configuration, version: MMPolicyCommand.version, logger: logger)
    }
}

/// `mmpolicy load`.
struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Ask the daemon to load a policy: verify it, attach it to its scope, and keep it loaded across daemon restarts.")

    @Argument(help: "A policy name from the daemon's policy directory (see `mmpolicy list`), or a path to a manifest.") var policy: String
    @Option(help: "Where it applies: system, or a memory cgroup path (default: the manifest's scope).") var scope: String?
    @Option(help: "enforce (carry decisions out) or observe (record them only); default: the manifest's mode.") var mode: String?
    @Option(name: .customLong("set"), help: "Override a parameter, key=value (repeatable).") var assignments: [ParameterAssignment] = []
    @Option(help: "Load it under this name (to run one policy on several scopes).") var name: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        var policyReference = policy
        // A manifest path is read by the daemon: make it absolute.
        if policy.contains("/") && !policy.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: 4097)
            if getcwd(&buffer, buffer.count) != nil { policyReference = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + "/" + policy }
        }
        if let mode, PolicyMode(rawValue: mode) == nil {
            throw CommandError("--mode '\(mode)' is not a mode: use enforce or observe.")
        }
        let request = ControlRequest(command: .load, load: LoadRequest(
            policy: policyReference, scope: scope, mode: mode,
            overrides: assignments.map { ParameterOverride(key: $0.key, value: $0.text) }, alias: name))
        let response = try connection.send(request)
        guard let status = response.policies?.first else { throw CommandError("the daemon answered without the loaded policy's status.") }
        if json { try printJSON(status) } else {
            print("loaded \(status.name) (\(status.kind)) on \(status.scope) in \(status.mode) mode from \(status.objectPath)")
        }
    }
}

/// `mmpolicy unload`.
struct UnloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unload", abstract: "Ask the daemon to unload a policy and restore every knob it changed.")

    @Argument(help: "The loaded policy's name (see `mmpolicy status`).") var name: String
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        _ = try connection.send(ControlRequest(command: .unload, name: name))
        print("unloaded \(name)")
    }
}

/// `mmpolicy status`.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the daemon and every loaded policy: scope, mode, uptime, decisions, rejections, fallbacks, BPF run time.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    struct Output: Encodable { var daemon: DaemonInfo?; var policies: [PolicyStatus] }

    func run() throws {
        let response = try connection.send(ControlRequest(command: .status))
        let policies = response.policies ?? []
        if json { return try printJSON(Output(daemon: response.daemon, policies: policies)) }
        if let daemon = response.daemon {
            print("mmpolicy daemon \(daemon.version), pid \(daemon.pid), up \(formatDuration(Double(wallClockNanoseconds() - daemon.startedNs) / 1e9)), state \(daemon.stateDirectory)")
        }
        guard !policies.isEmpty else { return print("no policies loaded (load one with `mmpolicy load NAME`)") }
        print(table(["NAME", "KIND", "SCOPE", "MODE", "UPTIME", "DECISIONS", "ENFORCED", "REJECTED", "FALLBACKS", "AGREE", "BPF RUNS", "BPF TIME"],
                    policies.map { p in
                        [p.name, p.kind, p.scope, p.mode, formatDuration(p.uptimeSeconds), String(p.decisions), String(p.enforced),
                         String(p.rejections), String(p.fallbacks), p.mode == "observe" ? "\(p.agreements)/\(p.agreements + p.disagreements)" : "-",
                         String(p.bpfRunCount), p.bpfRunCount == 0 ? "-" : "\(decimalString(Double(p.bpfRunTimeNs) / 1000, places: 1)) us"]
                    }))
        for p in policies {
            if let last = p.lastDecision { print("  \(p.name) last decision \(formatTime(last.timeNs)): \(last.summary)") }
        }
    }
}

/// `mmpolicy events`.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Show the audit trail: decisions (with their latency breakdown), kernel kills, loads and unloads.")

    @Option(help: "Only this policy's events.") var policy: String?
    @Option(help: "Only events newer than this: 30s, 10m, 2h, 1d.") var since: EventAge?
    @Option(help: "At most this many (the newest).") var limit = 100
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        let sinceNs = since.map { wallClockNanoseconds() - Int64($0.seconds * 1e9) }
        let response = try connection.send(ControlRequest(command: .events, query: EventQuery(policy: policy, sinceNs: sinceNs, limit: limit)))
        let events = response.events ?? []
        if json { return try printJSON(events) }
        guard !events.isEmpty else { return print("no events") }
        for event in events {
            print("\(formatTime(event.timeNs))  \(event.type.rawValue.padding(10))  \((event.policy ?? "-").padding(12))  \(event.summary)")
        }
    }
}

/// A duration such as 30s, 10m, 2h or 1d (plain numbers are seconds).
struct EventAge: ExpressibleByArgument {
    var seconds: Double
    init?(argument: String) {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = Substring(argument), factor = 1.0
        if let last = text.last, let unit = units[last] { factor = unit; text = text.dropLast() }
        guard let value = Double(text), value >= 0 else { return nil }
        seconds = value * factor
    }
}

/// "2026-11-22 10:15:03.123" in UTC.
func formatTime(_ ns: Int64) -> String {
    var seconds = time_t(ns / 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let ms = Int(ns / 1_000_000 % 1000)
    let millis = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)"
}

/// "3d4h", "2h5m", "4m10s", "12s".
func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds)
    if s >= 86400 { return "\(s / 86400)d\(s % 86400 / 3600)h" }
    if s >= 3600 { return "\(s / 3600)h\(s % 3600 / 60)m" }
    if s >= 60 { return "\(s / 60)m\(s % 60)s" }
    return "\(s)s"
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
