#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The watchdog against real harm: a policy whose callback keeps failing, one
/// that kills in a loop, a memcg thrashing on zram swap, and a healthy minute
/// that must trip nothing. The daemon and the CLI run as separate processes.
///
/// zram swap is global: while it is on, other suites' memcgs swap instead of
/// running out of memory. `make test` runs this suite on its own, after the
/// other live suites.
@Suite(.serialized)
struct WatchdogEndToEndTests {
    static let mib: UInt64 = 1 << 20

    func events(_ daemon: DaemonProcess, _ extra: [String] = []) throws -> [EventRecord] {
        try JSONDecoder().decode([EventRecord].self, from: Data(daemon.events(extra).utf8))
    }

    func exits(_ daemon: DaemonProcess, policy: String) throws -> [EventRecord] {
        try events(daemon, ["--policy", policy]).filter { $0.type == .exit }
    }

    func loadedNames(_ daemon: DaemonProcess) throws -> [String] {
        struct Status: Decodable { struct Policy: Decodable { var name: String }; var policies: [Policy] }
        let output = try daemon.cli(["status", "--json"]).output
        return try JSONDecoder().decode(Status.self, from: Data(output.utf8)).policies.map(\.name)
    }

    func oomKillDisabled(_ path: String) -> Bool {
        ((try? readFile(path + "/memory.oom_control")) ?? "").contains("oom_kill_disable 1")
    }

    /// A shell that starts `mmpolicy-workload ARGS` again each time it dies,
    /// for as long as `memcg` exists: a workload that respawns.
    func respawning(_ arguments: [String], in memcg: TemporaryMemcg) throws -> ChildProcess {
        let command = ([TestPaths.product("mmpolicy-workload")] + arguments).map { "'\($0)'" }.joined(separator: " ")
        return try ChildProcess("/bin/sh", ["-c", "while [ -d '\(memcg.path)' ]; do \(command) >/dev/null 2>&1; sleep 0.05; done"],
                                waitFor: nil)
    }

    @Test func aPolicyWhoseCallbackKeepsFailingIsEjectedAfterItsStrikes() throws {
        let manifest = """
            name = "oom_failing"
            kind = "oom"
            object = "\(TestPaths.fixture("oom_fixed_victim"))"
            description = "select_victim always returns -EINVAL"
            [params]
            return_error = 1
            [guards]
            max_decision_errors = 2
            # Each error is also a fallback: leave that guard to another test.
            max_consecutive_fallbacks = 1000
            breach_windows = 2
            cooldown_s = 120
            """
        let daemon = try DaemonProcess(policies: ["oom_failing": manifest])
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-wd", limitBytes: 64 * Self.mib)
        let load = try daemon.cli(["load", "oom_failing", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        #expect(oomKillDisabled(memcg.path))
        let loop = try respawning(["grow", "--rate", "200M", "--cgroup", memcg.path], in: memcg)
        defer { kill(loop.pid, SIGKILL) }

        #expect(eventually(40) { (try? exits(daemon, policy: "oom_failing").isEmpty) == false },
                "the watchdog ejects the failing policy; daemon log:\n\(daemon.log)")
        let exit = try #require(try exits(daemon, policy: "oom_failing").first?.exit)
        #expect(exit.guardName == "max_decision_errors")
        #expect(exit.windows == 2 && exit.values.allSatisfy { $0 > 2 }, "\(exit)")
        #expect(exit.restoredKnobs.contains { $0.hasPrefix(memcg.path + "/memory.oom_control") }, "\(exit.restoredKnobs)")
        let errors = try events(daemon, ["--policy", "oom_failing"]).compactMap(\.decision).filter { $0.detail.contains("select_victim failed") }
        #expect(errors.count >= 3, "more strikes than allowed before the ejection: \(errors.count)")
        #expect(try !loadedNames(daemon).contains("oom_failing"))
        #expect(!oomKillDisabled(memcg.path), "the kernel killer is back on the scope")

        // Cool-down: refused with the reason, unless forced.
        let again = try daemon.cli(["load", "oom_failing", "--scope", memcg.path])
        #expect(again.status != 0 && again.output.contains("cooling down") && again.output.contains("--force"), "\(again.output)")
        let status = try daemon.cli(["status"]).output
        #expect(status.contains("recently ejected") && status.contains("max_decision_errors"), "\(status)")
        kill(loop.pid, SIGKILL)
        let forced = try daemon.cli(["load", "oom_failing", "--scope", memcg.path, "--mode", "observe", "--force"])
        #expect(forced.status == 0, "\(forced.output)")
        #expect(try daemon.cli(["status", "--json"]).output.contains("\"lastExit\""), "a reloaded policy shows its last exit")
    }

    @Test func aPolicyThatKillsInALoopIsEjectedByTheKillsPerMinuteGuard() throws {
        var manifest = try readFile(TestPaths.policies + "/oom_largest.toml")
        manifest = manifest.replacingFirst("max_kills_per_minute = 6", with: "max_kills_per_minute = 3")
        manifest = manifest.replacingFirst("name = \"oom_largest\"", with: "name = \"oom_trigger_happy\"")
        #expect(manifest.contains("max_kills_per_minute = 3"))
        let daemon = try DaemonProcess(policies: ["oom_trigger_happy": manifest])
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-wd", limitBytes: 64 * Self.mib)
        #expect(try daemon.cli(["load", "oom_trigger_happy", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let loop = try respawning(["grow", "--rate", "300M", "--cgroup", memcg.path], in: memcg)
        defer { kill(loop.pid, SIGKILL) }

        #expect(eventually(40) { (try? exits(daemon, policy: "oom_trigger_happy").isEmpty) == false },
                "the watchdog ejects the killer; daemon log:\n\(daemon.log)")
        let exit = try #require(try exits(daemon, policy: "oom_trigger_happy").first?.exit)
        #expect(exit.guardName == "max_kills_per_minute", "\(exit)")
        #expect(exit.values.allSatisfy { $0 > 3 } && exit.windows == 3, "\(exit)")
        let kills = try events(daemon, ["--policy", "oom_trigger_happy"]).compactMap(\.decision).filter { $0.outcome == .carriedOut }
        #expect(kills.count > 3, "it did kill in a loop: \(kills.count)")
        #expect(!oomKillDisabled(memcg.path), "the kernel killer is back on the scope")
        #expect(try !loadedNames(daemon).contains("oom_trigger_happy"))
    }

    @Test func aThrashingMemcgTripsTheRefaultGuardWithinFiveSeconds() throws {
        let zram = try ZramSwap(sizeBytes: 1 << 30)
        defer { withExtendedLifetime(zram) {} }
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-wd", limitBytes: 64 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "observe"]).status == 0)
        // A beside-the-point system-scope policy: a thrashing cgroup is not the system's business.
        #expect(try daemon.cli(["load", "oom_largest", "--name", "oom_system", "--scope", "system", "--mode", "observe"]).status == 0)
        let started = wallClockNanoseconds()
        let thrash = try workload(["thrash", "--rss", "128M", "--cgroup", memcg.path])
        defer { kill(thrash.pid, SIGKILL) }

        #expect(eventually(15) { (try? exits(daemon, policy: "oom_largest").isEmpty) == false },
                "the refault guard trips; daemon log:\n\(daemon.log)")
        let event = try #require(try exits(daemon, policy: "oom_largest").first)
        let exit = try #require(event.exit)
        #expect(exit.guardName == "max_refault_rate_per_gib" || exit.guardName == "max_refault_ratio", "\(exit)")
        let seconds = Double(event.timeNs - started) / 1e9
        #expect(seconds <= 5, "ejected \(seconds) s after the thrashing started: \(exit.description)")
        #expect(try loadedNames(daemon) == ["oom_system"], "the system-scope policy stays")
        #expect(!oomKillDisabled(memcg.path))
        // Its swapped pages go with it, before zram is swapped off.
        kill(thrash.pid, SIGKILL)
        #expect(eventually(10) { isGone(thrash.pid) })
    }

    @Test func aHealthyMinuteTripsNothing() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-wd", limitBytes: 512 * Self.mib)
        #expect(try daemon.cli(["load", "oom_growth", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", "system", "--mode", "observe"]).status == 0)
        let holder = try workload(["hold", "--rss", "64M", "--cgroup", memcg.path])
        let busy = try workload(["thrash", "--rss", "96M", "--cgroup", memcg.path])  // hot, but fits
        let grower = try workload(["grow", "--rate", "1M", "--max", "48M", "--cgroup", memcg.path])
        let idle = try workload(["idle", "--count", "20", "--cgroup", memcg.path])
        sleep(60)
        let all = try events(daemon)
        #expect(!all.contains { $0.type == .exit }, "no guard tripped: \(all.filter { $0.type == .exit }.map(\.summary))")
        #expect(try loadedNames(daemon).sorted() == ["oom_growth", "oom_largest"])
        for process in [holder, busy, grower] { #expect(!isGone(process.pid)) }
        let watch = try daemon.cli(["status", "--watch", "--json", "--count", "1", "--history", "300"]).output
        struct View: Decodable {
            struct Policy: Decodable {
                struct Watchdog: Decodable {
                    struct Window: Decodable { var seconds: Double }
                    var history: [Window]?
                }
                var name: String
                var watchdog: Watchdog?
            }
            var policies: [Policy]
        }
        let view = try JSONDecoder().decode(View.self, from: Data(watch.utf8))
        for policy in view.policies {
            let windows = policy.watchdog?.history ?? []
            #expect(windows.count >= 55, "\(policy.name) was judged every second: \(windows.count) windows")
        }
        _ = idle
    }
}
