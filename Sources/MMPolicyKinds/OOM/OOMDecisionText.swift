import BPFKit
import MMPolicyCore

/// How an oom decision reads in `mmpolicy events` and `status`: one line
/// with the trigger, where it fired, who was (or would have been) killed and
/// how long each step took.
enum OOMDecisionText {
    static func summary(_ r: DecisionRecord, _ p: OOMDecisionPayload) -> String {
        let victim = p.victimDescription
        let steps = stepText(r.timing)
        let detail = r.detail.isEmpty ? "" : ": \(r.detail)"
        let said = r.policyError.map { " (the policy said: \($0.message), code \($0.code))" } ?? ""
        switch r.outcome {
        case .carriedOut:
            return "\(r.trigger) in \(r.origin): killed \(victim), \(p.reason ?? "") score \(p.score ?? 0) of \(p.candidates) candidates"
                + (steps.isEmpty ? "" : "; \(steps)") + detail
        case .observed:
            let kernel = p.kernelVictimPID.map { $0 == p.victimPID ? "; the kernel chose the same" : "; the kernel chose pid \($0)" } ?? ""
            return "\(r.trigger) in \(r.origin): would kill \(victim) (observe)\(kernel)"
        case .rejected: return "\(r.trigger) in \(r.origin): rejected \(victim)\(detail); handed to the kernel"
        case .fellBack, .error: return "\(r.trigger) in \(r.origin): fell back to the kernel\(detail)\(said)"
        }
    }

    /// "decided 0.05 ms, SIGKILL 0.41 ms" from the trigger; when the OOM's
    /// onset is known (`wakeUs`), every step counts from it instead, so a
    /// late daemon shows: "since the OOM began: woke 500.00 ms, decided ...".
    static func stepText(_ timing: DecisionRecord.Timing) -> String {
        let offset = timing.wakeUs ?? 0
        let steps = [("decided", timing.decidedUs), ("SIGKILL", timing.us(OOMStep.kill)),
                     ("released", timing.us(OOMStep.released)), ("cleared", timing.us(OOMStep.cleared))]
            .compactMap { name, us in us.map { "\(name) \(decimalString((offset + $0) / 1000, places: 2)) ms" } }
        guard let wake = timing.wakeUs, !steps.isEmpty else { return steps.joined(separator: ", ") }
        return "since the OOM began: woke \(decimalString(wake / 1000, places: 2)) ms, " + steps.joined(separator: ", ")
    }
}
