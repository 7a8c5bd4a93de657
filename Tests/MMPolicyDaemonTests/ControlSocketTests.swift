#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import MMPolicyDaemon
import MMPolicyCore
import MMPolicyTestSupport
import Synchronization
import SystemPackage
import Testing

/// The control socket, end to end over real Unix sockets under a scratch
/// directory. Serialized: several tests measure how long an answer takes.
@Suite(.serialized) struct ControlSocketTests {
    // MARK: - Round trips

    @Test func everyCommandRoundTripsWithThePeersCredentials() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/run/mmpolicy/ctl.sock"  // Parent directories do not exist yet.
        let recorder = Recorder()
        let running = try RunningServer(path: path) { request, peer in
            recorder.record(request, peer)
            return Self.respond(to: request, peer: peer)
        }
        var info = stat()
        #expect(stat(scratch.path + "/run/mmpolicy", &info) == 0 && info.st_mode & 0o7777 == 0o755)
        #expect(lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK && info.st_mode & 0o7777 == 0o600)

        let me = PeerCredentials(pid: getpid(), uid: geteuid(), gid: getegid())
        let client = ControlClient(socketPath: path, timeoutSeconds: 10)
        for request in Self.sampleRequests {
            let response = try client.send(request)
            #expect(response == Self.respond(to: request, peer: me), "\(request.command)")
        }
        #expect(recorder.requests == Self.sampleRequests)
        #expect(recorder.peers == Array(repeating: me, count: Self.sampleRequests.count))
        try await running.stop()
    }

    /// One request per command, with every field that command uses.
    static let sampleRequests: [ControlRequest] = [
        ControlRequest(command: .ping),
        ControlRequest(command: .load, load: LoadRequest(
            policy: "oom_largest", scope: "/sys/fs/cgroup/batch.slice", mode: "observe",
            overrides: [ParameterOverride(key: "min_points", value: "100")], alias: "batch-oom")),
        ControlRequest(command: .unload, name: "batch-oom"),
        ControlRequest(command: .status),
        ControlRequest(command: .events, query: EventQuery(policy: "batch-oom", sinceNs: 1_700_000_000_000_000_000, limit: 2)),
        ControlRequest(command: .setupZram, zram: ZramRequest(sizeBytes: 1_073_741_824, algorithm: "lz4", priority: 100)),
        ControlRequest(command: .teardownZram, zram: ZramRequest(device: "/dev/zram1")),
        ControlRequest(command: .tierStatus),
    ]

    /// A handler whose answer depends on every field of the request and on the peer.
    static func respond(to request: ControlRequest, peer: PeerCredentials) -> ControlResponse {
        let daemon = DaemonInfo(pid: peer.pid, version: "test", startedNs: 1, socketPath: "uid \(peer.uid) gid \(peer.gid)", stateDirectory: "/var/lib/mmpolicy")
        switch request.command {
        case .ping:
            return ControlResponse(daemon: daemon)
        case .load:
            guard let load = request.load else { return .failure("load without arguments") }
            return ControlResponse(policies: [PolicyStatus(
                name: load.alias ?? load.policy, kind: "oom", scope: load.scope ?? "system", mode: load.mode ?? "enforce",
                objectPath: "/usr/lib/mmpolicy/\(load.policy).bpf.o", loadedNs: 2, uptimeSeconds: 0, parameters: load.overrides)])
        case .unload:
            return request.name == "batch-oom" ? ControlResponse() : .failure("no policy named \(request.name ?? "nil")")
        case .status:
            return ControlResponse(daemon: daemon, policies: [])
        case .events:
            let query = request.query ?? EventQuery()
            let summary = "policy=\(query.policy ?? "any") since=\(query.sinceNs ?? 0) limit=\(query.limit ?? 0)"
            return ControlResponse(events: [EventRecord(id: 7, timeNs: query.sinceNs ?? 0, type: .decision, policy: query.policy, summary: summary,
                decision: ControlProtocolDocumentTests.decision.decision)])
        case .setupZram, .teardownZram:
            guard let zram = request.zram else { return .failure("\(request.command) without arguments") }
            var response = ControlResponse()
            response.zram = ZramSetupStatus(device: zram.device ?? "/dev/zram1", owner: "operator-request", hotAdded: true, uuid: "uid \(peer.uid)",
                                            sizeBytes: zram.sizeBytes ?? 0, algorithm: zram.algorithm ?? "lz4", priority: zram.priority ?? 100,
                                            active: request.command == .setupZram, setUpNs: 3)
            return response
        case .tierStatus:
            var response = ControlResponse()
            response.tier = ControlProtocolDocumentTests.tier
            return response
        }
    }

    // MARK: - Concurrency

    @Test func aSlowClientDoesNotHoldUpAnother() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        // The slow client may take 30 s; the fast one gives up after 10.
        let running = try RunningServer(path: path, requestTimeoutSeconds: 30) { request, peer in
            Self.respond(to: request, peer: peer)
        }
        let slow = try RawConnection(path)
        try slow.write(#"{"command":"pi"#)

        let started = ContinuousClock.now
        let response = try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping))
        let elapsed = ContinuousClock.now - started
        #expect(response.ok && response.daemon?.pid == getpid())
        #expect(elapsed < .seconds(5), "the second client waited \(elapsed) behind the slow one")

        // The slow client, finishing its line, is still answered.
        try slow.write(#"ng","version":2}"# + "\n")
        let slowResponse = try slow.readResponse()
        #expect(slowResponse.ok && slowResponse.daemon?.pid == getpid())
        try await running.stop()
    }

    // MARK: - Bad requests

    @Test func idleConnectionsDoNotHoldEverySlot() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        // More silent connections than the server serves at once.
        let idle = try (0..<(ControlServer.maxConcurrentConnections + 16)).map { _ in try RawConnection(path) }
        usleep(50_000)  // let the server accept them all

        let started = ContinuousClock.now
        let response = try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping))
        let elapsed = ContinuousClock.now - started
        #expect(response.ok && response.daemon?.pid == getpid(), "\(response.error ?? "")")
        #expect(elapsed < .seconds(1), "the client waited \(elapsed) behind \(idle.count) idle connections")

        // Each idle connection is answered and closed after its first-byte deadline (0.5 s), not the request timeout (5 s).
        let answered = try idle[0].readResponse()
        #expect(!answered.ok && answered.error?.contains("nothing came within 0.5 s") == true, "\(answered.error ?? "")")
        #expect(ContinuousClock.now - started < .seconds(3))
        try await running.stop()
    }

    @Test func aLoadRequestWithoutOverridesDecodes() throws {
        let request = try JSONDecoder().decode(ControlRequest.self, from: Data(#"{"command":"load","load":{"policy":"oom_largest"},"version":2}"#.utf8))
        #expect(request.load == LoadRequest(policy: "oom_largest"))
        #expect(request.load?.overrides == [])
        let full = ControlSocketTests.sampleRequests[1]
        #expect(try JSONDecoder().decode(ControlRequest.self, from: JSONEncoder().encode(full)) == full)
        // A policy is still required.
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(LoadRequest.self, from: Data(#"{"overrides":[]}"#.utf8))
        }
    }

    @Test func aLoadRequestWithoutOverridesIsServed() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        let connection = try RawConnection(path)
        try connection.write(#"{"command":"load","load":{"policy":"oom_largest"},"version":2}"# + "\n")
        let response = try connection.readResponse()
        #expect(response.ok && response.policies?.first?.name == "oom_largest", "\(response.error ?? "")")
        try await running.stop()
    }

    @Test(arguments: [
        ("this is not json\n", "not valid JSON"),
        (#"{"version":2}"# + "\n", "`command` is missing"),
        (#"{"version":2,"command":"reboot"}"# + "\n", "`command`"),
        (#"{"version":2,"command":"load","load":{"scope":"system"}}"# + "\n", "`load.policy` is missing"),
        (#"{"version":"one","command":"ping"}"# + "\n", "`version`"),
    ])
    func aMalformedRequestGetsAFailureNamingTheProblem(line: String, problem: String) async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let recorder = Recorder()
        let running = try RunningServer(path: path) { request, peer in
            recorder.record(request, peer)
            return ControlResponse()
        }
        let connection = try RawConnection(path)
        try connection.write(line)
        let response = try connection.readResponse()
        #expect(!response.ok)
        #expect(response.error?.contains("malformed request") == true)
        #expect(response.error?.contains(problem) == true, "\(response.error ?? "")")
        #expect(recorder.requests.isEmpty)
        try await running.stop()
    }

    @Test func anOversizeLineIsRefusedAndTheServerGoesOn() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        let connection = try RawConnection(path)
        // The server stops reading after the limit and closes: the write may
        // fail part way, and the answer must still be there to read.
        try? connection.write(String(repeating: "x", count: ControlProtocol.maxMessageBytes + 4096))
        let response = try connection.readResponse()
        #expect(!response.ok)
        #expect(response.error?.contains("limit of \(ControlProtocol.maxMessageBytes) bytes") == true, "\(response.error ?? "")")

        let next = try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping))
        #expect(next.ok)
        try await running.stop()
    }

    @Test func anotherProtocolVersionIsRefusedNamingBothVersions() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let recorder = Recorder()
        let running = try RunningServer(path: path) { request, peer in
            recorder.record(request, peer)
            return ControlResponse()
        }
        var request = ControlRequest(command: .ping)
        request.version = ControlProtocol.version + 1
        let response = try ControlClient(socketPath: path, timeoutSeconds: 10).send(request)
        #expect(!response.ok)
        #expect(response.error?.contains("uses version \(ControlProtocol.version + 1)") == true, "\(response.error ?? "")")
        #expect(response.error?.contains("speaks version \(ControlProtocol.version)") == true)
        #expect(recorder.requests.isEmpty)
        try await running.stop()
    }

    @Test func aSilentOrUnterminatedRequestIsAnsweredWithTheReason() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path, requestTimeoutSeconds: 0.5) { _, _ in ControlResponse() }

        let silent = try RawConnection(path)
        let timedOut = try silent.readResponse()
        #expect(!timedOut.ok && timedOut.error?.contains("no complete request line") == true, "\(timedOut.error ?? "")")

        let unterminated = try RawConnection(path)
        try unterminated.write(#"{"command":"ping","version":2}"#)
        unterminated.finishWriting()
        let noNewline = try unterminated.readResponse()
        #expect(!noNewline.ok && noNewline.error?.contains("without a newline") == true, "\(noNewline.error ?? "")")
        try await running.stop()
    }

    // MARK: - Who may connect

    @Test func aPeerWhoseUIDIsNotAllowedIsRefused() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let recorder = Recorder()
        let running = try RunningServer(path: path, allowedUIDs: [12345]) { request, peer in
            recorder.record(request, peer)
            return ControlResponse()
        }
        let response = try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping))
        #expect(!response.ok)
        let error = response.error ?? ""
        #expect(error.hasPrefix("permission denied: mmpolicy's control socket at \(path) accepts only uid 12345"), "\(error)")
        #expect(error.contains("the peer is uid \(geteuid()) (pid \(getpid()))"), "\(error)")
        #expect(recorder.requests.isEmpty)
        try await running.stop()
    }

    @Test func aNonRootProcessIsRefusedByItsCredentialsNotByFileModes() async throws {
        let python = "/usr/bin/python3", setpriv = "/usr/bin/setpriv"
        try #require(geteuid() == 0, "needs root to switch to uid 65534")
        try #require(access(python, X_OK) == 0 && access(setpriv, X_OK) == 0, "needs \(python) and \(setpriv)")
        let scratch = try ScratchDirectory()
        #expect(chmod(scratch.path, 0o755) == 0)  // mkdtemp made it 0700.
        let path = scratch.path + "/ctl.sock"
        let recorder = Recorder()
        let running = try RunningServer(path: path) { request, peer in
            recorder.record(request, peer)
            return ControlResponse()
        }
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(sys.argv[1])
            except OSError as e:
                print("connect failed:", type(e).__name__); sys.exit(0)
            try:
                s.sendall(b'{"command":"ping","version":2}\\n')
            except OSError:
                pass  # refused before reading: the answer is still there
            data = b""
            while not data.endswith(b"\\n"):
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            sys.stdout.write(data.decode())
            """
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script, path]

        // At mode 0600 the file itself keeps uid 65534 out.
        let blocked = try runCommand(setpriv, asNobody)
        #expect(blocked.status == 0 && blocked.output.contains("connect failed: PermissionError"), "\(blocked.output)")

        // Opened up to everyone, the socket still refuses: SO_PEERCRED says uid 65534.
        #expect(chmod(path, 0o666) == 0)
        let refused = try runCommand(setpriv, asNobody)
        #expect(refused.status == 0, "\(refused.output)")
        let response = try JSONDecoder().decode(ControlResponse.self, from: Data(refused.output.utf8))
        #expect(!response.ok)
        let error = response.error ?? ""
        #expect(error.hasPrefix("permission denied: mmpolicy's control socket at \(path) accepts root only; the peer is uid 65534 (pid "), "\(error)")
        #expect(error.hasSuffix("Run the command as root, e.g. with sudo."))
        #expect(recorder.requests.isEmpty)
        try await running.stop()
    }

    // MARK: - Client errors

    @Test func theClientSaysTheDaemonIsNotRunningWhenThereIsNoSocketFile() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let error = try #require(throws: ControlClientError.self) {
            try ControlClient(socketPath: path).send(ControlRequest(command: .ping))
        }
        #expect(error == .notRunning(path: path, errno: .noSuchFileOrDirectory))
        #expect(error.description == "the mmpolicy daemon is not running: nothing is listening on \(path). Start it with `mmpolicy daemon` (or `make run`), or pass --socket if it uses another path.")
    }

    @Test func theClientSaysTheDaemonIsNotRunningOnAStaleSocketFile() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        try makeStaleSocket(path)
        let error = try #require(throws: ControlClientError.self) {
            try ControlClient(socketPath: path).send(ControlRequest(command: .ping))
        }
        #expect(error == .notRunning(path: path, errno: .connectionRefused))
    }

    @Test func theClientTimesOutOnADaemonThatNeverAnswers() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { _, _ in
            try? await Task.sleep(for: .seconds(1))
            return ControlResponse()
        }
        let error = try #require(throws: ControlClientError.self) {
            try ControlClient(socketPath: path, timeoutSeconds: 0.3).send(ControlRequest(command: .status))
        }
        #expect(error == .timedOut(path: path, seconds: 0.3, stage: "waiting for the response"))
        #expect(error.description.contains("did not answer within 0.3 s"))
        try await running.stop()
    }

    // MARK: - Socket file lifecycle

    @Test func aServerReplacesAStaleSocketFile() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        try makeStaleSocket(path)
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        #expect(try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping)).ok)
        try await running.stop()
    }

    @Test func aSecondServerOnALiveSocketIsRefusedAndTheFirstKeepsServing() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        let error = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: path) { _, _ in ControlResponse() }
        }
        #expect(error == .alreadyListening(path: path))
        #expect(error.description.hasPrefix("another mmpolicy daemon is already listening on \(path)."))
        #expect(try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping)).ok)
        try await running.stop()
    }

    @Test func aServerWillNotReplaceAFileThatIsNotASocket() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write("ctl.sock", "keep me")
        let error = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: path) { _, _ in ControlResponse() }
        }
        #expect(error == .notASocket(path: path))
        #expect(access(path, F_OK) == 0)
    }

    @Test func shutdownRemovesTheSocketAndLaterClientsHearTheDaemonIsNotRunning() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { request, peer in Self.respond(to: request, peer: peer) }
        #expect(try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping)).ok)
        try await running.stop()  // Returns only once run() has returned.
        #expect(access(path, F_OK) != 0 && errno == ENOENT)
        #expect(throws: ControlClientError.notRunning(path: path, errno: .noSuchFileOrDirectory)) {
            try ControlClient(socketPath: path).send(ControlRequest(command: .ping))
        }
    }

    @Test func cancellingRunStopsTheServer() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let server = try ControlServer(socketPath: path) { _, _ in ControlResponse() }
        let task = Task { try await server.run() }
        #expect(try ControlClient(socketPath: path, timeoutSeconds: 10).send(ControlRequest(command: .ping)).ok)
        task.cancel()
        try await task.value
        #expect(access(path, F_OK) != 0)
    }

    @Test func shutdownLeavesASocketFileThatIsNoLongerItsOwn() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path + "/ctl.sock"
        let running = try RunningServer(path: path) { _, _ in ControlResponse() }
        #expect(unlink(path) == 0)
        try makeStaleSocket(path)  // Someone else's file now.
        try await running.stop()
        #expect(access(path, F_OK) == 0)
    }
}

/// docs/control-protocol.md shows these values exactly as the code encodes
/// them; when a message type changes, this test prints the new lines.
@Suite struct ControlProtocolDocumentTests {
    static let daemon = DaemonInfo(pid: 812, version: "0.1.0", startedNs: 1_767_225_600_000_000_000,
                                   socketPath: "/run/mmpolicy/mmpolicy.sock", stateDirectory: "/var/lib/mmpolicy")
    static let decision = EventRecord(
        id: 42, timeNs: 1_767_225_900_000_000_000, type: .decision, policy: "batch-oom",
        summary: "observed: would kill pid 4242 (worker), score 900; the kernel chose the same",
        decision: DecisionRecord(
            kind: PolicyKind(rawValue: "oom"), trigger: "memcg-oom", scope: "/sys/fs/cgroup/batch.slice",
            origin: "/sys/fs/cgroup/batch.slice", mode: .observe, outcome: .observed, wokenBy: "memcg-eventfd",
            timing: .init(decidedUs: 180.5, callbackUs: 12.25), agreement: .init(kernelChoice: "pid 4242", agrees: true),
            payload: DecisionPayload(version: 1, body: .object([
                "candidates": .integer(3), "victimPID": .integer(4242), "victimComm": .string("worker"), "score": .integer(900),
                "reason": .string("largest rss"), "victimRSSBytes": .integer(1_073_741_824), "kernelVictimPID": .integer(4242),
            ]))))
    static let loaded = EventRecord(id: 41, timeNs: 1_767_225_660_000_000_000, type: .loaded, policy: "batch-oom",
                                    summary: "loaded oom_largest on /sys/fs/cgroup/batch.slice (observe)")
    static let batchOOM = PolicyStatus(
        name: "batch-oom", kind: "oom", scope: "/sys/fs/cgroup/batch.slice", mode: "observe",
        objectPath: "/usr/lib/mmpolicy/oom_largest.bpf.o", loadedNs: 1_767_225_660_000_000_000, uptimeSeconds: 0,
        parameters: [ParameterOverride(key: "min_points", value: "100")])

    static let failed = FailedPolicy(
        name: "batch-oom", source: "oom_largest", scope: "/sys/fs/cgroup/batch.slice", mode: "observe",
        error: "no policy named 'oom_largest' in the daemon's policy directory /etc/mmpolicy/policies (known: none). Give one of those names, or a path to a manifest (.toml).",
        failedNs: 1_767_225_600_500_000_000)

    static let zram = ZramSetupStatus(device: "/dev/zram1", owner: "operator-request", hotAdded: true,
                                      uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427", sizeBytes: 1_073_741_824, algorithm: "lz4",
                                      priority: 100, active: true, setUpNs: 1_767_225_700_000_000_000)
    static let tier = TierStatus(
        areas: [SwapAreaStatus(path: "/dev/zram1", type: "partition", sizeBytes: 1_073_737_728, usedBytes: 268_435_456, priority: 100,
                               zram: ZramAreaStatus(storedBytes: 268_435_456, compressedBytes: 89_478_485, memoryBytes: 92_274_688, algorithm: "lz4"),
                               setUpFor: "operator-request")],
        zram: [zram], relyingPolicies: ["tier_cold"])

    /// (what the document calls it, the value) in the document's order.
    static var examples: [(String, any Encodable)] {
        var running = batchOOM
        running.uptimeSeconds = 240
        running.decisions = DecisionCounts(total: 1, observed: 1, agreements: 1)
        running.lastDecision = decision
        running.bpfRunCount = 1
        running.bpfRunTimeNs = 12_250
        let requests = ControlSocketTests.sampleRequests
        func zramResponse(_ status: ZramSetupStatus) -> ControlResponse {
            var response = ControlResponse()
            response.zram = status
            return response
        }
        var tornDown = zram
        tornDown.active = false
        tornDown.outcome = "swapped off and removed (mmpolicy had added it)"
        var tierResponse = ControlResponse()
        tierResponse.tier = tier
        var newer = ControlRequest(command: .ping)
        newer.version = 3
        return [
            ("ping request", requests[0]), ("ping response", ControlResponse(daemon: daemon)),
            ("load request", requests[1]), ("load response", ControlResponse(policies: [batchOOM])),
            ("unload request", requests[2]), ("unload response", ControlResponse()),
            ("status request", requests[3]), ("status response", ControlResponse(daemon: daemon, policies: [running])),
            ("failed-policy status response", ControlResponse(daemon: daemon, policies: [], failedPolicies: [failed])),
            ("events request", requests[4]), ("events response", ControlResponse(events: [loaded, decision])),
            ("setupZram request", requests[5]), ("setupZram response", zramResponse(zram)),
            ("teardownZram request", requests[6]), ("teardownZram response", zramResponse(tornDown)),
            ("tierStatus request", requests[7]), ("tierStatus response", tierResponse),
            ("newer-version request", newer),
            ("failure response", ControlResponse.failure("unsupported control protocol version: the request uses version 3, and this daemon speaks version 2. Use the mmpolicy CLI from the same release as the daemon.")),
        ]
    }

    @Test func everyExampleInTheDocumentIsWhatTheCodeEncodes() throws {
        let document = try readFile(TestPaths.repository + "/docs/control-protocol.md")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for (name, value) in Self.examples {
            let line = String(decoding: try encoder.encode(value), as: UTF8.self)
            #expect(document.contains("\n" + line + "\n"), "the \(name) in docs/control-protocol.md should be:\n\(line)")
        }
    }
}

// MARK: - Helpers

/// A server running in a task for the length of a test.
private struct RunningServer {
    let server: ControlServer
    let task: Task<Void, any Error>

    init(path: String, allowedUIDs: Set<UInt32> = [0], requestTimeoutSeconds: Double = 5,
         handler: @escaping @Sendable (ControlRequest, PeerCredentials) async -> ControlResponse) throws {
        let server = try ControlServer(socketPath: path, allowedUIDs: allowedUIDs, requestTimeoutSeconds: requestTimeoutSeconds, handler: handler)
        self.server = server
        task = Task { try await server.run() }
    }

    /// Shuts the server down and waits for `run()` to return.
    func stop() async throws {
        server.shutdown()
        try await task.value
    }
}

/// What a handler was called with.
private final class Recorder: Sendable {
    private let calls = Mutex<[(ControlRequest, PeerCredentials)]>([])
    func record(_ request: ControlRequest, _ peer: PeerCredentials) { calls.withLock { $0.append((request, peer)) } }
    var requests: [ControlRequest] { calls.withLock { $0.map(\.0) } }
    var peers: [PeerCredentials] { calls.withLock { $0.map(\.1) } }
}

/// A client socket driven byte by byte, to send what `ControlClient` never would.
private final class RawConnection {
    let fd: Int32

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)  // No test waits forever.
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { let error = Errno(rawValue: errno); close(fd); throw error }
    }

    deinit { close(fd) }

    func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Errno(rawValue: errno) }
            offset += n
        }
    }

    func finishWriting() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads up to the first newline (or the end) and decodes it.
    func readResponse() throws -> ControlResponse {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.last != UInt8(ascii: "\n") {
            let n = recv(fd, &byte, 1, 0)
            if n == 1 { bytes.append(byte); continue }
            if n < 0 && errno != ECONNRESET { throw Errno(rawValue: errno) }
            break
        }
        return try JSONDecoder().decode(ControlResponse.self, from: Data(bytes))
    }
}

/// Leaves a socket file at `path` with nothing listening: bound, then closed
/// without unlinking, as a crashed daemon would.
private func makeStaleSocket(_ path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Errno(rawValue: errno) }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0 else { throw Errno(rawValue: errno) }
}
