import MMPolicyCore

/// The control socket's protocol, version 2 (version 2: decision records
/// are envelopes with a per-kind payload; status counts outcomes in
/// `decisions`).
///
/// A client connects to the daemon's Unix stream socket, writes one request
/// as a single line of JSON (UTF-8, ending in "\n", at most 1 MiB), reads one
/// response line, and closes. Only root may connect (the daemon checks the
/// peer with SO_PEERCRED). Unknown fields are ignored, so fields can be added
/// without a version bump; removing or changing one bumps `version`.
public enum ControlProtocol {
    public static let version = 2
    public static let maxMessageBytes = 1 << 20
}

/// A request to the daemon.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        /// Is the daemon up? Answers `daemon`.
        case ping
        /// Load a policy (`load`); answers `policies` with the loaded one.
        case load
        /// Unload policy `name`.
        case unload
        /// Every loaded policy (`policies`) and `daemon`.
        case status
        /// The audit trail (`events`), filtered by `query`.
        case events
        /// Set up zram swap as `zram` says (`mmpolicy tier setup-zram`);
        /// answers `zram` with the device.
        case setupZram
        /// Tear down zram swap mmpolicy set up on request (`zram.device`);
        /// answers `zram` with what was done.
        case teardownZram
        /// The slow tier (`tier`): swap areas and mmpolicy's zram devices.
        case tierStatus
    }

    public var version: Int
    public var command: Command
    public var load: LoadRequest?
    /// For `unload`.
    public var name: String?
    /// For `events`.
    public var query: EventQuery?
    /// For `status`: also send up to this many recent watchdog windows per policy.
    public var history: Int?
    /// For `setupZram` and `teardownZram`.
    public var zram: ZramRequest?

    public init(command: Command, load: LoadRequest? = nil, name: String? = nil, query: EventQuery? = nil, history: Int? = nil,
                zram: ZramRequest? = nil) {
        self.version = ControlProtocol.version
        self.command = command
        self.load = load
        self.name = name
        self.query = query
        self.history = history
        self.zram = zram
    }
}

/// `mmpolicy load`'s arguments.
public struct LoadRequest: Codable, Sendable, Equatable {
    /// A policy name from the daemon's policy directory, or a manifest path.
    public var policy: String
    /// "system" or a cgroup path; nil = the manifest's scope.
    public var scope: String?
    /// "enforce" or "observe"; nil = the manifest's mode.
    public var mode: String?
    /// Parameter overrides; optional in a request (absent = none).
    public var overrides: [ParameterOverride]
    /// Name to load it under (to run one policy on several scopes); nil = the manifest's name.
    public var alias: String?
    /// Load it even while it is cooling down after the watchdog ejected it.
    public var force: Bool?

    public init(policy: String, scope: String? = nil, mode: String? = nil, overrides: [ParameterOverride] = [], alias: String? = nil,
                force: Bool? = nil) {
        self.policy = policy
        self.scope = scope
        self.mode = mode
        self.overrides = overrides
        self.alias = alias
        self.force = force
    }
}

extension LoadRequest {
    private enum CodingKeys: String, CodingKey { case policy, scope, mode, overrides, alias, force }

    /// `overrides` may be left out (none); every other optional field too.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(policy: try container.decode(String.self, forKey: .policy),
                  scope: try container.decodeIfPresent(String.self, forKey: .scope),
                  mode: try container.decodeIfPresent(String.self, forKey: .mode),
                  overrides: try container.decodeIfPresent([ParameterOverride].self, forKey: .overrides) ?? [],
                  alias: try container.decodeIfPresent(String.self, forKey: .alias),
                  force: try container.decodeIfPresent(Bool.self, forKey: .force))
    }
}

/// Which events to return, newest last.
public struct EventQuery: Codable, Sendable, Equatable {
    public var policy: String?
    /// Only events at or after this wall-clock time (ns since the epoch).
    public var sinceNs: Int64?
    public var limit: Int?

    public init(policy: String? = nil, sinceNs: Int64? = nil, limit: Int? = nil) {
        self.policy = policy
        self.sinceNs = sinceNs
        self.limit = limit
    }
}

/// The daemon's answer. `error` is set exactly when `ok` is false.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var version: Int
    public var ok: Bool
    /// One paragraph naming what went wrong and the fix.
    public var error: String?
    public var daemon: DaemonInfo?
    public var policies: [PolicyStatus]?
    public var events: [EventRecord]?
    /// `status`: the latest watchdog exit of each policy ejected in the last
    /// day that is not loaded now (a loaded policy's is in its status).
    public var exits: [EventRecord]?
    /// `status`: what the watchdog costs.
    public var watchdog: WatchdogCost?
    /// `status`: policies of the desired set that did not load (at start-up)
    /// and have not been loaded or unloaded since. Absent when there are none.
    public var failedPolicies: [FailedPolicy]?
    /// `status`: audit events the daemon could not store since it started
    /// (a failed database write: full disk, a damaged file). Absent when none.
    public var lostEvents: Int?
    /// `status`: what is wrong with the state database now (a damaged file
    /// moved aside, a knob journal or desired set that cannot be read or
    /// written), oldest first. Absent when nothing is.
    public var stateProblems: [StateProblem]?
    /// `setupZram`, `teardownZram`: the device set up or torn down.
    public var zram: ZramSetupStatus?
    /// `tierStatus`: the slow tier.
    public var tier: TierStatus?

    public init(ok: Bool = true, error: String? = nil, daemon: DaemonInfo? = nil,
                policies: [PolicyStatus]? = nil, events: [EventRecord]? = nil, exits: [EventRecord]? = nil,
                watchdog: WatchdogCost? = nil, failedPolicies: [FailedPolicy]? = nil) {
        self.version = ControlProtocol.version
        self.ok = ok
        self.error = error
        self.daemon = daemon
        self.policies = policies
        self.events = events
        self.exits = exits
        self.watchdog = watchdog
        self.failedPolicies = failedPolicies
    }

    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message) }
}

/// A policy of the desired set the daemon could not load: what was asked
/// for, and why it failed.
public struct FailedPolicy: Codable, Sendable, Equatable {
    /// The name it was to be loaded under.
    public var name: String
    /// The policy reference (a name in the policy directory, or a manifest path).
    public var source: String
    /// "system" or a cgroup path, as desired.
    public var scope: String
    public var mode: String
    /// The one-paragraph error naming what is wrong and the fix.
    public var error: String
    /// When the load failed (wall clock, ns since the epoch).
    public var failedNs: Int64

    public init(name: String, source: String, scope: String, mode: String, error: String, failedNs: Int64) {
        self.name = name
        self.source = source
        self.scope = scope
        self.mode = mode
        self.error = error
        self.failedNs = failedNs
    }
}

/// Something wrong with the daemon's state database, as `status` reports it.
///
/// It exists so that a failure of the store the daemon's safety rests on
/// (the knob journal) or of what it remembers (the desired set) is in front
/// of the operator, not only in the log.
public struct StateProblem: Codable, Sendable, Equatable {
    /// "database" (the file: damaged, moved aside), "journal" (the knob
    /// journal), "desired-set" or "events" (the audit trail).
    public var area: String
    /// One paragraph: what failed, what the daemon did about it, the fix.
    public var message: String
    /// When it was first seen (wall clock, ns since the epoch).
    public var sinceNs: Int64
    /// How many operations have failed this way since (1 for a finding at start-up).
    public var failures: Int

    public init(area: String, message: String, sinceNs: Int64, failures: Int) {
        self.area = area
        self.message = message
        self.sinceNs = sinceNs
        self.failures = failures
    }
}

/// The daemon itself.
public struct DaemonInfo: Codable, Sendable, Equatable {
    public var pid: Int32
    public var version: String
    public var startedNs: Int64
    public var socketPath: String
    public var stateDirectory: String

    public init(pid: Int32, version: String, startedNs: Int64, socketPath: String, stateDirectory: String) {
        self.pid = pid
        self.version = version
        self.startedNs = startedNs
        self.socketPath = socketPath
        self.stateDirectory = stateDirectory
    }
}

/// One loaded policy as `mmpolicy status` shows it. The same fields for
/// every kind: what a decision came to is the envelope's outcome, counted.
public struct PolicyStatus: Codable, Sendable, Equatable {
    public var name: String
    public var kind: String
    public var scope: String
    public var mode: String
    public var objectPath: String
    public var loadedNs: Int64
    public var uptimeSeconds: Double
    /// The policy's decisions since it was loaded, by outcome (observe mode:
    /// with agreements and disagreements with the kernel's own choice).
    public var decisions: DecisionCounts
    public var lastDecision: EventRecord?
    /// Summed over the policy's programs (needs bpf_stats_enabled for time).
    public var bpfRunCount: UInt64
    public var bpfRunTimeNs: UInt64
    public var parameters: [ParameterOverride]
    /// The watchdog's latest window and guards (and history, if asked for).
    public var watchdog: WatchdogPolicyStatus?
    /// The last time the watchdog ejected a policy of this name, if ever.
    public var lastExit: EventRecord?
    /// Why the policy is not wholly in force as its mode says, one sentence
    /// each (e.g. an enforce policy whose engine left the kernel OOM killer
    /// on in a memcg because the knob journal could not be written). Absent
    /// when it is.
    public var degraded: [String]?
    /// What the policy has done in its kind's own figures (e.g. tiering:
    /// bytes demoted, memory saved). Absent when the kind reports none.
    public var figures: [KindFigure]?

    public init(name: String, kind: String, scope: String, mode: String, objectPath: String, loadedNs: Int64,
                uptimeSeconds: Double, decisions: DecisionCounts = DecisionCounts(), lastDecision: EventRecord? = nil,
                bpfRunCount: UInt64 = 0, bpfRunTimeNs: UInt64 = 0, parameters: [ParameterOverride] = [],
                watchdog: WatchdogPolicyStatus? = nil, lastExit: EventRecord? = nil, degraded: [String]? = nil,
                figures: [KindFigure]? = nil) {
        self.name = name
        self.kind = kind
        self.scope = scope
        self.mode = mode
        self.objectPath = objectPath
        self.loadedNs = loadedNs
        self.uptimeSeconds = uptimeSeconds
        self.decisions = decisions
        self.lastDecision = lastDecision
        self.bpfRunCount = bpfRunCount
        self.bpfRunTimeNs = bpfRunTimeNs
        self.parameters = parameters
        self.watchdog = watchdog
        self.lastExit = lastExit
        self.degraded = degraded
        self.figures = figures
    }
}
