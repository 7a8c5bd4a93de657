@testable import MMPolicyKinds
import MMPolicyCore
import Testing

/// How decisions are counted for the watchdog, how their records read, and
/// which OOM a kernel kill belongs to.
@Suite struct OOMRecordTests {
    // MARK: OOMDecisionOutcome, counted by the shared health model

    static func counted(_ outcomes: [OOMDecisionOutcome]) -> DecisionHealth {
        var health = DecisionHealth()
        for outcome in outcomes { health.count(outcome.health) }
        return health
    }

    @Test func everyFallbackCountsAndExtendsTheRun() {
        let health = Self.counted([.error, .deadlineMiss, .rejection, .noDecision, .killFailed])
        #expect(health == DecisionHealth(decisions: 5, errors: 1, rejections: 1, deadlineMisses: 1, fallbacks: 5,
                                         consecutiveFallbacks: 5))
    }

    @Test func anEnforcedDecisionCountsItsKillsAndEndsTheRun() {
        let health = Self.counted([.error, .noDecision, .enforced(kills: 3)])
        #expect(health == DecisionHealth(decisions: 3, actions: 3, errors: 1, fallbacks: 2, consecutiveFallbacks: 0))
    }

    @Test func anObservedDecisionCountsOnlyAsADecision() {
        let health = Self.counted([.rejection, .observed])
        #expect(health == DecisionHealth(decisions: 2, rejections: 1, fallbacks: 1, consecutiveFallbacks: 1))
    }

    @Test func outcomesMapOntoTheEnvelope() {
        let pairs: [(OOMDecisionOutcome, DecisionRecord.Outcome)] = [
            (.error, .error), (.deadlineMiss, .fellBack), (.noDecision, .fellBack), (.killFailed, .fellBack),
            (.rejection, .rejected), (.enforced(kills: 1), .carriedOut), (.observed, .observed),
        ]
        for (outcome, envelope) in pairs { #expect(outcome.outcome == envelope, "\(outcome)") }
    }

    @Test func theKernelsVictimFillsTheAgreement() {
        var record = OOMRecord(envelope: Self.record(.observed), payload: Self.payload())
        record.sawKernelVictim(42)
        #expect(record.envelope.agreement == .init(kernelChoice: "pid 42", agrees: true))
        record.sawKernelVictim(7)
        #expect(record.envelope.agreement == .init(kernelChoice: "pid 7", agrees: false))
        #expect(record.record.oom?.kernelVictimPID == 7)
    }

    // MARK: OOMDecisionText.summary

    static func record(_ outcome: DecisionRecord.Outcome, trigger: String = "memcg-oom", origin: String = "/sys/fs/cgroup/memory/job",
                       detail: String = "") -> DecisionRecord {
        DecisionRecord(kind: .oom, trigger: trigger, scope: "/sys/fs/cgroup/memory/job", origin: origin,
                       mode: outcome == .observed ? .observe : .enforce, outcome: outcome, detail: detail)
    }

    static func payload() -> OOMDecisionPayload {
        OOMDecisionPayload(candidates: 4, victimPID: 42, victimComm: "hog", score: 900, reason: "largest")
    }

    @Test func anEnforcedRecordSaysWhoDiedAndHowFast() {
        var r = Self.record(.carriedOut)
        r.timing = .init(decidedUs: 1500, steps: [.init(OOMStep.kill, 2000), .init(OOMStep.cleared, 10_004)])
        #expect(OOMDecisionText.summary(r, Self.payload())
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates; decided 1.50 ms, SIGKILL 2.00 ms, cleared 10.00 ms")
        r.timing.set(OOMStep.released, 2500)
        r.detail = "the OOM persisted after the kill"
        #expect(OOMDecisionText.summary(r, Self.payload())
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates; decided 1.50 ms, SIGKILL 2.00 ms, released 2.50 ms, cleared 10.00 ms: the OOM persisted after the kill")
        r.timing = .init()
        r.detail = ""
        #expect(OOMDecisionText.summary(r, Self.payload())
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates")
    }

    @Test func aKnownOnsetCountsEveryStepFromIt() {
        var r = Self.record(.carriedOut)
        r.timing = .init(wakeUs: 400_000, decidedUs: 50, steps: [.init(OOMStep.kill, 410)])
        #expect(OOMDecisionText.summary(r, Self.payload())
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates; since the OOM began: woke 400.00 ms, decided 400.05 ms, SIGKILL 400.41 ms")
    }

    @Test func aGroupKillNamesTheCgroup() {
        var r = Self.record(.carriedOut, trigger: "low-memory", origin: "system")
        var p = Self.payload()
        p.victimPID = nil
        p.victimCgroup = "/sys/fs/cgroup/job/batch"
        r.timing = .init(decidedUs: 800, steps: [.init(OOMStep.kill, 900)])
        #expect(OOMDecisionText.summary(r, p)
            == "low-memory in system: killed cgroup /sys/fs/cgroup/job/batch, largest score 900 of 4 candidates; decided 0.80 ms, SIGKILL 0.90 ms")
    }

    @Test func anObservedRecordComparesWithTheKernel() {
        let r = Self.record(.observed)
        var p = Self.payload()
        #expect(OOMDecisionText.summary(r, p) == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe)")
        p.kernelVictimPID = 42
        #expect(OOMDecisionText.summary(r, p)
            == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe); the kernel chose the same")
        p.kernelVictimPID = 7
        #expect(OOMDecisionText.summary(r, p)
            == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe); the kernel chose pid 7")
    }

    @Test func aRejectedRecordSaysWhyAndThatTheKernelDecides() {
        let r = Self.record(.rejected, trigger: "pressure", origin: "system", detail: "pid 1 (init) is protected")
        var p = Self.payload()
        p.victimPID = 1
        p.victimComm = nil
        #expect(OOMDecisionText.summary(r, p) == "pressure in system: rejected pid 1 (?): pid 1 (init) is protected; handed to the kernel")
    }

    @Test func aFallbackRecordSaysWhy() {
        var r = Self.record(.fellBack, detail: "the policy made no decision (status 1, 0 candidates)")
        var p = Self.payload()
        p.victimPID = nil
        #expect(OOMDecisionText.summary(r, p)
            == "memcg-oom in /sys/fs/cgroup/memory/job: fell back to the kernel: the policy made no decision (status 1, 0 candidates)")
        r.detail = ""
        #expect(OOMDecisionText.summary(r, p) == "memcg-oom in /sys/fs/cgroup/memory/job: fell back to the kernel")
    }

    @Test func anErrorRecordCarriesWhatThePolicySaid() {
        var r = Self.record(.error, detail: "select_victim failed: it returned -22 (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION)")
        r.policyError = PolicyErrorInfo(code: -22, message: "no task in scope 17")
        #expect(OOMDecisionText.summary(r, Self.payload())
            == "memcg-oom in /sys/fs/cgroup/memory/job: fell back to the kernel: select_victim failed: it returned -22 (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION) (the policy said: no task in scope 17, code -22)")
    }

    // MARK: OOMEngineLoop.contains

    @Test func aSystemOOMCoversEverything() {
        #expect(OOMEngineLoop.contains(nil, "/sys/fs/cgroup/a"))
        #expect(OOMEngineLoop.contains(nil, nil))
    }

    @Test func aMemcgOOMCoversItsSubtreeOnly() {
        #expect(OOMEngineLoop.contains("/sys/fs/cgroup/a", "/sys/fs/cgroup/a"))
        #expect(OOMEngineLoop.contains("/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b/c"))
        #expect(OOMEngineLoop.contains("/sys/fs/cgroup/a/", "/sys/fs/cgroup/a/b"))
        #expect(!OOMEngineLoop.contains("/sys/fs/cgroup/a", "/sys/fs/cgroup/ab"))
        #expect(!OOMEngineLoop.contains("/sys/fs/cgroup/a/b", "/sys/fs/cgroup/a"))
        // A kill whose cgroup could not be found belongs to no memcg OOM.
        #expect(!OOMEngineLoop.contains("/sys/fs/cgroup/a", nil))
    }
}
