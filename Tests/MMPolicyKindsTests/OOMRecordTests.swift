@testable import MMPolicyKinds
import MMPolicyCore
import Testing

/// How decisions are counted for the watchdog, how their records read, and
/// which OOM a kernel kill belongs to.
@Suite struct OOMRecordTests {
    // MARK: OOMDecisionOutcome.apply

    @Test func everyFallbackCountsAndExtendsTheRun() {
        var counters = OOMDecisionCounters()
        for outcome: OOMDecisionOutcome in [.error, .deadlineMiss, .rejection, .noDecision, .killFailed] {
            outcome.apply(to: &counters)
        }
        var expected = OOMDecisionCounters()
        expected.decisions = 5
        expected.errors = 1
        expected.deadlineMisses = 1
        expected.rejections = 1
        expected.fallbacks = 5
        expected.consecutiveFallbacks = 5
        #expect(counters == expected)
    }

    @Test func anEnforcedDecisionCountsItsKillsAndEndsTheRun() {
        var counters = OOMDecisionCounters()
        OOMDecisionOutcome.error.apply(to: &counters)
        OOMDecisionOutcome.noDecision.apply(to: &counters)
        OOMDecisionOutcome.enforced(kills: 3).apply(to: &counters)
        #expect(counters.decisions == 3)
        #expect(counters.enforced == 1)
        #expect(counters.kills == 3)
        #expect(counters.fallbacks == 2)
        #expect(counters.consecutiveFallbacks == 0)
        #expect(counters.errors == 1)
    }

    @Test func anObservedDecisionCountsOnlyAsADecision() {
        var counters = OOMDecisionCounters()
        OOMDecisionOutcome.rejection.apply(to: &counters)
        OOMDecisionOutcome.observed.apply(to: &counters)
        var expected = OOMDecisionCounters()
        expected.decisions = 2
        expected.rejections = 1
        expected.fallbacks = 1
        expected.consecutiveFallbacks = 1
        #expect(counters == expected)
    }

    // MARK: OOMEngineLoop.summary

    static func record(_ outcome: DecisionRecord.Outcome, trigger: String = "memcg-oom", origin: String = "/sys/fs/cgroup/memory/job",
                       detail: String = "") -> DecisionRecord {
        DecisionRecord(trigger: trigger, scope: "/sys/fs/cgroup/memory/job", origin: origin, outcome: outcome, detail: detail,
                       candidates: 4, victimPID: 42, victimComm: "hog", score: 900, reason: "largest")
    }

    @Test func anEnforcedRecordSaysWhoDiedAndHowFast() {
        var r = Self.record(.enforced)
        r.latency = .init(decisionUs: 1500, killUs: 2000, clearedUs: 10_004)
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates; decided 1.50 ms, SIGKILL 2.00 ms, cleared 10.00 ms")
        r.latency.releasedUs = 2500
        r.detail = "the OOM persisted after the kill"
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "memcg-oom in /sys/fs/cgroup/memory/job: killed pid 42 (hog), largest score 900 of 4 candidates; decided 1.50 ms, SIGKILL 2.00 ms, released 2.50 ms, cleared 10.00 ms: the OOM persisted after the kill")
    }

    @Test func aGroupKillNamesTheCgroup() {
        var r = Self.record(.enforced, trigger: "low-memory", origin: "system")
        r.victimPID = nil
        r.victimCgroup = "/sys/fs/cgroup/job/batch"
        r.latency = .init(decisionUs: 800, killUs: 900)
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "low-memory in system: killed cgroup /sys/fs/cgroup/job/batch, largest score 900 of 4 candidates; decided 0.80 ms, SIGKILL 0.90 ms")
    }

    @Test func anObservedRecordComparesWithTheKernel() {
        var r = Self.record(.observed)
        #expect(OOMEngineLoop.summary(r, policy: "p") == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe)")
        r.kernelVictimPID = 42
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe); the kernel chose the same")
        r.kernelVictimPID = 7
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "memcg-oom in /sys/fs/cgroup/memory/job: would kill pid 42 (hog) (observe); the kernel chose pid 7")
    }

    @Test func aRejectedRecordSaysWhyAndThatTheKernelDecides() {
        var r = Self.record(.rejected, trigger: "pressure", origin: "system", detail: "pid 1 (init) is protected")
        r.victimPID = 1
        r.victimComm = nil
        #expect(OOMEngineLoop.summary(r, policy: "p") == "pressure in system: rejected pid 1 (?): pid 1 (init) is protected; handed to the kernel")
    }

    @Test func aFallbackRecordSaysWhy() {
        var r = Self.record(.fallback, detail: "the policy made no decision (status 1, 0 candidates)")
        r.victimPID = nil
        #expect(OOMEngineLoop.summary(r, policy: "p")
            == "memcg-oom in /sys/fs/cgroup/memory/job: fell back to the kernel: the policy made no decision (status 1, 0 candidates)")
        r.detail = ""
        #expect(OOMEngineLoop.summary(r, policy: "p") == "memcg-oom in /sys/fs/cgroup/memory/job: fell back to the kernel")
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
