#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import MMPolicyCore
import Synchronization
import SystemPackage

import Glibc

/// Who is on the other end of a control connection, as the kernel recorded
/// it at connect time (SO_PEERCRED): what the daemon trusts instead of
/// anything the request says about itself.
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// The daemon's side of the control socket (see `ControlProtocol`).
///
/// Exists to keep the socket's rules in one place: one live daemon per path,
/// stale files cleaned, root-only peers (checked with SO_PEERCRED, not file
/// permissions alone), bounded request size and time, and slow or idle
/// clients that cannot hold up others: a connection counts against the
/// limit of ``maxConcurrentConnections`` only once its first byte arrived,
/// and one that sends nothing within ``firstByteTimeoutSeconds`` is answered
/// and closed. Accepting runs on a dedicated thread blocked in
/// poll(), and each connection's I/O on a thread of its own, so no
/// Swift-concurrency thread ever waits on a socket; only `handler` runs as a
/// task.
public final class ControlServer: Sendable {
    public let socketPath: String
    public let allowedUIDs: Set<UInt32>
    /// How long a client may take to send its request line.
    public let requestTimeoutSeconds: Double
    /// How long a new connection may stay silent before it is answered
    /// and closed. Until its first byte it holds no serving slot.
    public let firstByteTimeoutSeconds: Double
    /// Connections served at once (counted from their first byte); more are
    /// answered "busy" and closed.
    public static let maxConcurrentConnections = 64
    /// Connections waiting for their first byte at once (each for at most
    /// ``firstByteTimeoutSeconds``); more are answered "busy" and closed.
    public static let maxWaitingConnections = 1024

    private let handler: @Sendable (ControlRequest, PeerCredentials) async -> ControlResponse
    private let state: Mutex<State>
    /// The bound socket file's identity, so `shutdown` removes only our own file.
    private let socketDevice: UInt64
    private let socketInode: UInt64

    private enum Phase { case ready, running, stopped }

    private struct State {
        var phase: Phase = .ready
        /// Owned here; the accept thread borrows the descriptor numbers, and
        /// `shutdown` joins that thread before dropping (closing) them.
        var listener: SocketDescriptor?
        var wakeReceiver: SocketDescriptor?
        var wakeSender: SocketDescriptor?
        var acceptThread: pthread_t?
        var acceptLoopExited = false
        var activeConnections = 0
        /// Accepted, but no byte received yet.
        var waitingConnections = 0
        /// `run()`'s caller, resumed once accepting has stopped and the last
        /// connection is done.
        var finished: CheckedContinuation<Void, Never>?

        mutating func takeFinishedIfDrained() -> CheckedContinuation<Void, Never>? {
            guard acceptLoopExited, activeConnections == 0, waitingConnections == 0 else { return nil }
            defer { finished = nil }
            return finished
        }
    }

    /// Binds and listens on `socketPath` (mode 0600), creating its directory
    /// (0755) if missing and replacing a stale socket file nobody answers on.
    /// Nothing is accepted until `run()`.
    public init(
        socketPath: String,
        allowedUIDs: Set<UInt32> = [0],
        requestTimeoutSeconds: Double = 5,
        firstByteTimeoutSeconds: Double = 0.5,
        handler: @escaping @Sendable (ControlRequest, PeerCredentials) async -> ControlResponse
    ) throws(ControlSocketError) {
        self.socketPath = socketPath
        self.allowedUIDs = allowedUIDs
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.firstByteTimeoutSeconds = min(firstByteTimeoutSeconds, requestTimeoutSeconds)
        self.handler = handler
        guard let address = UnixSocketAddress(socketPath) else {
            throw .pathTooLong(path: socketPath, maxBytes: UnixSocketAddress.maxPathBytes)
        }
        let directory = try Self.openParentDirectory(of: socketPath)
        try Self.removeStaleSocket(at: socketPath, in: directory, address: address)

        func fail(_ operation: String) -> ControlSocketError {
            .setup(path: socketPath, operation: operation, errno: Errno(rawValue: errno))
        }
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard raw >= 0 else { throw fail("socket(AF_UNIX, SOCK_STREAM)") }
        let listener = SocketDescriptor(adopting: raw)
        guard address.withSockaddr({ bind(raw, $0, $1) }) == 0 else { throw fail("bind()") }
        // From here on the file is ours: remove it if setup fails.
        var info = stat()
        guard chmod(socketPath, 0o600) == 0 else { let error = fail("chmod(0600)"); unlink(socketPath); throw error }
        guard lstat(socketPath, &info) == 0 else { let error = fail("stat()"); unlink(socketPath); throw error }
        guard listen(raw, 64) == 0 else { let error = fail("listen()"); unlink(socketPath); throw error }
        // The wake channel: shutdown() writes a byte to one end, the accept
        // thread polls the other. (A socket pair rather than eventfd, which
        // Glibc's Swift module does not export.)
        var wakePair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &wakePair) == 0 else {
            let error = fail("socketpair()"); unlink(socketPath); throw error
        }
        socketDevice = UInt64(info.st_dev)
        socketInode = UInt64(info.st_ino)
        state = Mutex(State(listener: listener, wakeReceiver: SocketDescriptor(adopting: wakePair[0]),
                            wakeSender: SocketDescriptor(adopting: wakePair[1])))
    }

    deinit { shutdown() }

    /// Serves until `shutdown()` is called or the calling task is cancelled,
    /// then returns once connections already accepted have been answered.
    /// Returns at once if the server was already shut down; throws if another
    /// `run()` is serving or the accept thread cannot be started.
    public func run() async throws(ControlSocketError) {
        guard try startAccepting() else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                state.withLock { state in
                    state.finished = continuation
                    return state.takeFinishedIfDrained()
                }?.resume()
            }
        } onCancel: {
            // Not shutdown(): joining the accept thread here would deadlock,
            // since that thread resumes this very task.
            beginShutdown()
        }
        // Also covers an accept loop that stopped by itself (poll() failed).
        shutdown()
    }

    /// Starts the accept thread; false if the server was already shut down.
    private func startAccepting() throws(ControlSocketError) -> Bool {
        let outcome: Result<Bool, ControlSocketError> = state.withLock { state in
            switch state.phase {
            case .stopped: return .success(false)
            case .running: return .failure(.alreadyRunning(path: socketPath))
            case .ready: break
            }
            guard let listener = state.listener?.raw, let wake = state.wakeReceiver?.raw else { return .success(false) }
            switch PosixThread.start(name: "mmpolicy-ctl", { [self] in acceptLoop(listener: listener, wake: wake) }) {
            case .success(let thread):
                state.phase = .running
                state.acceptThread = thread
                return .success(true)
            case .failure(let error):
                return .failure(.setup(path: socketPath, operation: "pthread_create() for the accept thread", errno: error))
            }
        }
        return try outcome.get()
    }

    /// Stops accepting, closes the listening socket and removes the socket
    /// file if it is still the one this server bound. Connections already
    /// accepted are still answered (`run()` returns once they are). Safe to
    /// call more than once, from any thread or task.
    public func shutdown() {
        beginShutdown()
        finishShutdown()
    }

    /// The part of shutting down that never blocks, so it can run inside a
    /// task-cancellation handler: marks the server stopped, removes the
    /// socket file and wakes the accept thread (or, if it never started,
    /// closes the descriptors at once).
    private func beginShutdown() {
        let first = state.withLock { state in
            guard state.phase != .stopped else { return false }
            state.phase = .stopped
            return true
        }
        guard first else { return }
        removeSocketFileIfOurs()
        let drained = state.withLock { state in
            if state.acceptThread != nil, let wake = state.wakeSender {
                var byte: UInt8 = 1
                _ = Glibc.send(wake.raw, &byte, 1, Int32(MSG_NOSIGNAL))
                return CheckedContinuation<Void, Never>?.none
            }
            state.listener = nil
            state.wakeReceiver = nil
            state.wakeSender = nil
            state.acceptLoopExited = true
            return state.takeFinishedIfDrained()
        }
        drained?.resume()
    }

    /// Waits for the accept thread to leave its loop, then closes the
    /// descriptors it was polling. Whoever takes the thread out of the state
    /// joins it, so it is joined exactly once.
    private func finishShutdown() {
        if let thread = state.withLock({ $0.acceptThread.take() }) {
            pthread_join(thread, nil)
        }
        state.withLock { state in
            guard state.phase == .stopped, state.acceptLoopExited else { return }
            state.listener = nil
            state.wakeReceiver = nil
            state.wakeSender = nil
        }
    }

    // MARK: - Setup

    /// Opens (creating it 0755 if missing) the socket's directory through
    /// ``SecureDirectory``: no symbolic link in its path, owned by root and
    /// not writable by group or others (0755 is kept: clients enter it).
    private static func openParentDirectory(of socketPath: String) throws(ControlSocketError) -> SecureDirectory {
        let directory = Self.directory(of: socketPath)
        do {
            return try SecureDirectory(directory, purpose: "control socket directory", access: .traversable)
        } catch {
            if case .systemCall = error.problem, let code = error.errno {
                throw .createDirectory(directory: directory, socketPath: socketPath, errno: code)
            }
            throw .insecureDirectory(error)
        }
    }

    /// The directory part of a socket path ("." for a bare name).
    static func directory(of socketPath: String) -> String {
        guard let slash = socketPath.lastIndex(of: "/") else { return "." }
        let directory = String(socketPath[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// Refuses a live socket, a symbolic link and other non-sockets; unlinks
    /// a socket file nobody answers on, relative to the directory's
    /// descriptor and only if it is (still) a socket.
    private static func removeStaleSocket(at path: String, in directory: SecureDirectory,
                                          address: UnixSocketAddress) throws(ControlSocketError) {
        let name = String(path.split(separator: "/").last ?? Substring(path))
        let type: mode_t?
        do { type = try directory.entryType(name) } catch {
            throw .staleSocket(path: path, operation: "stat", errno: error.errno ?? .ioError)
        }
        guard let type else { return }
        if type == S_IFLNK {
            throw .insecureDirectory(SecureDirectoryError(path: path, purpose: directory.purpose, problem: .symbolicLink, errno: nil))
        }
        guard type == S_IFSOCK else { throw .notASocket(path: path) }
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard raw >= 0 else { throw .staleSocket(path: path, operation: "probe (socket())", errno: Errno(rawValue: errno)) }
        let probe = SocketDescriptor(adopting: raw)
        let rc = address.withSockaddr { Glibc.connect(probe.raw, $0, $1) }
        let error = errno
        // EAGAIN: a listener whose backlog is full is still a listener.
        if rc == 0 || error == EAGAIN || error == EINPROGRESS { throw .alreadyListening(path: path) }
        switch error {
        case ENOENT: return  // Removed since we looked.
        case ECONNREFUSED:
            do { _ = try directory.removeSocket(name) } catch {
                if error.problem == .symbolicLink { throw .insecureDirectory(error) }
                if error.problem == .notASocket { throw .notASocket(path: path) }
                throw .staleSocket(path: path, operation: "remove", errno: error.errno ?? .ioError)
            }
        default:
            throw .staleSocket(path: path, operation: "probe (connect())", errno: Errno(rawValue: error))
        }
    }

    private func removeSocketFileIfOurs() {
        var info = stat()
        guard lstat(socketPath, &info) == 0, UInt64(info.st_dev) == socketDevice, UInt64(info.st_ino) == socketInode else { return }
        unlink(socketPath)
    }

    // MARK: - Serving (dedicated threads)

    /// Runs on the accept thread until shutdown writes to the wake socket.
    private func acceptLoop(listener: Int32, wake: Int32) {
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let n = poll(&fds, 2, -1)
            if n < 0 {
                if errno == EINTR { continue }
                break  // EFAULT/EINVAL/ENOMEM: cannot poll; stop rather than spin.
            }
            if fds[1].revents != 0 { break }
            guard fds[0].revents != 0 else { continue }
            // Close-on-exec at once: a guardian spawned meanwhile must not inherit it.
            let raw = acceptCloseOnExecNonBlocking(listener)
            guard raw >= 0 else {
                // EMFILE/ENFILE/ENOMEM would wake poll at once again: back off.
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { usleep(100_000) }
                continue
            }
            accepted(SocketDescriptor(adopting: raw))
        }
        let drained = state.withLock { state in
            state.acceptLoopExited = true
            return state.takeFinishedIfDrained()
        }
        drained?.resume()
    }

    private func accepted(_ connection: SocketDescriptor) {
        let admitted = state.withLock { state in
            guard state.waitingConnections < Self.maxWaitingConnections else { return false }
            state.waitingConnections += 1
            return true
        }
        guard admitted else {
            reply(.failure("the mmpolicy daemon at \(socketPath) is busy: \(Self.maxWaitingConnections) control connections are open and have not sent a request yet. Try again in a few seconds."),
                  on: connection, deadline: Deadline(secondsFromNow: 0.1))
            return
        }
        let thread = PosixThread.start(detached: true) { [self] in
            var active = false
            serve(connection, active: &active)
            let drained = state.withLock { state in
                if active { state.activeConnections -= 1 } else { state.waitingConnections -= 1 }
                return state.takeFinishedIfDrained()
            }
            drained?.resume()
        }
        if case .failure(let error) = thread {
            state.withLock { $0.waitingConnections -= 1 }
            reply(.failure("the mmpolicy daemon at \(socketPath) could not start a thread for this connection (\(error)). Try again in a few seconds."),
                  on: connection, deadline: Deadline(secondsFromNow: 0.1))
        }
    }

    /// Moves a connection whose first byte arrived from waiting to served;
    /// false if ``maxConcurrentConnections`` are being served already.
    private func promote() -> Bool {
        state.withLock { state in
            guard state.activeConnections < Self.maxConcurrentConnections else { return false }
            state.waitingConnections -= 1
            state.activeConnections += 1
            return true
        }
    }

    /// One connection, start to finish, on its own thread. The descriptor
    /// closes when `connection` is released at the end. `active` becomes
    /// true once the connection holds a serving slot.
    private func serve(_ connection: SocketDescriptor, active: inout Bool) {
        let requestDeadline = Deadline(secondsFromNow: requestTimeoutSeconds)
        let writeDeadline = { Deadline(secondsFromNow: self.requestTimeoutSeconds) }
        let peer: PeerCredentials
        switch connection.peerCredentials() {
        case .success(let credentials): peer = credentials
        case .failure(let error):
            reply(.failure("the mmpolicy daemon could not read the peer's credentials on \(socketPath) (SO_PEERCRED: \(error)), so it refuses the request. Try again; if it persists, check the daemon's log."),
                  on: connection, deadline: writeDeadline())
            return
        }
        guard allowedUIDs.contains(peer.uid) else {
            reply(.failure(refusal(peer)), on: connection, deadline: writeDeadline())
            return
        }
        // A connection that has said nothing holds no slot, and not for long.
        switch connection.wait(for: Int16(POLLIN), until: Deadline(secondsFromNow: firstByteTimeoutSeconds)) {
        case .failure:
            return  // The connection is broken; there is nobody to answer.
        case .success(false):
            reply(.failure("no complete request line arrived on \(socketPath): nothing came within \(firstByteTimeoutSeconds) s of connecting (pid \(peer.pid)). Send the whole request as one JSON line ending in \"\\n\" right after connecting."),
                  on: connection, deadline: Deadline(secondsFromNow: 0.1))
            return
        case .success(true):
            break
        }
        guard promote() else {
            reply(.failure("the mmpolicy daemon at \(socketPath) is busy: \(Self.maxConcurrentConnections) control requests are being served. Try again in a few seconds."),
                  on: connection, deadline: Deadline(secondsFromNow: 0.1))
            return
        }
        active = true
        let line: [UInt8]
        switch connection.readLine(maxBytes: ControlProtocol.maxMessageBytes, until: requestDeadline) {
        case .success(let bytes): line = bytes
        case .failure(.timedOut):
            reply(.failure("no complete request line arrived on \(socketPath) within \(requestTimeoutSeconds) s (pid \(peer.pid)). Send the whole request as one JSON line ending in \"\\n\" right after connecting."),
                  on: connection, deadline: writeDeadline())
            return
        case .failure(.tooLong):
            reply(.failure("the request on \(socketPath) is longer than the control protocol's limit of \(ControlProtocol.maxMessageBytes) bytes per line. Send a smaller request (one JSON object on one line)."),
                  on: connection, deadline: writeDeadline())
            return
        case .failure(.closed(let received)):
            if received > 0 {
                reply(.failure("the request on \(socketPath) ended without a newline after \(received) bytes. End the JSON request line with \"\\n\"."),
                      on: connection, deadline: writeDeadline())
            }
            return
        case .failure(.failed):
            return  // The connection is broken; there is nobody to answer.
        }
        let request: ControlRequest
        switch Self.decode(line) {
        case .success(let decoded): request = decoded
        case .failure(let failure):
            reply(.failure(failure.message), on: connection, deadline: writeDeadline())
            return
        }
        let slot = ResponseSlot()
        let handler = self.handler
        Task { slot.fill(await handler(request, peer)) }
        reply(slot.wait(), on: connection, deadline: writeDeadline())
    }

    /// Why a request line is not a request: the failure response's text.
    struct DecodeFailure: Error {
        var message: String
    }

    private func refusal(_ peer: PeerCredentials) -> String {
        let who = allowedUIDs == [0]
            ? "accepts root only"
            : "accepts only uid " + allowedUIDs.sorted().map(String.init).joined(separator: ", ")
        let fix = allowedUIDs == [0] ? "Run the command as root, e.g. with sudo." : "Run the command as one of those users."
        return "permission denied: mmpolicy's control socket at \(socketPath) \(who); the peer is uid \(peer.uid) (pid \(peer.pid)). \(fix)"
    }

    /// The request in `line`, or the failure message to answer with.
    static func decode(_ line: [UInt8]) -> Result<ControlRequest, DecodeFailure> {
        /// Just the version, read before anything else so that a request from
        /// another protocol version gets a version error, not a field error.
        struct VersionProbe: Decodable { var version: Int? }
        let data = Data(line)
        let decoder = JSONDecoder()
        if let probe = try? decoder.decode(VersionProbe.self, from: data), let version = probe.version,
           version != ControlProtocol.version {
            return .failure(DecodeFailure(message: "unsupported control protocol version: the request uses version \(version), and this daemon speaks version \(ControlProtocol.version). Use the mmpolicy CLI from the same release as the daemon."))
        }
        do {
            return .success(try decoder.decode(ControlRequest.self, from: data))
        } catch {
            let commands = ControlRequest.Command.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(DecodeFailure(message: "malformed request: \(ControlCoding.describe(error)). Send one JSON object on one line, e.g. {\"command\":\"ping\",\"version\":\(ControlProtocol.version)}; commands: \(commands)."))
        }
    }

    /// Writes `response` as one line, then the caller drops the connection.
    private func reply(_ response: ControlResponse, on connection: SocketDescriptor, deadline: Deadline) {
        var bytes: [UInt8]
        do {
            bytes = Array(try ControlCoding.encoder().encode(response))
        } catch {
            bytes = Array((try? ControlCoding.encoder().encode(ControlResponse.failure(
                "the mmpolicy daemon could not encode its response as JSON (\(error)). This is a bug in mmpolicy; please report it with the command you ran."))).map { Array($0) } ?? [])
        }
        if bytes.count > ControlProtocol.maxMessageBytes {
            bytes = Array((try? ControlCoding.encoder().encode(ControlResponse.failure(
                "the response would be \(bytes.count) bytes, more than the control protocol's limit of \(ControlProtocol.maxMessageBytes) bytes. Ask for less, e.g. `mmpolicy events --limit 1000`."))).map { Array($0) } ?? [])
        }
        bytes.append(UInt8(ascii: "\n"))
        _ = connection.writeAll(bytes, until: deadline)
    }
}

/// Carries the handler's response from its task back to the connection
/// thread, which blocks (it is not a Swift-concurrency thread) until it arrives.
private final class ResponseSlot: Sendable {
    private let value = Mutex<ControlResponse?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    func fill(_ response: ControlResponse) {
        value.withLock { $0 = response }
        ready.signal()
    }

    func wait() -> ControlResponse {
        ready.wait()
        return value.withLock { $0.take()! }
    }
}
