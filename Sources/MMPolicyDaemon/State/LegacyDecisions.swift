import Foundation
import GRDB
import MMPolicyCore

/// Migration v3: decisions stored before the decision envelope existed
/// (schema v1/v2, when oom was the only kind) rewritten as envelopes, so
/// `mmpolicy events` and `status` keep reading them.
///
/// Like every shipped migration this is frozen history: it knows the old
/// record's shape and writes the oom payload as version 1 laid it out.
/// What the old record did not say is recovered where it can be: the mode
/// from the policy's last `loaded` event before the decision (observed
/// decisions are always observe mode), a callback failure from the detail
/// text; a mode that cannot be recovered is taken as enforce.
enum LegacyDecisions {
    /// The decision record as schema v1 and v2 stored it.
    struct V1: Decodable {
        struct Latency: Decodable {
            var wakeUs: Double?
            var decisionUs: Double?
            var callbackUs: Double?
            var killUs: Double?
            var releasedUs: Double?
            var clearedUs: Double?
        }

        var trigger: String
        var scope: String
        var origin: String
        var outcome: String
        var detail: String
        var candidates: Int
        var victimPID: Int32?
        var victimComm: String?
        var victimCgroup: String?
        var score: Int64?
        var reason: String?
        var victimRSSBytes: UInt64?
        var kernelVictimPID: Int32?
        var wokenBy: String?
        var latency: Latency
    }

    /// The oom payload, version 1, as the migration writes it.
    struct OOMPayloadV1: DecisionPayloadBody {
        static let version = 1
        var candidates: Int
        var victimPID: Int32?
        var victimComm: String?
        var victimCgroup: String?
        var score: Int64?
        var reason: String?
        var victimRSSBytes: UInt64?
        var kernelVictimPID: Int32?
    }

    static func migrate(_ db: Database) throws {
        let rows = try Row.fetchAll(db, sql: """
            SELECT id, time_ns, policy, decision FROM event WHERE type = 'decision' AND decision IS NOT NULL ORDER BY id
            """)
        for row in rows {
            let id: Int64 = row["id"]
            let text: String = row["decision"]
            guard let old = try? StoredJSON.decoder.decode(V1.self, from: Data(text.utf8)) else { continue }
            let mode = try self.mode(of: row["policy"], before: row["time_ns"], outcome: old.outcome, db)
            let record = envelope(old, mode: mode)
            let json = String(decoding: try StoredJSON.encoder.encode(record), as: UTF8.self)
            try db.execute(sql: "UPDATE event SET decision = ?, decision_outcome = ?, agreement = ? WHERE id = ?",
                           arguments: [json, record.outcome.rawValue,
                                       record.outcome == .observed ? record.agreement?.agrees : nil, id])
        }
    }

    static func envelope(_ old: V1, mode: PolicyMode) -> DecisionRecord {
        let outcome: DecisionRecord.Outcome
        switch old.outcome {
        case "enforced": outcome = .carriedOut
        case "observed": outcome = .observed
        case "rejected": outcome = .rejected
        default: outcome = old.detail.hasPrefix("select_victim failed") ? .error : .fellBack
        }
        var timing = DecisionRecord.Timing(wakeUs: old.latency.wakeUs, decidedUs: old.latency.decisionUs,
                                           callbackUs: old.latency.callbackUs)
        timing.set("SIGKILL", old.latency.killUs)
        timing.set("released", old.latency.releasedUs)
        timing.set("cleared", old.latency.clearedUs)
        let agreement = old.kernelVictimPID.map {
            DecisionRecord.Agreement(kernelChoice: "pid \($0)", agrees: old.victimPID == $0)
        }
        let payload = OOMPayloadV1(candidates: old.candidates, victimPID: old.victimPID, victimComm: old.victimComm,
                                   victimCgroup: old.victimCgroup, score: old.score, reason: old.reason,
                                   victimRSSBytes: old.victimRSSBytes, kernelVictimPID: old.kernelVictimPID)
        return DecisionRecord(kind: PolicyKind(rawValue: "oom"), trigger: old.trigger, scope: old.scope, origin: old.origin,
                              mode: mode, outcome: outcome, detail: old.detail, wokenBy: old.wokenBy, timing: timing,
                              agreement: agreement, payload: DecisionPayload(payload))
    }

    /// The mode `policy` was loaded in before `timeNs`, from its `loaded` event's summary.
    static func mode(of policy: String?, before timeNs: Int64, outcome: String, _ db: Database) throws -> PolicyMode {
        if outcome == "observed" { return .observe }
        guard let policy else { return .enforce }
        let summary = try String.fetchOne(db, sql: """
            SELECT summary FROM event WHERE policy = ? AND type = 'loaded' AND time_ns <= ? ORDER BY time_ns DESC, id DESC LIMIT 1
            """, arguments: [policy, timeNs])
        return summary?.contains(" in observe mode") == true ? .observe : .enforce
    }
}
