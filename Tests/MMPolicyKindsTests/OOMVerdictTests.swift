import BPFKit
@testable import MMPolicyKinds
import MMPolicyCore
import Testing

/// `OOMVerdict.judge`: every way a policy's answer can end, without a
/// kernel (the validator is a stand-in).
@Suite struct OOMVerdictTests {
    static let ms: UInt64 = 1_000_000
    // enum mmpolicy_status (abi_common.h): MMPOLICY_DECIDED = 0, MMPOLICY_NO_DECISION = 1.
    static let decidedStatus: UInt32 = 0
    static let noDecisionStatus: UInt32 = 1

    static func decision(decided: Bool = true, pid: Int32 = 4242, status: UInt32? = nil, candidates: Int = 3) -> OOMDecision {
        OOMDecision(decided: decided, victimPID: pid, victimCgroupID: nil, score: 900, reason: .largest,
                    candidates: candidates, status: status ?? (decided ? decidedStatus : noDecisionStatus))
    }

    /// A validator stand-in that remembers whether it was asked.
    final class Validator {
        var asked: [OOMDecision] = []
        let answer: Result<OOMVictims, OOMRejection>
        init(_ answer: Result<OOMVictims, OOMRejection> = .success(OOMVictims(processes: [], cgroup: "/marker"))) {
            self.answer = answer
        }
        func callAsFunction(_ decision: OOMDecision) -> Result<OOMVictims, OOMRejection> {
            asked.append(decision)
            return answer
        }
    }

    static func judge(_ answer: Result<OOMDecision, BPFError>, elapsedMs: UInt64 = 5, deadlineMs: UInt64 = 100,
                      mode: PolicyMode = .enforce, validator: Validator) -> OOMVerdict {
        OOMVerdict.judge(answer, elapsedNs: elapsedMs * ms, deadlineNs: deadlineMs * ms, mode: mode) { validator($0) }
    }

    static func fallBack(_ verdict: OOMVerdict) -> (counted: OOMDecisionOutcome, detail: String)? {
        if case .fallBack(let counted, let detail) = verdict { return (counted, detail) }
        return nil
    }

    @Test func aCallbackThatFailedToRunIsAnError() {
        let validator = Validator()
        let error = BPFError(.run, object: "oom_largest", program: "largest_select_victim", reason: "BPF_PROG_RUN failed")
        let verdict = Self.judge(.failure(error), validator: validator)
        let fallBack = try! #require(Self.fallBack(verdict))
        #expect(fallBack.counted == .error)
        #expect(fallBack.detail == "select_victim failed: \(error)")
        #expect(!verdict.named)
        #expect(validator.asked.isEmpty)
    }

    @Test func aReturnThatIsNeitherDecidedNorNoDecisionIsAnError() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision(decided: false, status: UInt32(bitPattern: -22))), validator: validator)
        let fallBack = try! #require(Self.fallBack(verdict))
        #expect(fallBack.counted == .error)
        #expect(fallBack.detail == "select_victim failed: it returned -22 (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION)")
        #expect(!verdict.named)
        #expect(validator.asked.isEmpty)
    }

    @Test func aLateAnswerIsADeadlineMissEvenIfItDecided() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision()), elapsedMs: 150, deadlineMs: 100, validator: validator)
        let fallBack = try! #require(Self.fallBack(verdict))
        #expect(fallBack.counted == .deadlineMiss)
        #expect(fallBack.detail == "select_victim missed its deadline: 150.00 ms > 100.00 ms")
        #expect(!verdict.named)
        #expect(validator.asked.isEmpty)
    }

    @Test func theDeadlineIsCheckedBeforeTheStatus() {
        let verdict = Self.judge(.success(Self.decision(decided: false, status: 7)), elapsedMs: 101, validator: Validator())
        #expect(Self.fallBack(verdict)?.counted == .deadlineMiss)
    }

    @Test func anAnswerExactlyAtTheDeadlineCounts() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision()), elapsedMs: 100, deadlineMs: 100, validator: validator)
        guard case .kill = verdict else { Issue.record("expected a kill, got \(verdict)"); return }
        #expect(validator.asked.count == 1)
    }

    @Test func aDeclineIsNoDecision() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision(decided: false, candidates: 7)), validator: validator)
        let fallBack = try! #require(Self.fallBack(verdict))
        #expect(fallBack.counted == .noDecision)
        #expect(fallBack.detail == "the policy made no decision (status 1, 7 candidates)")
        #expect(!verdict.named)
        #expect(validator.asked.isEmpty)
    }

    @Test func aRejectedVictimIsAStrikeThatNamesTheVictim() {
        let validator = Validator(.failure(OOMRejection("pid 1 (init) is protected")))
        let verdict = Self.judge(.success(Self.decision(pid: 1)), validator: validator)
        let fallBack = try! #require(Self.fallBack(verdict))
        #expect(fallBack.counted == .rejection)
        #expect(fallBack.detail == "pid 1 (init) is protected")
        #expect(verdict.named)
        #expect(validator.asked.map(\.victimPID) == [1])
    }

    @Test func rejectionWinsInObserveModeToo() {
        let validator = Validator(.failure(OOMRejection("no")))
        let verdict = Self.judge(.success(Self.decision()), mode: .observe, validator: validator)
        #expect(Self.fallBack(verdict)?.counted == .rejection)
    }

    @Test func aValidatedVictimIsKilledInEnforceMode() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision()), mode: .enforce, validator: validator)
        guard case .kill(let victims) = verdict else { Issue.record("expected a kill, got \(verdict)"); return }
        #expect(victims.cgroup == "/marker")
        #expect(verdict.named)
        #expect(validator.asked.map(\.victimPID) == [4242])
    }

    @Test func aValidatedVictimIsOnlyObservedInObserveMode() {
        let validator = Validator()
        let verdict = Self.judge(.success(Self.decision()), mode: .observe, validator: validator)
        guard case .observe(let victims) = verdict else { Issue.record("expected an observation, got \(verdict)"); return }
        #expect(victims.cgroup == "/marker")
        #expect(verdict.named)
        #expect(validator.asked.count == 1)
    }
}
