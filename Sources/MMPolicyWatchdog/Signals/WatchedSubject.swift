import BPFKit
import MMPolicyCore

/// Where a watched policy's memory signals come from: the whole system
/// (/proc/vmstat, /proc/pressure/memory, MemTotal) or one memory cgroup's
/// files.
public enum SignalScope: Sendable, Hashable, Codable, CustomStringConvertible {
    case system
    case memcgV1(path: String)
    case memcgV2(path: String)

    /// The scope a policy was resolved to.
    public init(_ resolved: ResolvedScope) {
        guard let path = resolved.cgroupPath, let mount = resolved.mount else {
            self = .system
            return
        }
        self = mount.version == .v1 ? .memcgV1(path: path) : .memcgV2(path: path)
    }

    public var description: String {
        switch self {
        case .system: return "system"
        case .memcgV1(let path), .memcgV2(let path): return path
        }
    }
}

/// One BPF program of a watched policy, named by its descriptor.
///
/// The sampler reads its run count and run time (BPF_ENABLE_STATS must be
/// held, e.g. by a ``BPFKit/BPFStatsSession``, for them to move). The
/// descriptor belongs to the policy's object: unregister the subject before
/// the object is closed.
public struct WatchedProgram: Sendable, Equatable {
    /// A callback runs at the kind's decision points (BPF_PROG_RUN); a sensor
    /// runs on its tracepoint or iterator.
    public enum Role: String, Sendable, Codable { case callback, sensor }

    public var name: String
    public var role: Role
    public var fd: Int32

    public init(name: String, role: Role, fd: Int32) {
        self.name = name
        self.role = role
        self.fd = fd
    }
}

/// One BPF map of a watched policy; its charged memory is the `memlock:` of
/// its fdinfo.
public struct WatchedMap: Sendable, Equatable {
    public var name: String
    public var fd: Int32

    public init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
    }
}

/// A loaded policy as the signal sampler sees it: what to call it, its kind
/// and scope, its programs and maps, and how to ask its decision loop for
/// its ``DecisionHealth``.
public struct WatchedSubject: Sendable {
    /// The policy's name; the key of its windows.
    public var name: String
    public var kind: PolicyKind
    public var scope: SignalScope
    public var programs: [WatchedProgram]
    public var maps: [WatchedMap]
    /// The decision loop's cumulative counts, asked once per window. Called
    /// on the sampling thread; it must be cheap and must not block.
    public var health: @Sendable () -> DecisionHealth

    public init(name: String, kind: PolicyKind, scope: SignalScope, programs: [WatchedProgram] = [], maps: [WatchedMap] = [],
                health: @escaping @Sendable () -> DecisionHealth = { DecisionHealth() }) {
        self.name = name
        self.kind = kind
        self.scope = scope
        self.programs = programs
        self.maps = maps
        self.health = health
    }

    /// A loaded policy's subject: every loaded program (callbacks are those
    /// its ops table binds) and every map of its object.
    public init(policy: Policy, scope: ResolvedScope, health: @escaping @Sendable () -> DecisionHealth = { DecisionHealth() }) {
        let callbacks = Set(policy.ops.callbacks.map(\.program))
        let programs = policy.object.programs.compactMap { program in
            program.fd.map { WatchedProgram(name: program.name, role: callbacks.contains(program.name) ? .callback : .sensor, fd: $0) }
        }
        let maps = policy.object.maps.compactMap { map in map.fd.map { WatchedMap(name: map.name, fd: $0) } }
        self.init(name: policy.name, kind: policy.ops.kind, scope: SignalScope(scope), programs: programs, maps: maps, health: health)
    }
}
