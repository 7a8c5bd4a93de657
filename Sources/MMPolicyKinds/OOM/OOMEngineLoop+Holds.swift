#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// The guardian's watch over held v1 OOMs, from the engine's side: which
/// scopes are held and for how long an OOM may wait in them, the OOMs the
/// guardian handed to the kernel because this daemon did not resolve them in
/// time, and each OOM's onset for the records.
extension OOMEngineLoop {
    /// What an OOM may wait beyond the policy's decision deadline before the
    /// guardian hands it to the kernel: with the default 100 ms deadline, an
    /// OOM is the kernel's 1 s after it began at the latest. It leaves room
    /// for a kill's memory to come back (`killSettleNs`) and a second decision.
    static let holdMarginNs: UInt64 = 900_000_000

    /// Tells the board which v1 scopes this engine holds, with their bounds.
    func publishHolds() {
        guard let board = environment.oomHolds else { return }
        var wanted: [String: UInt64] = [:]
        for policy in policies.values {
            guard case .v1(let root) = domain(of: policy) else { continue }
            wanted[root] = policy.deadlineNs + Self.holdMarginNs
        }
        for root in heldRoots.keys where wanted[root] == nil { board.release(root: root) }
        for (root, bound) in wanted where heldRoots[root] != bound { board.hold(root: root, boundNs: bound) }
        heldRoots = wanted
    }

    /// OOMs the guardian handed to the kernel: recorded for their policy
    /// (a fallback that is the daemon's, not the policy's: no strike), and
    /// their killer turned off again once the OOM is over.
    func serviceHandovers() {
        guard let board = environment.oomHolds else { return }
        for handover in board.takeHandovers() {
            let waitedMs = Self.ms(handover.handedNs - handover.onsetNs)
            if v1Disabled.contains(handover.memcg) {
                fallbackPending[handover.memcg] = Handover(killCount: handover.killCount, clearSinceNs: nil)
            }
            guard let policy = governor(of: handover.memcg, version: .v1) else { continue }
            // A kill whose memory did not come back within the bound, or no decision at all.
            let killed = awaitingClear.contains { $0.origin == handover.memcg }
            let why = killed ? "the OOM outlasted the policy's kill" : "the daemon had not resolved it (it was stopped or stuck)"
            var record = OOMRecord(
                envelope: DecisionRecord(kind: .oom, trigger: OOMTrigger.memcgOOM.name, scope: policy.scope.description,
                                         origin: handover.memcg, mode: policy.mode, outcome: .fellBack,
                                         detail: "\(why) \(waitedMs) after it began; its guardian handed it to the kernel OOM killer",
                                         wokenBy: "guardian"),
                payload: OOMDecisionPayload())
            record.envelope.timing.wakeUs = 0
            record.envelope.timing.set(OOMStep.handedOver, Double(handover.handedNs - handover.onsetNs) / 1000)
            emit(record, policy: policy.name)
        }
    }

    /// The record's time from the OOM's onset (as the guardian saw it) to
    /// this daemon's wake-up, when the engine has no sensor time stamp: a
    /// late daemon shows in the record. Read after the kill, never before.
    func stampOnset(_ record: inout OOMRecord) {
        let origin = record.envelope.origin
        guard record.envelope.timing.wakeUs == nil, let t0 = record.triggerNs, origin.hasPrefix("/"),
              let board = environment.oomHolds, let onset = board.onsetReadingTheLink(of: origin, before: t0) else { return }
        record.envelope.timing.wakeUs = t0 > onset ? Double(t0 - onset) / 1000 : 0
    }
}
