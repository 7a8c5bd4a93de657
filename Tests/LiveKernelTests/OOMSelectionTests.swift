import BPFKit
import CMMPolicyABI
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The reference OOM policies choosing among real processes in real memory
/// cgroups, through BPF_PROG_RUN, exactly as the daemon will run them.
@Suite(.serialized) struct OOMSelectionTests {
    static let mib: UInt64 = 1 << 20
    static let limit: UInt64 = 1 << 30

    func openLoaded(_ name: String) throws -> (Policy, OOMSelector) {
        let policy = try Policy.open(objectPath: TestPaths.policyObject(name), kinds: .builtIn)
        try policy.load()
        return (policy, try OOMSelector(policy: policy.object, ops: policy.ops))
    }

    func request(_ scope: ResolvedScope) -> OOMRequest {
        OOMRequest(trigger: .test, scope: scope, limitBytes: Self.limit, daemonPID: getpid())
    }

    @Test func largestPicksTheBiggestProcessInsideTheScopeOnly() throws {
        let memcg = try TemporaryMemcg()
        let small = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])
        let biggest = try workload(["hold", "--rss", "96M", "--cgroup", memcg.path])
        let middle = try workload(["hold", "--rss", "48M", "--cgroup", memcg.path])
        // Bigger than all of them, but outside the scope.
        let outsider = try workload(["hold", "--rss", "512M"])
        let (_, selector) = try openLoaded("oom_largest")

        let decision = try selector.selectVictim(request(try .cgroup(memcg.path)))
        #expect(decision.decided)
        #expect(decision.victimPID == biggest.pid)
        #expect(decision.candidates == 3)
        #expect(decision.reason == .largest)
        #expect(decision.victimCgroupID == nil)
        // Score is the badness in pages: at least the 96 MiB it touched.
        #expect(decision.score >= Int64(96 * Self.mib / 4096))
        _ = (small, middle)

        let systemWide = try selector.selectVictim(request(.system))
        #expect(systemWide.victimPID == outsider.pid)
        #expect(systemWide.candidates > 4)
    }

    @Test func scopeIsASubtreeAtAnyDepth() throws {
        let memcg = try TemporaryMemcg()
        let inner = try memcg.child("inner")
        let deeper = try memcg.child("inner/deeper")
        let parentHog = try workload(["hold", "--rss", "128M", "--cgroup", memcg.path])
        let innerProc = try workload(["hold", "--rss", "24M", "--cgroup", inner])
        let deepProc = try workload(["hold", "--rss", "40M", "--cgroup", deeper])
        let (_, selector) = try openLoaded("oom_largest")

        let innerDecision = try selector.selectVictim(request(try .cgroup(inner)))
        #expect(innerDecision.victimPID == deepProc.pid, "nested cgroups belong to the scope")
        #expect(innerDecision.candidates == 2)
        let deepDecision = try selector.selectVictim(request(try .cgroup(deeper)))
        #expect(deepDecision.victimPID == deepProc.pid)
        #expect(deepDecision.candidates == 1)
        let outerDecision = try selector.selectVictim(request(try .cgroup(memcg.path)))
        #expect(outerDecision.victimPID == parentHog.pid)
        #expect(outerDecision.candidates == 3)
        // A scope given relative to the memory cgroup root resolves the same.
        let relative = String(inner.dropFirst(memcg.mount.path.count + 1))
        #expect(try ResolvedScope.cgroup(relative) == ResolvedScope.cgroup(inner))
        _ = innerProc
    }

    /// cgroup v2 membership (the unified hierarchy's `dfl_cgrp`). This
    /// machine's cgroup2 has no memory controller, but membership does not
    /// need one: processes are moved into real v2 cgroups and the policy must
    /// see exactly those.
    @Test func scopeWorksOnTheUnifiedHierarchy() throws {
        let unified = try #require(Self.cgroup2Mount(), "no cgroup2 mount in /proc/self/mountinfo")
        let group = try TemporaryMemcg(prefix: "mmpolicy-v2-test", mount: unified)
        let inner = try group.child("inner")
        let top = try workload(["hold", "--rss", "64M", "--cgroup", group.path])
        let nested = try workload(["hold", "--rss", "32M", "--cgroup", inner])
        let outsider = try workload(["hold", "--rss", "256M"])
        let (_, selector) = try openLoaded("oom_largest")

        let scope = try ResolvedScope.cgroup(group.path, mount: unified)
        #expect(scope.abi.hierarchy == UInt32(MMPOLICY_HIERARCHY_V2.rawValue))
        let decision = try selector.selectVictim(request(scope))
        #expect(decision.victimPID == top.pid)
        #expect(decision.candidates == 2)
        let innerDecision = try selector.selectVictim(request(try .cgroup(inner, mount: unified)))
        #expect(innerDecision.victimPID == nested.pid)
        #expect(innerDecision.candidates == 1)
        _ = outsider
    }

    static func cgroup2Mount() -> MemoryCgroupMount? {
        guard let text = try? readFile("/proc/self/mountinfo") else { return nil }
        for line in text.split(separator: "\n") where line.contains(" - cgroup2 ") {
            return MemoryCgroupMount(version: .v2, path: String(line.split(separator: " ")[4]))
        }
        return nil
    }

    @Test func oomScoreAdjShiftsTheChoiceLikeTheKernel() throws {
        let memcg = try TemporaryMemcg()
        let big = try workload(["hold", "--rss", "64M", "--cgroup", memcg.path])
        // +500 per mille of a 1 GiB limit is worth 512 MiB of badness.
        let adjusted = try workload(["hold", "--rss", "8M", "--cgroup", memcg.path, "--oom-score-adj", "500"])
        let (_, selector) = try openLoaded("oom_largest")
        let decision = try selector.selectVictim(request(try .cgroup(memcg.path)))
        #expect(decision.victimPID == adjusted.pid)
        // The kernel agrees: its oom_score ranks the same process first.
        let kernelScores = try [big, adjusted].map { (pid: $0.pid, score: Int(try readFile("/proc/\($0.pid)/oom_score").split(separator: "\n")[0]) ?? 0) }
        #expect(kernelScores.max { $0.score < $1.score }?.pid == decision.victimPID)
    }

    @Test func neverPicksTheDaemonItself() throws {
        let memcg = try TemporaryMemcg()
        let only = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])
        let (_, selector) = try openLoaded("oom_largest")
        var req = request(try .cgroup(memcg.path))
        req.daemonPID = only.pid
        let decision = try selector.selectVictim(req)
        #expect(!decision.decided)
        #expect(decision.victimPID == 0)
        #expect(decision.candidates == 0)
    }

    @Test func growthPicksTheLeakerNotTheBiggest() throws {
        let (policy, selector) = try openLoaded("oom_growth")
        let sensor = try #require(policy.object.program(named: "growth_rss_stat")).attach()
        defer { sensor.detach() }
        let memcg = try TemporaryMemcg()
        let big = try workload(["hold", "--rss", "160M", "--cgroup", memcg.path])
        let leaker = try workload(["grow", "--initial", "8M", "--rate", "24M", "--cgroup", memcg.path])
        // A faster leaker outside the scope must not be chosen.
        let outsideLeaker = try workload(["grow", "--initial", "8M", "--rate", "64M", "--max", "512M"])
        usleep(2_500_000)

        let decision = try selector.selectVictim(request(try .cgroup(memcg.path)))
        #expect(decision.decided)
        #expect(decision.victimPID == leaker.pid)
        #expect(decision.reason == .fastestGrowth)
        // Score is bytes/s: the 24 MiB/s it grows at, within measurement slack.
        #expect(decision.score > Int64(12 * Self.mib) && decision.score < Int64(48 * Self.mib), "rate \(decision.score)")
        #expect(decision.candidates == 2)

        // oom_largest, on the same processes, kills the big one instead.
        let (_, largest) = try openLoaded("oom_largest")
        #expect(try largest.selectVictim(request(try .cgroup(memcg.path))).victimPID == big.pid)
        _ = outsideLeaker
    }

    @Test func growthFallsBackToTheLargestWhenNothingGrows() throws {
        let (policy, selector) = try openLoaded("oom_growth")
        let sensor = try #require(policy.object.program(named: "growth_rss_stat")).attach()
        defer { sensor.detach() }
        let memcg = try TemporaryMemcg()
        _ = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])
        let big = try workload(["hold", "--rss", "64M", "--cgroup", memcg.path])
        // Both finished allocating before the window closes; wait two windows.
        usleep(2_200_000)
        let decision = try selector.selectVictim(request(try .cgroup(memcg.path)))
        #expect(decision.victimPID == big.pid)
        #expect(decision.reason == .largest)
    }

    @Test func contextFieldsReachThePolicyIntact() throws {
        let policy = try Policy.open(objectPath: TestPaths.fixture("echo_ctx"), kinds: .builtIn)
        try policy.load()
        let selector = try OOMSelector(policy: policy.object, ops: policy.ops)
        let memcg = try TemporaryMemcg()
        let child = try memcg.child("a")
        let scope = try ResolvedScope.cgroup(child)
        let decision = try selector.selectVictim(
            OOMRequest(trigger: .memcgOOM, scope: scope, limitBytes: 123_456_789, daemonPID: 4242))
        #expect(decision.victimPID == 4242)
        #expect(decision.score == 123_456_789)
        #expect(decision.reason == .largest)  // trigger 1 echoed as reason 1
        #expect(decision.candidates == Int(scope.level))
        #expect(scope.level == 2)
        #expect(scope.abi.cgroup_id == scope.cgroupID && scope.cgroupID > 1)
    }
}
