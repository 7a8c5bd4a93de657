// Child processes of the OOM benchmark: workloads, the daemon, the CLI, earlyoom.
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a child's stdout and stderr go.
enum ChildOutput {
    /// stdout is a pipe this object reads (`readLine`, `readAll`); stderr is inherited.
    case pipe
    /// stdout and stderr are appended to this file (kept for diagnosis).
    case file(String)
    /// Both to /dev/null.
    case null
}

/// One child process started with posix_spawn, owning its pidfd and (with
/// `.pipe`) the read end of its stdout. Released unreaped, it is SIGKILLed
/// and reaped, so no benchmark path can leave a workload behind.
///
/// The bench blocks SIGINT/SIGTERM/SIGHUP in all its threads (see
/// `Interrupt`); a spawned child gets an empty signal mask and default
/// dispositions back, or it could not be stopped by SIGTERM (earlyoom's
/// first signal, the daemon's shutdown signal).
final class ChildProcess {
    let pid: pid_t
    let name: String
    /// Polls readable once the process has exited (its memory is released).
    let pidfd: PidFD
    private var stdoutFD: Int32 = -1
    private var buffered: [UInt8] = []
    private(set) var status: Int32?

    init(_ path: String, _ arguments: [String], output: ChildOutput = .pipe, environment extra: [String: String] = [:]) throws {
        name = (path.split(separator: "/").last.map(String.init) ?? path) + (arguments.first.map { " " + $0 } ?? "")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeFDs: [Int32] = [-1, -1]
        switch output {
        case .pipe:
            guard LibC.pipe2(&pipeFDs, O_CLOEXEC) == 0 else { throw BenchError("pipe: errno \(errno)") }
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        case .file(let file):
            posix_spawn_file_actions_addopen(&actions, 1, file, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .null:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var env: [String] = []
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "="), extra[String(text[..<eq])] != nil {} else { env.append(text) }
            index += 1
        }
        env += extra.map { "\($0.key)=\($0.value)" }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, envp)
        if pipeFDs[1] >= 0 { close(pipeFDs[1]) }
        guard rc == 0 else {
            if pipeFDs[0] >= 0 { close(pipeFDs[0]) }
            throw BenchError("cannot start \(path): \(String(cString: strerror(rc)))")
        }
        pid = child
        stdoutFD = pipeFDs[0]
        // Our unreaped child: its pid cannot be reused, so the pidfd names it.
        do { pidfd = try PidFD(pid: child) } catch {
            Glibc.kill(child, SIGKILL)
            waitpid(child, nil, 0)
            if stdoutFD >= 0 { close(stdoutFD) }
            throw BenchError("pidfd_open(\(child)): \(error)")
        }
    }

    /// The next line of stdout, waiting up to `timeoutMs`; nil at EOF or timeout.
    func readLine(timeoutMs: Int32) -> String? {
        let deadline = monotonicNanoseconds() + UInt64(timeoutMs) * 1_000_000
        while true {
            if let newline = buffered.firstIndex(of: 10) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return line
            }
            let now = monotonicNanoseconds()
            guard stdoutFD >= 0, now < deadline else { return nil }
            guard pollReadable(stdoutFD, timeoutMs: Int32((deadline - now) / 1_000_000 + 1)) else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(stdoutFD, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffered += chunk[..<n]
        }
    }

    /// The complete lines already on stdout, without waiting (for a child
    /// that reports periodically while the benchmark samples).
    func availableLines() -> [String] {
        var lines: [String] = []
        while stdoutFD >= 0, pollReadable(stdoutFD, timeoutMs: 0) {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(stdoutFD, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffered += chunk[..<n]
        }
        while let newline = buffered.firstIndex(of: 10) {
            lines.append(String(decoding: buffered[..<newline], as: UTF8.self))
            buffered.removeSubrange(...newline)
        }
        return lines
    }

    /// Everything on stdout until EOF (for short-lived CLI commands).
    func readAll() -> String {
        var out = buffered
        buffered = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while stdoutFD >= 0 {
            let n = read(stdoutFD, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Waits for the workload's "ready <pid>" line (its memory is resident).
    func waitReady(timeoutMs: Int32 = 20_000) throws {
        guard let line = readLine(timeoutMs: timeoutMs), line.hasPrefix("ready") else {
            kill(SIGKILL)
            throw BenchError("\(name) (pid \(pid)) did not become ready: \(wait().map(describeStatus) ?? "still running")")
        }
    }

    func kill(_ signal: Int32) {
        guard status == nil else { return }
        try? pidfd.sendSignal(signal)
    }

    /// Reaps the child if it has exited, without waiting.
    @discardableResult
    func reapIfExited() -> Int32? {
        if status == nil {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid { status = raw }
        }
        return status
    }

    /// Waits for the child to exit (up to `timeoutMs`, forever if nil); its raw wait status.
    @discardableResult
    func wait(timeoutMs: Int32? = nil) -> Int32? {
        if let status { return status }
        if let timeoutMs, !pidfd.waitForExit(timeoutMs: timeoutMs) { return nil }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 { if errno != EINTR { return nil } }
        status = raw
        return raw
    }

    /// SIGTERM, then SIGKILL after `graceMs`; reaps. The raw wait status.
    @discardableResult
    func stop(graceMs: Int32 = 5000) -> Int32? {
        if status != nil { return status }
        kill(SIGTERM)
        if let done = wait(timeoutMs: graceMs) { return done }
        kill(SIGKILL)
        return wait()
    }

    deinit {
        if status == nil {
            kill(SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        }
        if stdoutFD >= 0 { close(stdoutFD) }
    }
}

/// "exit 0", "signal 9 (SIGKILL)", ... for a raw wait status.
func describeStatus(_ raw: Int32) -> String {
    let signal = raw & 0x7f
    if signal == 0 { return "exit \((raw >> 8) & 0xff)" }
    let names: [Int32: String] = [SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT"]
    return "signal \(signal)" + (names[signal].map { " (\($0))" } ?? "")
}

/// The signal that ended a process, from its raw wait status; nil if it exited.
func terminatingSignal(_ raw: Int32) -> Int32? {
    let signal = raw & 0x7f
    return signal == 0 || signal == 0x7f ? nil : signal
}

/// Runs `path arguments` to completion; its stdout and exit status.
func runCommand(_ path: String, _ arguments: [String], environment: [String: String] = [:], timeoutMs: Int32 = 60_000) throws -> (output: String, status: Int32) {
    let child = try ChildProcess(path, arguments, output: .pipe, environment: environment)
    let output = child.readAll()
    guard let status = child.wait(timeoutMs: timeoutMs) else {
        child.kill(SIGKILL)
        throw BenchError("\(path) \(arguments.joined(separator: " ")) did not finish within \(timeoutMs / 1000) s")
    }
    return (output, status)
}
