import BPFKit
import Dispatch
import Foundation
import Logging
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import ServiceLifecycle
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The proof that a kind is a folder plus a registry line: the fixture kind
/// (this folder, registered here and nowhere else) goes through a real
/// daemon, run in this process with `KindRegistry.builtIn.adding(...)`:
/// load, decisions, actions applied, status, events (over the socket and
/// through the real `mmpolicy` CLI, which has never heard of the kind), a
/// watchdog ejection with the policy's own error report, unload and a clean
/// shutdown. Nothing in the daemon, store, watchdog or CLI names it.
@Suite(.serialized) struct FixtureKindTests {
    /// A daemon in this process on a scratch socket and state directory.
    final class InProcessDaemon {
        let scratch: ScratchDirectory
        let socket: String
        let stateDirectory: String
        let actuator = FixtureActuator()
        let group: ServiceGroup
        let running: Task<Void, any Error>

        init(manifests: [String: String]) async throws {
            let scratch = try ScratchDirectory(prefix: "mmpolicy-fixture")
            self.scratch = scratch
            socket = scratch.path + "/ctl.sock"
            stateDirectory = scratch.path + "/state"
            _ = try scratch.makeDirectory("policies")
            _ = try scratch.write("policies/default.toml", "")
            for (name, text) in manifests { _ = try scratch.write("policies/\(name).toml", text) }
            let configuration = DaemonConfiguration(
                socketPath: socket, stateDirectory: stateDirectory, policyDirectory: scratch.path + "/policies",
                objectSearchPath: ObjectSearchPath(directories: [TestPaths.objectDirectory]), defaultSetPath: nil,
                watchdogWindowMs: 200, kinds: KindRegistry.builtIn.adding(FixtureKind(actuator: actuator)),
                guardianExecutable: TestPaths.product("mmpolicy"), ownsProcess: false)
            let group = DaemonService.serviceGroup(configuration: configuration, version: "fixture-test",
                                                   logger: Logger(label: "fixture-daemon"))
            self.group = group
            running = Task { try await group.run() }
            let client = ControlClient(socketPath: socket, timeoutSeconds: 10)
            guard await eventuallyAwaiting(10, {
                ((try? await offPool { try client.send(ControlRequest(command: .ping)) })?.ok) == true
            }) else { throw FixtureDaemonError.notReady }
        }

        /// One request, sent from a thread of its own (the client blocks;
        /// the daemon in this process needs the concurrency pool).
        func send(_ request: ControlRequest) async throws -> ControlResponse {
            let client = ControlClient(socketPath: socket, timeoutSeconds: 10)
            return try await offPool { try client.send(request) }
        }

        /// `mmpolicy ARGS --socket S`, the real CLI.
        func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            let socket = self.socket
            return try await offPool { try runCommand(TestPaths.product("mmpolicy"), arguments + ["--socket", socket]) }
        }

        func stop() async throws {
            await group.triggerGracefulShutdown()
            try await running.value
        }
    }

    static func manifest(_ name: String, params: String, extra: String = "") -> String {
        """
        name = "\(name)"
        kind = "fixture"
        object = "\(TestPaths.fixture("fixture_kind"))"
        description = "the test-only fixture kind"
        scope = "system"
        mode = "enforce"

        [params]
        \(params)

        [fixture]
        period_ms = 50
        \(extra)
        """
    }

    @Test func aKindFromTheTestTargetGoesThroughTheWholeDaemon() async throws {
        let target = try workload(["hold", "--rss", "1M"])
        defer { withExtendedLifetime(target) {} }
        let daemon = try await InProcessDaemon(manifests: [
            "fixture_ok": Self.manifest("fixture_ok", params: "target_pid = \(target.pid)"),
            "fixture_bad": Self.manifest("fixture_bad", params: "return_error = 1",
                                         extra: "\n[guards]\nmax_decision_errors = 0\nbreach_windows = 2\n"),
        ])

        // load: the manifest's [fixture] section and the object's fixture ops table are read by the kind
        let loaded = try await daemon.send(ControlRequest(command: .load, load: LoadRequest(policy: "fixture_ok")))
        #expect(loaded.ok, "\(loaded.error ?? "")")
        #expect(loaded.policies?.first?.kind == "fixture")

        // decide and act: every 50 ms, two actions on the target
        #expect(await eventuallyAsync(5) { daemon.actuator.count(policy: "fixture_ok") >= 6 })
        let applied = daemon.actuator.all.filter { $0.policy == "fixture_ok" }
        #expect(applied.allSatisfy { $0.action.pid == UInt32(target.pid) })
        #expect(applied.prefix(2).map(\.action.op) == [1, 2])

        // status: outcomes counted from the envelope, the kind's own summary, the watchdog's window
        #expect(await eventuallyAwaiting(3) {
            ((try? await daemon.send(ControlRequest(command: .status)))?.policies?.first?.watchdog?.latest) != nil
        })
        let status = try await daemon.send(ControlRequest(command: .status))
        let fixture = try #require(status.policies?.first { $0.name == "fixture_ok" })
        #expect(fixture.kind == "fixture" && fixture.decisions.carriedOut >= 3 && fixture.decisions.errors == 0)
        #expect(fixture.lastDecision?.summary.contains("applied 2 action(s)") == true, "\(fixture.lastDecision?.summary ?? "")")
        #expect(fixture.watchdog?.guards.contains { $0.rule.name == "max_consecutive_fallbacks" && $0.rule.threshold == 5 } == true,
                "the kind's own default for a shared guard")

        // events: the envelope and the kind's payload, round-tripped through the store
        let events = try await daemon.send(ControlRequest(command: .events, query: EventQuery(policy: "fixture_ok")))
        let decisions = (events.events ?? []).compactMap(\.decision)
        let first = try #require(decisions.first)
        #expect(first.kind == FixtureKind.name && first.mode == .enforce && first.outcome == .carriedOut && first.trigger == "period")
        #expect(first.timing.decidedUs != nil && first.timing.us("applied") != nil)
        let payload = try #require(first.payload.decode(FixturePayload.self))
        #expect(payload.actions.count == 2 && payload.actions[1].value == payload.round * 10)

        // the CLI knows no kind: it prints the envelope and the summary the kind wrote
        let cliEvents = try await daemon.cli(["events", "--policy", "fixture_ok", "--limit", "5"])
        #expect(cliEvents.status == 0 && cliEvents.output.contains("applied 2 action(s) op 1 on pid \(target.pid)"), "\(cliEvents.output)")
        let cliStatus = try await daemon.cli(["status"])
        #expect(cliStatus.status == 0 && cliStatus.output.contains("fixture_ok") && cliStatus.output.contains("fixture"), "\(cliStatus.output)")

        // the watchdog ejects a failing policy of the kind, with the policy's own words in its records
        let bad = try await daemon.send(ControlRequest(command: .load, load: LoadRequest(policy: "fixture_bad")))
        #expect(bad.ok, "\(bad.error ?? "")")
        #expect(await eventuallyAwaiting(10) {
            let events = (try? await daemon.send(ControlRequest(command: .events, query: EventQuery(policy: "fixture_bad"))))?.events ?? []
            return events.contains { $0.type == .exit }
        })
        let badEvents = try await daemon.send(ControlRequest(command: .events, query: EventQuery(policy: "fixture_bad"))).events ?? []
        let exit = try #require(badEvents.first { $0.type == .exit }?.exit)
        #expect(exit.guardName == "max_decision_errors" && exit.windows == 2, "\(exit)")
        #expect(exit.policyError?.code == -22 && exit.policyError?.message.hasSuffix(": asked to fail") == true, "\(exit)")
        let failed = try #require(badEvents.compactMap(\.decision).first)
        #expect(failed.outcome == .error)
        #expect(failed.policyError?.code == -22 && failed.policyError?.message.hasPrefix("round ") == true
                && failed.policyError?.message.hasSuffix(": asked to fail") == true, "\(failed)")
        let afterEjection = try await daemon.send(ControlRequest(command: .status))
        #expect(afterEjection.policies?.map(\.name) == ["fixture_ok"])
        #expect(afterEjection.exits?.contains { $0.policy == "fixture_bad" } == true)
        #expect(daemon.actuator.count(policy: "fixture_bad") == 0)

        // unload: no more rounds
        let unloaded = try await daemon.send(ControlRequest(command: .unload, name: "fixture_ok"))
        #expect(unloaded.ok, "\(unloaded.error ?? "")")
        let count = daemon.actuator.count(policy: "fixture_ok")
        try await Task.sleep(for: .milliseconds(300))
        #expect(daemon.actuator.count(policy: "fixture_ok") == count)
        #expect(try await daemon.send(ControlRequest(command: .status)).policies?.isEmpty == true)

        // a clean shutdown, in the declared order, recorded last
        try await daemon.stop()
        let store = try StateStore(directory: daemon.stateDirectory)
        #expect(try store.events(EventQuery()).last?.type == .daemonStop)
        #expect(try store.desiredPolicies().isEmpty, "unloaded and ejected policies are not desired any more")
    }

    @Test func aKindTheDaemonDoesNotRunIsRefusedByName() async throws {
        // The fixture object loaded by a daemon with the built-in kinds only.
        let scratch = try ScratchDirectory(prefix: "mmpolicy-fixture")
        let path = try scratch.manifest("fixture_ok", Self.manifest("fixture_ok", params: "target_pid = 2"))
        let error = #expect(throws: ManifestError.self) { try Manifest.load(path: path, kinds: .builtIn) }
        #expect(error?.description.contains("fixture") == true && error?.description.contains("oom") == true, "\(error?.description ?? "")")
    }
}

enum FixtureDaemonError: Error { case notReady }

/// `eventuallyAsync` for a condition that awaits.
func eventuallyAwaiting(_ seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}

/// Runs blocking work on a Dispatch thread, off Swift concurrency's small pool.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}
