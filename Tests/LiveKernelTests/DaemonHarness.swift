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

/// A real `mmpolicy daemon` process for end-to-end tests: its own socket,
/// state directory, policy directory and log file, stopped with SIGTERM (or
/// killed) when released, together with any guardian of its state directory
/// still running then.
///
/// The test process makes itself the reaper of its descendants' orphans, so
/// a guardian whose daemon was killed is re-parented to it (not to an init
/// that may never reap) and its exit status can be read.
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
        try CurrentProcess.becomeChildSubreaper()
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

    /// Sends `signal` (SIGTERM: a clean shutdown) and waits for the exit, at
    /// most 30 s before SIGKILL; returns the exit status (128 + signal if killed).
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        guard pid > 0 else { return -1 }
        kill(pid, signal)
        var status = reap(pid, timeoutSeconds: 30)
        if status == nil {
            kill(pid, SIGKILL)
            status = reap(pid, timeoutSeconds: 10)
        }
        pid = 0
        return status ?? -1
    }

    var log: String { (try? readFile(logPath)) ?? "" }

    /// The audit trail as JSON text.
    func events(_ extra: [String] = []) throws -> String { try cli(["events", "--json", "--limit", "1000"] + extra).output }

    /// Running guardians (`mmpolicy-guard`) of this daemon's state directory.
    func guardians() -> [ProcessSnapshot] { guardianProcesses(stateDirectory: stateDirectory) }

    deinit {
        if pid > 0 { stop() }
        // A guardian still restoring after a kill gets a moment to finish; then none may be left.
        _ = eventually(5) { guardians().isEmpty }
        for guardian in guardians() {
            kill(guardian.pid, SIGKILL)
            _ = reap(guardian.pid, timeoutSeconds: 2)
        }
    }
}

/// Running `mmpolicy-guard` processes started for `stateDirectory`.
func guardianProcesses(stateDirectory: String) -> [ProcessSnapshot] {
    ProcessSnapshot.allPIDs().compactMap { pid in
        guard let process = try? ProcessSnapshot.read(pid: pid), process.comm == "mmpolicy-guard", !process.hasExited,
              let cmdline = try? readFile("/proc/\(pid)/cmdline") else { return nil }
        let arguments = cmdline.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        guard let index = arguments.firstIndex(of: "--state-dir"), index + 1 < arguments.count,
              arguments[index + 1] == stateDirectory else { return nil }
        return process
    }
}

/// Waits up to `timeoutSeconds` for child `pid` to exit and reaps it; its
/// exit status (128 + signal if killed), or nil if it still runs. A pid that
/// is not (or no longer) our child gives -1.
func reap(_ pid: pid_t, timeoutSeconds: Double) -> Int32? {
    let deadline = monotonicNanoseconds() + UInt64(timeoutSeconds * 1e9)
    while true {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
        if rc < 0 { return -1 }
        if monotonicNanoseconds() >= deadline { return nil }
        usleep(5_000)
    }
}

/// Runs a program to completion, at most `timeoutSeconds` (then SIGKILL);
/// its exit status (nil if it had to be killed), stdout and stderr together,
/// and how long it ran.
func runBounded(_ path: String, _ arguments: [String], environment: [String] = [], timeoutSeconds: Double)
    throws -> (status: Int32?, output: String, seconds: Double) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw DaemonHarnessError.spawn(errno: errno) }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }  // children spawned by tests running alongside must not hold it
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
    let started = monotonicNanoseconds()
    var child: pid_t = 0
    let rc = posix_spawn(&child, path, &actions, nil, argv, envp)
    close(fds[1])
    defer { close(fds[0]) }
    guard rc == 0 else { throw DaemonHarnessError.spawn(errno: rc) }
    let deadline = started + UInt64(timeoutSeconds * 1e9)
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    var open = true
    while open {
        let left = Int64(deadline) - Int64(monotonicNanoseconds())
        if left <= 0 { break }
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(left / 1_000_000) + 1) > 0 else { continue }
        let n = read(fds[0], &chunk, chunk.count)
        if n > 0 { output += chunk[0..<n] } else if n == 0 || errno != EINTR { open = false }
    }
    let status = reap(child, timeoutSeconds: max(0, Double(Int64(deadline) - Int64(monotonicNanoseconds())) / 1e9))
    if status == nil {
        kill(child, SIGKILL)
        _ = reap(child, timeoutSeconds: 5)
    }
    return (status, String(decoding: output, as: UTF8.self), Double(monotonicNanoseconds() - started) / 1e9)
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

/// `policy`'s decisions as the daemon's audit trail has them (`events --json`), oldest first.
func decisions(_ daemon: DaemonProcess, policy: String) throws -> [DecisionRecord] {
    try JSONDecoder().decode([EventRecord].self, from: Data(daemon.events(["--policy", policy]).utf8)).compactMap(\.decision)
}
