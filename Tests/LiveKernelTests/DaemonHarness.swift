import BPFKit
import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `mmpolicy daemon` process for end-to-end tests: its own socket,
/// state directory, policy directory and log file, stopped with SIGTERM (or
/// killed) when released.
final class DaemonProcess {
    let scratch: ScratchDirectory
    let socket: String
    let stateDirectory: String
    let policyDirectory: String
    let logPath: String
    private(set) var pid: pid_t = 0

    /// `policies`: extra manifests (name -> TOML) in the daemon's policy
    /// directory, beside copies of the in-tree ones. `defaultSet`: the
    /// default.toml text (empty: no policies on first start).
    init(policies: [String: String] = [:], defaultSet: String = "", stateDirectory: String? = nil,
         scratch: ScratchDirectory? = nil) throws {
        let scratch = try scratch ?? ScratchDirectory(prefix: "mmpolicy-e2e")
        self.scratch = scratch
        socket = scratch.path + "/mmpolicy.sock"
        self.stateDirectory = stateDirectory ?? scratch.path + "/state"
        policyDirectory = scratch.path + "/policies"
        logPath = scratch.path + "/daemon-\(UInt32.random(in: 0...UInt32.max)).log"
        if access(policyDirectory, F_OK) != 0 {
            _ = try scratch.makeDirectory("policies")
            for name in ["oom_largest", "oom_growth"] {
                let text = try readFile(TestPaths.policies + "/\(name).toml")
                _ = try scratch.write("policies/\(name).toml", text)
            }
            for (name, text) in policies { _ = try scratch.write("policies/\(name).toml", text) }
            _ = try scratch.write("policies/default.toml", defaultSet)
        }
        try start()
    }

    /// Starts (or restarts) the daemon and waits until it answers.
    func start() throws {
        let arguments = ["daemon", "--socket", socket, "--state-dir", stateDirectory, "--policy-dir", policyDirectory, "--log-level", "debug"]
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw DaemonHarnessError.spawn(errno: errno) }
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        let path = TestPaths.product("mmpolicy")
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let environment: [String] = ["MMPOLICY_OBJECT_PATH=\(TestPaths.objectDirectory)", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        let env = environment.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; env.forEach { free($0) } }
        let rc = posix_spawn(&pid, path, &actions, nil, argv, env)
        guard rc == 0 else { throw DaemonHarnessError.spawn(errno: rc) }
        for _ in 0..<200 {
            if (try? cli(["status"]).status) == 0 { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pid = 0
                throw DaemonHarnessError.exited(log: log)
            }
            usleep(50_000)
        }
        throw DaemonHarnessError.notReady(log: log)
    }

    /// Runs `mmpolicy ARGS --socket S`.
    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runCommand(TestPaths.product("mmpolicy"), arguments + ["--socket", socket])
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        guard pid > 0 else { return -1 }
        kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    var log: String { (try? readFile(logPath)) ?? "" }

    /// The audit trail as JSON text.
    func events(_ extra: [String] = []) throws -> String { try cli(["events", "--json", "--limit", "1000"] + extra).output }

    deinit { if pid > 0 { stop() } }
}

enum DaemonHarnessError: Error, CustomStringConvertible {
    case notReady(log: String)
    case exited(log: String)
    case spawn(errno: Int32)
    var description: String {
        switch self {
        case .spawn(let code): return "starting the daemon failed: errno \(code)"
        case .notReady(let log): return "the daemon did not answer within 10 s; its log:\n\(log)"
        case .exited(let log): return "the daemon exited at start; its log:\n\(log)"
        }
    }
}

/// Waits until `condition` holds, at most `seconds`.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// Whether process `pid` is gone (a zombie counts as gone).
func isGone(_ pid: pid_t) -> Bool { !ProcessSnapshot.isAlive(pid: pid) }
