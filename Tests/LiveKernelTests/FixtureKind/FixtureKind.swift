import BPFKit
import MMPolicyCore
import Synchronization

/// A kind that exists only in this test target: the proof that a new kind is
/// a folder plus a registry line. Every `period_ms` (its own manifest
/// section `[fixture]`) it runs each attached policy's `plan` callback, which
/// answers with a short list of (pid, op, value) actions; the engine checks
/// them (the pid is alive and not pid 1 or the daemon, the op is known) and
/// hands valid ones to ``FixtureActuator``, which only records them.
///
/// Nothing in the daemon, store, watchdog, control protocol or CLI knows it:
/// the fixture test loads it into an in-process daemon with
/// `KindRegistry.builtIn.adding(FixtureKind())` and drives it through load,
/// decisions, status, events, a watchdog ejection and unload.
struct FixtureKind: PolicyKindDefinition {
    static let name = PolicyKind(rawValue: "fixture")
    /// `MMPOLICY_KIND_FIXTURE` in Tests/Fixtures/bpf/fixture_kind.bpf.c, in the test range of ids.
    static let abiID: UInt32 = 0x8001

    let actuator: FixtureActuator

    init(actuator: FixtureActuator = FixtureActuator()) { self.actuator = actuator }

    var kind: PolicyKind { Self.name }
    var abiID: UInt32 { Self.abiID }
    var summary: String { "test-only: a periodic kind whose plan callback returns actions a recorder keeps" }
    var callbacks: [CallbackSlot] { [CallbackSlot(name: "plan", required: true)] }
    var manifestSections: [String] { ["fixture"] }
    var guardDefaults: [String: GuardDefault] {
        ["max_consecutive_fallbacks": GuardDefault(5, reason: "a periodic kind: a skipped round costs nothing, five in a row means the policy stopped answering")]
    }

    func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)? {
        guard reader.has("fixture") else { return nil }
        try reader.checkKeys(section: "fixture", known: ["period_ms"])
        let period = try reader.integer("fixture", "period_ms", in: 10...60_000,
                                        "an integer from 10 to 60000 (milliseconds between rounds)")
        return FixtureSettings(periodMs: period ?? FixtureSettings.defaults.periodMs)
    }

    func makeEngine(_ environment: KindEnvironment) throws -> any KindEngine {
        try FixtureEngine(environment: environment, actuator: actuator)
    }

    func summarize(_ record: DecisionRecord) -> String {
        let payload = record.payload.decode(FixturePayload.self)
        let actions = payload.map { "\($0.actions.count) action(s) \($0.actions.map { "op \($0.op) on pid \($0.pid) = \($0.value)" }.joined(separator: ", "))" } ?? "?"
        let round = payload.map { "round \($0.round)" } ?? "a round"
        let detail = record.detail.isEmpty ? "" : ": \(record.detail)"
        switch record.outcome {
        case .carriedOut: return "\(round): applied \(actions)"
        case .observed: return "\(round): would apply \(actions) (observe)"
        case .rejected: return "\(round): rejected \(actions)\(detail)"
        case .fellBack: return "\(round): nothing applied\(detail)"
        case .error: return "\(round): plan failed\(detail)"
        }
    }
}

/// `[fixture]`: how often the engine runs the policy.
struct FixtureSettings: KindManifestSettings, Equatable {
    var periodMs: Int
    static let defaults = FixtureSettings(periodMs: 100)
}

/// The fixture kind's decision payload.
struct FixturePayload: DecisionPayloadBody {
    static let version = 1
    struct Action: Codable, Sendable, Equatable {
        var pid: UInt32
        var op: UInt32
        var value: UInt64
    }
    var round: UInt64
    var actions: [Action]
}

/// Where the fixture kind's valid actions go: a list the test reads.
final class FixtureActuator: Sendable {
    struct Applied: Sendable, Equatable {
        var policy: String
        var action: FixturePayload.Action
    }

    private let applied = Mutex<[Applied]>([])

    func apply(_ actions: [FixturePayload.Action], policy: String) {
        applied.withLock { $0 += actions.map { Applied(policy: policy, action: $0) } }
    }

    var all: [Applied] { applied.withLock { $0 } }

    func count(policy: String) -> Int { all.filter { $0.policy == policy }.count }
}
