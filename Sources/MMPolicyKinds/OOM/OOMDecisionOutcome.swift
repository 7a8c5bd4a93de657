import MMPolicyCore

/// What one OOM decision came to, in the oom kind's own terms: richer than
/// the envelope's outcome (a decision that named nobody and a kill that
/// reached nobody both fall back) and mapped onto it and onto the shared
/// decision-health model.
enum OOMDecisionOutcome: Equatable {
    case error, deadlineMiss, noDecision, rejection, killFailed
    case enforced(kills: Int)
    case observed

    /// How the shared health model counts it.
    var health: DecisionHealth.Event {
        switch self {
        case .error: return .error
        case .deadlineMiss: return .deadlineMiss
        case .noDecision, .killFailed: return .fallback
        case .rejection: return .rejection
        case .enforced(let kills): return .carriedOut(actions: kills)
        case .observed: return .observed
        }
    }

    /// The envelope's outcome.
    var outcome: DecisionRecord.Outcome {
        switch self {
        case .error: return .error
        case .deadlineMiss, .noDecision, .killFailed: return .fellBack
        case .rejection: return .rejected
        case .enforced: return .carriedOut
        case .observed: return .observed
        }
    }
}

/// An OOM decision being put together on the engine's thread: the envelope
/// and the oom payload, kept typed until the record is emitted (so nothing
/// is encoded on the way to the kill).
struct OOMRecord {
    var envelope: DecisionRecord
    var payload: OOMDecisionPayload
    /// When the engine saw the trigger (CLOCK_MONOTONIC); not recorded as such.
    var triggerNs: UInt64?

    var detail: String {
        get { envelope.detail }
        set { envelope.detail = newValue }
    }

    /// Observe mode: the kernel's killer chose `pid` for the same OOM.
    mutating func sawKernelVictim(_ pid: Int32) {
        payload.kernelVictimPID = pid
        envelope.agreement = DecisionRecord.Agreement(kernelChoice: "pid \(pid)", agrees: payload.victimPID == pid)
    }

    /// The finished record, payload encoded.
    var record: DecisionRecord {
        var record = envelope
        record.payload = DecisionPayload(payload)
        return record
    }
}
