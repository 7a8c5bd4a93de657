import ArgumentParser
import BPFKit
import Logging
import MMPolicyCore
import MMPolicyKinds
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

            The audit trail (`mmpolicy events`) keeps 30 days and at most 100,000 events by default \
            (--event-retention-days, --event-retention-count; 0 lifts a limit); older events are deleted in \
            the background after writes, at most once a minute or every 1,000 events. It records what the \
            daemon is responsible for: kernel OOM kills in memory cgroups no loaded policy governs are left out \
            unless --record-ungoverned-kills is given.
            """)

    @Option(name: .customLong("socket"), help: "Control socket path.") var socketPath = DaemonDefaults.socketPath
    @Option(name: .customLong("state-dir"), help: "State directory (SQLite database).") var stateDirectory = DaemonDefaults.stateDirectory
    @OptionGroup var location: PolicyLocationOptions
    @Option(name: .customLong("defaults"), help: "Policy set loaded on first start (default: default.toml in the policy directory).")
    var defaultSet: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @Option(name: .customLong("watchdog-window-ms"), help: "The watchdog's sampling window, milliseconds (guards trip after breach_windows of them).")
    var watchdogWindowMs = 1000
    @Option(name: .customLong("event-retention-days"), help: "Delete audit events older than this many days (0: no age limit).")
    var eventRetentionDays = EventRetention.defaultDays
    @Option(name: .customLong("event-retention-count"), help: "Keep at most this many audit events, the newest (0: no count limit).")
    var eventRetentionCount = EventRetention.defaultCount
    @Flag(name: .customLong("record-ungoverned-kills"), help: "Also record kernel OOM kills in memory cgroups no loaded policy governs (default: only kills in governed scopes).")
    var recordUngovernedKills = false

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
        guard (100...60_000).contains(watchdogWindowMs) else {
            throw CommandError("--watchdog-window-ms \(watchdogWindowMs) is out of range: use 100 to 60000 (default 1000).")
        }
        guard eventRetentionDays >= 0, eventRetentionDays <= 36_500 else {
            throw CommandError("--event-retention-days \(eventRetentionDays) is out of range: use 0 (no age limit) to 36500 (default \(EventRetention.defaultDays)).")
        }
        guard eventRetentionCount >= 0 else {
            throw CommandError("--event-retention-count \(eventRetentionCount) is negative: use 0 (no count limit) or more (default \(EventRetention.defaultCount)).")
        }
        let retention = EventRetention(days: eventRetentionDays == 0 ? nil : eventRetentionDays,
                                       count: eventRetentionCount == 0 ? nil : eventRetentionCount)
        let configuration = DaemonConfiguration(socketPath: socketPath, stateDirectory: stateDirectory,
                                                policyDirectory: directory, defaultSetPath: defaults,
                                                watchdogWindowMs: watchdogWindowMs, kinds: .builtIn,
                                                eventRetention: retention, recordsUngovernedEvents: recordUngovernedKills)
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
    @Flag(help: "Load it even while it cools down after the watchdog ejected it.") var force = false
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
            overrides: assignments.map { ParameterOverride(key: $0.key, value: $0.text) }, alias: name,
            force: force ? true : nil))
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
        commandName: "status", abstract: "Show the daemon and every loaded policy: scope, mode, uptime, decisions by outcome, BPF run time, the watchdog's signals and guards, and the last exit.")

    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "A live view: each policy's recent watchdog windows, refreshed every window until interrupted (with --json, one JSON object per line).")
    var watch = false
    @Option(help: "With --watch: windows shown per policy.") var history = 10
    @Option(help: "With --watch: stop after this many refreshes (default: never).") var count: Int?
    @OptionGroup var connection: DaemonConnectionOptions

    struct Output: Encodable {
        var daemon: DaemonInfo?
        var watchdog: WatchdogCost?
        var policies: [PolicyStatus]
        var recentExits: [EventRecord]
        var failedPolicies: [FailedPolicy]
        var lostEvents: Int
        var stateProblems: [StateProblem]
    }

    func validate() throws {
        guard (1...300).contains(history) else { throw ValidationError("--history must be in 1...300") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        guard watch else { return try show(connection.send(ControlRequest(command: .status))) }
        var shown = 0
        while count.map({ shown < $0 }) ?? true {
            let response = try connection.send(ControlRequest(command: .status, history: history))
            if json {
                try printJSON(output(response), pretty: false)
            } else {
                print("\u{1B}[H\u{1B}[2J", terminator: "")  // home, clear screen
                print(render(response))
                for policy in response.policies ?? [] {
                    print("\n\(policy.name) (\(policy.scope), \(policy.mode)), last \(policy.watchdog?.history?.count ?? 0) windows, newest last:")
                    print(WatchdogView.historyTable(policy, nowNs: monotonicNanoseconds()))
                }
            }
            fflush(nil)  // every stream: the view must appear now, not when the buffer fills
            shown += 1
            if count.map({ shown >= $0 }) ?? false { break }
            let window = response.watchdog?.windowSeconds ?? 1
            usleep(UInt32(max(0.1, window) * 1_000_000))
        }
    }

    func output(_ response: ControlResponse) -> Output {
        Output(daemon: response.daemon, watchdog: response.watchdog, policies: response.policies ?? [],
               recentExits: response.exits ?? [], failedPolicies: response.failedPolicies ?? [],
               lostEvents: response.lostEvents ?? 0, stateProblems: response.stateProblems ?? [])
    }

    func show(_ response: ControlResponse) throws {
        if json { return try printJSON(output(response)) }
        print(render(response))
    }

    func render(_ response: ControlResponse) -> String {
        var lines: [String] = []
        let policies = response.policies ?? []
        if let daemon = response.daemon {
            var line = "mmpolicy daemon \(daemon.version), pid \(daemon.pid), up \(durationString(seconds: Double(wallClockNanoseconds() - daemon.startedNs) / 1e9)), state \(daemon.stateDirectory)"
            if let cost = response.watchdog {
                line += "; watchdog: \(decimalString(cost.windowSeconds, places: 1)) s windows, \(decimalString(cost.cpuPercent, places: 3)) % of a CPU"
            }
            lines.append(line)
        }
        // First after the daemon's line: the store the daemon's safety rests on is not what it should be.
        let problems = response.stateProblems ?? []
        if !problems.isEmpty {
            lines.append("STATE DATABASE PROBLEMS (\(problems.count); the log has the details):")
            for problem in problems {
                let times = problem.failures > 1 ? ", \(problem.failures) failures" : ""
                lines.append("  [\(problem.area)] since \(formatTime(problem.sinceNs))\(times): \(problem.message)")
            }
        }
        if let lost = response.lostEvents, lost > 0 {
            lines.append("WARNING: \(lost) audit event(s) could not be stored since the daemon started (see its log): free space in the state directory or repair its database")
        }
        let exits = response.exits ?? []
        if !exits.isEmpty {
            lines.append("recently ejected by the watchdog (not loaded):")
            lines += exits.map { "  " + WatchdogView.exitLine($0) }
        }
        let failures = response.failedPolicies ?? []
        if !failures.isEmpty {
            lines.append("desired but not loaded (fix and `mmpolicy load`, or `mmpolicy unload NAME` to stop wanting it):")
            for failure in failures {
                lines.append("  \(failure.name) (\(failure.source), scope \(failure.scope), \(failure.mode)) failed \(formatTime(failure.failedNs)): \(failure.error)")
            }
        }
        guard !policies.isEmpty else {
            lines.append("no policies loaded (load one with `mmpolicy load NAME`)")
            return lines.joined(separator: "\n")
        }
        lines.append(table(["NAME", "KIND", "SCOPE", "MODE", "UPTIME", "DECISIONS", "CARRIED OUT", "REJECTED", "FELL BACK", "ERRORS", "AGREE", "BPF RUNS", "BPF TIME"],
                    policies.map { p in
                        let d = p.decisions
                        return [p.name, p.kind, p.scope, p.degraded == nil ? p.mode : p.mode + " (DEGRADED)", durationString(seconds: p.uptimeSeconds), String(d.total), String(d.carriedOut),
                                String(d.rejected), String(d.fellBack), String(d.errors),
                                d.agreements + d.disagreements > 0 ? "\(d.agreements)/\(d.agreements + d.disagreements)" : "-",
                                String(p.bpfRunCount), p.bpfRunCount == 0 ? "-" : "\(decimalString(Double(p.bpfRunTimeNs) / 1000, places: 1)) us"]
                    }))
        for p in policies {
            for reason in p.degraded ?? [] { lines.append("  \(p.name) is DEGRADED, not wholly \(p.mode): \(reason)") }
        }
        for p in policies {
            if let figures = p.figures { lines.append("  \(p.name): " + figures.map(\.text).joined(separator: ", ")) }
        }
        for p in policies {
            if let last = p.lastDecision { lines.append("  \(p.name) last decision \(formatTime(last.timeNs)): \(last.summary)") }
        }
        lines.append("watchdog, last window:")
        lines.append(WatchdogView.latestTable(policies))
        for p in policies {
            if let exit = p.lastExit { lines.append("  \(p.name) last exit: " + WatchdogView.exitLine(exit)) }
        }
        return lines.joined(separator: "\n")
    }
}

/// `mmpolicy events`.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Show the audit trail: decisions (with their latency breakdown), kernel actions, loads, unloads and watchdog exits. With --json, each decision is an envelope (kind, trigger, scope, mode, outcome, timing) around the kind's payload; docs/control-protocol.md lists the fields.")

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

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
