import Foundation
import GRDB
import MMPolicyCore

/// How a policy's decisions ended, for `mmpolicy status`: the envelope's
/// outcomes counted, whatever the kind.
public struct DecisionCounts: Codable, Sendable, Equatable {
    public var total: Int
    public var carriedOut: Int
    public var observed: Int
    public var rejected: Int
    public var fellBack: Int
    public var errors: Int
    /// Observed decisions that matched the kernel's own choice.
    public var agreements: Int
    /// Observed decisions where the kernel chose otherwise.
    public var disagreements: Int

    public init(total: Int = 0, carriedOut: Int = 0, observed: Int = 0, rejected: Int = 0, fellBack: Int = 0, errors: Int = 0,
                agreements: Int = 0, disagreements: Int = 0) {
        self.total = total
        self.carriedOut = carriedOut
        self.observed = observed
        self.rejected = rejected
        self.fellBack = fellBack
        self.errors = errors
        self.agreements = agreements
        self.disagreements = disagreements
    }
}


// MARK: - Rows

/// `desired_policy` row; `overrides` is stored as JSON by GRDB's Codable support.
struct DesiredPolicyRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "desired_policy"
    var name: String
    var source: String
    var scope: String
    var mode: String
    var overrides: [ParameterOverride]
    var addedNs: Int64

    enum CodingKeys: String, CodingKey {
        case name, source, scope, mode, overrides
        case addedNs = "added_ns"
    }

    enum Columns {
        static let name = Column(CodingKeys.name)
        static let addedNs = Column(CodingKeys.addedNs)
    }

    init(_ p: DesiredPolicy) {
        name = p.name
        source = p.source
        scope = p.scope
        mode = p.mode
        overrides = p.overrides
        addedNs = p.addedNs
    }

    var policy: DesiredPolicy {
        DesiredPolicy(name: name, source: source, scope: scope, mode: mode, overrides: overrides, addedNs: addedNs)
    }
}

/// `event` row; `decision` is stored as JSON, its outcome and agreement also in columns of their own.
struct EventRow: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "event"
    var id: Int64?
    var timeNs: Int64
    var type: EventRecord.EventType
    var policy: String?
    var summary: String
    var decision: DecisionRecord?
    var decisionOutcome: DecisionRecord.Outcome?
    var agreement: Bool?
    var exit: PolicyExit?

    enum CodingKeys: String, CodingKey {
        case id, type, policy, summary, decision, agreement, exit
        case timeNs = "time_ns"
        case decisionOutcome = "decision_outcome"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let timeNs = Column(CodingKeys.timeNs)
        static let type = Column(CodingKeys.type)
        static let policy = Column(CodingKeys.policy)
    }

    init(_ e: EventRecord) {
        id = nil  // the store numbers events; an id the caller set is not reused
        timeNs = e.timeNs
        type = e.type
        policy = e.policy
        summary = e.summary
        decision = e.decision
        exit = e.exit
        decisionOutcome = e.decision?.outcome
        agreement = e.decision.flatMap { $0.outcome == .observed ? $0.agreement?.agrees : nil }
    }

    mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }

    static func databaseJSONEncoder(for column: String) -> JSONEncoder { StoredJSON.encoder }

    static func databaseJSONDecoder(for column: String) -> JSONDecoder { StoredJSON.decoder }

    var record: EventRecord {
        EventRecord(id: id ?? 0, timeNs: timeNs, type: type, policy: policy, summary: summary, decision: decision, exit: exit)
    }
}

/// `knob_journal` row.
struct KnobJournalRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "knob_journal"
    var path: String
    var original: String
    var owner: String
    var recordedNs: Int64

    enum CodingKeys: String, CodingKey {
        case path, original, owner
        case recordedNs = "recorded_ns"
    }

    enum Columns {
        static let owner = Column(CodingKeys.owner)
        static let path = Column(CodingKeys.path)
        static let recordedNs = Column(CodingKeys.recordedNs)
    }

    var entry: KnobJournalEntry {
        KnobJournalEntry(path: path, original: original, owner: owner, recordedNs: recordedNs)
    }
}
