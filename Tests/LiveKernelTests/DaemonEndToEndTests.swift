#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon and the CLI as separate processes, against real memory
/// cgroups that really run out of memory.
@Suite(.serialized)
struct DaemonEndToEndTests {
    static let mib: UInt64 = 1 << 20

    func decode(_ json: String) throws -> [EventRecord] {
        try JSONDecoder().decode([EventRecord].self, from: Data(json.utf8))
    }


    func oomKillDisable(_ memcg: TemporaryMemcg) throws -> Bool {
        try readFile(memcg.path + "/memory.oom_control").contains("oom_kill_disable 1")
    }

    @Test func largestPolicyKillsTheLargestAndSparesTheRest() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        #expect(try oomKillDisable(memcg), "enforce mode on v1 disables the kernel killer")

        let small = try workload(["hold", "--rss", "30M", "--cgroup", memcg.path])
        let big = try workload(["hold", "--rss", "100M", "--cgroup", memcg.path])
        let grower = try workload(["grow", "--rate", "100M", "--max", "100M", "--cgroup", memcg.path])

        #expect(eventually(15) { isGone(big.pid) }, "the largest process is killed; daemon log:\n\(daemon.log)")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_largest").contains { $0.outcome == .carriedOut }) == true })
        #expect(!isGone(small.pid) && !isGone(grower.pid), "the others survive")
        let decision = try #require(try decisions(daemon, policy: "oom_largest").first { $0.outcome == .carriedOut })
        #expect(decision.oom?.victimPID == big.pid)
        #expect(decision.trigger == "memcg-oom" && decision.origin == memcg.path)
        #expect((decision.oom?.candidates ?? 0) >= 3 && decision.oom?.reason == "largest")
        #expect(decision.kind == .oom && decision.mode == .enforce)
        #expect(decision.timing.decidedUs != nil && decision.timing.us(OOMStep.kill) != nil && decision.timing.us(OOMStep.released) != nil)
        #expect(decision.timing.us(OOMStep.cleared) != nil, "under_oom cleared after the kill")
        let status = try daemon.cli(["status", "--json"])
        #expect(status.output.contains("\"carriedOut\" : 1"), "\(status.output)")
    }

    @Test func growthPolicyKillsTheLeakerNotTheLargest() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        #expect(try daemon.cli(["load", "oom_growth", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let idleBig = try workload(["hold", "--rss", "120M", "--cgroup", memcg.path])
        // It reaches the limit after about 3 s, a few growth windows.
        let leaker = try workload(["grow", "--rate", "24M", "--initial", "8M", "--cgroup", memcg.path])
        #expect(eventually(20) { isGone(leaker.pid) }, "the leaker is killed; daemon log:\n\(daemon.log)")
        #expect(!isGone(idleBig.pid), "the idle largest process survives: \((try? daemon.events()) ?? "")")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_growth").first { $0.outcome == .carriedOut }?.oom?.victimPID) == leaker.pid })
    }

    @Test func onlyProtectedCandidatesFallBackToTheKernel() throws {
        let manifest = """
            name = "oom_protected"
            kind = "oom"
            object = "oom_largest.bpf.o"
            description = "oom_largest, but every workload is protected"
            [protect]
            comms = ["mmpolicy-worklo"]
            """
        let daemon = try DaemonProcess(policies: ["oom_protected": manifest])
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 160 * Self.mib)
        #expect(try daemon.cli(["load", "oom_protected", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let a = try workload(["hold", "--rss", "40M", "--cgroup", memcg.path])
        let b = try workload(["grow", "--rate", "100M", "--max", "200M", "--cgroup", memcg.path])
        #expect(eventually(15) { isGone(a.pid) || isGone(b.pid) }, "the kernel killer resolves the OOM; daemon log:\n\(daemon.log)")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_protected").contains { $0.outcome == .rejected }) == true })
        let rejected = try #require(try decisions(daemon, policy: "oom_protected").first { $0.outcome == .rejected })
        #expect(rejected.detail.contains("protect"), "\(rejected.detail)")
        #expect(eventually(5) { (try? oomKillDisable(memcg)) == true }, "the kernel killer is disabled again once the OOM cleared")
    }

    @Test func aVictimOutsideTheScopeIsRejectedAsAStrike() throws {
        let manifest = """
            name = "oom_fixed"
            kind = "oom"
            object = "\(TestPaths.fixture("oom_fixed_victim"))"
            description = "names one victim whatever happens"
            """
        let daemon = try DaemonProcess(policies: ["oom_fixed": manifest])
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 128 * Self.mib)
        let outsider = try workload(["hold", "--rss", "16M"])
        let load = try daemon.cli(["load", "oom_fixed", "--scope", memcg.path, "--set", "victim_pid=\(outsider.pid)"])
        #expect(load.status == 0, "\(load.output)")
        let inside = try workload(["grow", "--rate", "100M", "--max", "200M", "--cgroup", memcg.path])
        #expect(eventually(15) { isGone(inside.pid) }, "the kernel killer kills inside the scope; daemon log:\n\(daemon.log)")
        #expect(!isGone(outsider.pid), "the process outside the scope survives")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_fixed").first?.outcome) == .rejected })
        let decision = try #require(try decisions(daemon, policy: "oom_fixed").first)
        #expect(decision.detail.contains("outside the scope"), "\(decision.detail)")
        let status = try daemon.cli(["status", "--json"]).output
        #expect(status.contains("\"rejected\" : 1"), "\(status)")
    }

    @Test func observeModeRecordsPolicyAndKernelVictims() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "observe"]).status == 0)
        let small = try workload(["hold", "--rss", "30M", "--cgroup", memcg.path])
        let big = try workload(["hold", "--rss", "100M", "--cgroup", memcg.path])
        let grower = try workload(["grow", "--rate", "100M", "--max", "100M", "--cgroup", memcg.path])
        #expect(eventually(15) { isGone(big.pid) }, "the kernel kills the largest; daemon log:\n\(daemon.log)")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_largest").first?.oom?.kernelVictimPID) != nil })
        let decision = try #require(try decisions(daemon, policy: "oom_largest").first)
        #expect(decision.outcome == .observed)
        #expect(decision.oom?.victimPID == big.pid && decision.oom?.kernelVictimPID == big.pid, "policy and kernel agree")
        #expect(decision.agreement == .init(kernelChoice: "pid \(big.pid)", agrees: true))
        let events = try decode(daemon.events())
        #expect(events.contains { $0.type == .kernelKill && $0.summary.contains("pid \(big.pid)") })
        // status counts what the audit trail holds (a later OOM may have added a decision).
        struct Status: Decodable {
            struct Policy: Decodable { var name: String; var decisions: DecisionCounts? }
            var policies: [Policy]
        }
        let statusText = try daemon.cli(["status", "--json"]).output
        let recorded = try decisions(daemon, policy: "oom_largest")
        let counts = try JSONDecoder().decode(Status.self, from: Data(statusText.utf8)).policies.first { $0.name == "oom_largest" }?.decisions
        #expect(counts?.agreements == recorded.filter { $0.agreement?.agrees == true }.count && (counts?.agreements ?? 0) >= 1,
                "status: \(statusText)\nrecorded: \(recorded.map { "\($0.outcome) \($0.origin) \($0.agreement.map { "\($0)" } ?? "-")" })")
        _ = (small, grower)
    }

    @Test func twoLoadsOfOneNameAtOnceLoadItOnce() async throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 128 * Self.mib)
        let arguments = ["load", "oom_largest", "--name", "twice", "--scope", memcg.path, "--mode", "enforce", "--socket", daemon.socket]
        let cli = TestPaths.product("mmpolicy")
        async let first = Task.detached { try runCommand(cli, arguments) }.value
        async let second = Task.detached { try runCommand(cli, arguments) }.value
        let results = try await [first, second]
        #expect(results.filter { $0.status == 0 }.count == 1, "exactly one load succeeds: \(results.map(\.output))")
        let refused = try #require(results.first { $0.status != 0 })
        #expect(refused.output.contains("being loaded by another request") || refused.output.contains("already loaded"), "\(refused.output)")
        let status = try daemon.cli(["status", "--json"]).output
        #expect(status.components(separatedBy: "\"name\" : \"twice\"").count == 2, "one policy named twice: \(status)")
        #expect(daemon.stop() == 0)
        #expect(try !oomKillDisable(memcg), "nothing left changed")
    }

    @Test func sigtermRestoresKnobsAndARestartKeepsThePolicySet() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        let child = try memcg.child("batch")
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        #expect(try oomKillDisable(memcg))
        #expect(try readFile(child + "/memory.oom_control").contains("oom_kill_disable 1"), "children are managed too")
        #expect(daemon.stop() == 0, "a clean exit on SIGTERM; log:\n\(daemon.log)")
        #expect(try !oomKillDisable(memcg))
        #expect(try !readFile(child + "/memory.oom_control").contains("oom_kill_disable 1"))
        let pins = (try? runCommand("/bin/ls", ["-A", "/sys/fs/bpf/mmpolicy"]).output) ?? ""
        #expect(pins.isEmpty || pins.contains("No such file"), "no pins left: \(pins)")

        try daemon.start()
        let status = try daemon.cli(["status"])
        #expect(status.output.contains("oom_largest") && status.output.contains(memcg.path), "\(status.output)")
        #expect(try oomKillDisable(memcg), "the restarted daemon enforces again")
    }

    @Test func desiredPoliciesThatFailToLoadShowInStatusUntilLoadedOrUnloaded() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        let child = try memcg.child("batch")
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "observe"]).status == 0)
        #expect(try daemon.cli(["load", "oom_growth", "--scope", child]).status == 0)
        #expect(daemon.stop() == 0, "log:\n\(daemon.log)")

        // While the daemon is down, one manifest breaks and the other goes away.
        let largest = daemon.policyDirectory + "/oom_largest.toml"
        let growth = daemon.policyDirectory + "/oom_growth.toml"
        let growthText = try readFile(growth)
        _ = try daemon.scratch.write("policies/oom_largest.toml", "this is [not toml")
        #expect(unlink(growth) == 0)
        try daemon.start()

        let status = try daemon.cli(["status"])
        #expect(status.status == 0)
        #expect(status.output.contains("desired but not loaded"), "\(status.output)")
        #expect(status.output.contains("oom_largest (oom_largest, scope \(memcg.path), observe) failed"), "\(status.output)")
        #expect(status.output.contains(largest), "the manifest's error names its file: \(status.output)")
        #expect(status.output.contains("no policy named 'oom_growth'"), "\(status.output)")
        #expect(status.output.contains("no policies loaded"), "\(status.output)")
        let json = try JSONDecoder().decode(FailedStatus.self, from: Data(try daemon.cli(["status", "--json"]).output.utf8))
        #expect(json.failedPolicies.map(\.name) == ["oom_growth", "oom_largest"])
        #expect(json.failedPolicies.first?.scope == child && json.failedPolicies.first?.mode == "enforce")

        // Unloading one stops wanting it; loading the other (its manifest back) clears it.
        #expect(try daemon.cli(["unload", "oom_largest"]).status == 0)
        _ = try daemon.scratch.write("policies/oom_growth.toml", growthText)
        #expect(try daemon.cli(["load", "oom_growth", "--scope", child]).status == 0)
        let after = try daemon.cli(["status"]).output
        #expect(!after.contains("desired but not loaded") && after.contains("oom_growth"), "\(after)")
        #expect(try JSONDecoder().decode(FailedStatus.self, from: Data(try daemon.cli(["status", "--json"]).output.utf8)).failedPolicies.isEmpty)

        // The unloaded one is no longer desired: a restart does not try it again.
        #expect(daemon.stop() == 0)
        try daemon.start()
        let restarted = try daemon.cli(["status"]).output
        #expect(!restarted.contains("desired but not loaded") && restarted.contains("oom_growth"), "\(restarted)")
    }

    /// The part of `mmpolicy status --json` this test reads.
    struct FailedStatus: Decodable {
        var failedPolicies: [FailedPolicy]
    }

    @Test func nonRootClientsAreRefused() throws {
        let daemon = try DaemonProcess()
        // Let uid 65534 reach the socket, so that SO_PEERCRED, not file modes, refuses it.
        chmod(daemon.scratch.path, 0o755)
        chmod(daemon.socket, 0o666)
        let result = try runCommand("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                         TestPaths.product("mmpolicy"), "status", "--socket", daemon.socket])
        #expect(result.status != 0)
        #expect(result.output.contains("root"), "\(result.output)")
    }

    @Test func badRequestsGetClearErrorsAndDisturbNothing() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 64 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path]).status == 0)

        let unknown = try daemon.cli(["load", "no_such_policy"])
        #expect(unknown.status != 0 && unknown.output.contains("no policy named 'no_such_policy'"), "\(unknown.output)")
        let badScope = try daemon.cli(["load", "oom_growth", "--scope", "/sys/fs/cgroup/memory/no-such-group-\(getpid())"])
        #expect(badScope.status != 0 && badScope.output.contains("does not exist"), "\(badScope.output)")
        let twice = try daemon.cli(["load", "oom_largest", "--scope", memcg.path])
        #expect(twice.status != 0 && twice.output.contains("already loaded"), "\(twice.output)")
        let unloadUnknown = try daemon.cli(["unload", "nothing_here"])
        #expect(unloadUnknown.status != 0 && unloadUnknown.output.contains("no policy named 'nothing_here' is loaded"))
        let status = try daemon.cli(["status"])
        #expect(status.output.contains("oom_largest"), "the loaded policy is undisturbed")
        #expect(try oomKillDisable(memcg))

        let notRunning = try runCommand(TestPaths.product("mmpolicy"), ["status", "--socket", daemon.scratch.path + "/nothing.sock"])
        #expect(notRunning.status != 0 && notRunning.output.contains("not running"), "\(notRunning.output)")
    }

    @Test func theNearestScopeDecidesForNestedScopes() throws {
        let daemon = try DaemonProcess()
        let outer = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 300 * Self.mib)
        let inner = try outer.child("inner")
        try writeFile(inner + "/memory.limit_in_bytes", String(120 * Self.mib))
        #expect(try daemon.cli(["load", "oom_largest", "--name", "outer", "--scope", outer.path, "--mode", "enforce"]).status == 0)
        #expect(try daemon.cli(["load", "oom_largest", "--name", "inner", "--scope", inner, "--mode", "enforce"]).status == 0)

        // The inner group hits its own limit: the inner policy decides.
        let innerBig = try workload(["hold", "--rss", "60M", "--cgroup", inner])
        let innerGrower = try workload(["grow", "--rate", "100M", "--max", "50M", "--initial", "4M", "--cgroup", inner])
        let outerHolder = try workload(["hold", "--rss", "100M", "--cgroup", outer.path])
        let innerPush = try workload(["grow", "--rate", "100M", "--max", "100M", "--cgroup", inner])
        #expect(eventually(15) { isGone(innerBig.pid) || isGone(innerPush.pid) }, "log:\n\(daemon.log)")
        #expect(eventually(5) { (try? decisions(daemon, policy: "inner").isEmpty) == false })
        #expect(try decisions(daemon, policy: "outer").isEmpty, "the outer policy does not decide for the inner group's OOM")
        #expect(!isGone(outerHolder.pid), "nothing outside the inner group dies")
        _ = innerGrower
    }

    @Test func aPolicyMayKillAWholeCgroup() throws {
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-e2e", limitBytes: 200 * Self.mib)
        let doomed = try memcg.child("doomed")
        let spared = try memcg.child("spared")
        var st = stat()
        #expect(stat(doomed, &st) == 0)
        let manifest = """
            name = "oom_group"
            kind = "oom"
            object = "\(TestPaths.fixture("oom_fixed_victim"))"
            description = "kills one cgroup"
            """
        let daemon = try DaemonProcess(policies: ["oom_group": manifest])
        #expect(try daemon.cli(["load", "oom_group", "--scope", memcg.path, "--set", "kill_cgroup_id=\(st.st_ino)"]).status == 0)
        let a = try workload(["hold", "--rss", "30M", "--cgroup", doomed])
        let b = try workload(["hold", "--rss", "30M", "--cgroup", doomed])
        let survivor = try workload(["hold", "--rss", "30M", "--cgroup", spared])
        let grower = try workload(["grow", "--rate", "100M", "--max", "150M", "--cgroup", spared])
        #expect(eventually(15) { isGone(a.pid) && isGone(b.pid) }, "every process of the named group dies; log:\n\(daemon.log)")
        #expect(!isGone(survivor.pid) && !isGone(grower.pid))
        let decision = try #require(try decisions(daemon, policy: "oom_group").first)
        #expect(decision.outcome == .carriedOut && decision.oom?.victimCgroup == doomed)
    }

    @Test func systemScopeActsWhenMemoryIsShort() throws {
        // Thresholds of 100 %: the system counts as short at once, so the
        // system decision point (sensors, PSI, MemAvailable) runs without
        // exhausting this machine's memory.
        let manifest = """
            name = "oom_sys"
            kind = "oom"
            object = "\(TestPaths.fixture("oom_fixed_victim"))"
            description = "kills one process whenever memory is short"
            [trigger]
            mem_available_percent = 100
            swap_free_percent = 100
            """
        let daemon = try DaemonProcess(policies: ["oom_sys": manifest])
        let victim = try workload(["hold", "--rss", "8M"])
        let bystander = try workload(["hold", "--rss", "8M"])
        #expect(try daemon.cli(["load", "oom_sys", "--scope", "system", "--mode", "enforce", "--set", "victim_pid=\(victim.pid)"]).status == 0)
        #expect(eventually(5) { isGone(victim.pid) }, "log:\n\(daemon.log)")
        #expect(try daemon.cli(["unload", "oom_sys"]).status == 0)
        #expect(!isGone(bystander.pid))
        let decision = try #require(try decisions(daemon, policy: "oom_sys").first { $0.outcome == .carriedOut })
        #expect(decision.trigger == "low-memory" && decision.origin == "system" && decision.oom?.victimPID == victim.pid)
    }
}
