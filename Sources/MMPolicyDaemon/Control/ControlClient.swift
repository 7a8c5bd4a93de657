#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemPackage

import Glibc

/// The CLI's side of the control socket: one request, one response.
///
/// Exists so that every `mmpolicy <command>` talks to the daemon the same
/// way and fails with the same explained errors. Synchronous, because the
/// CLI is; each `send` opens its own connection, so the value is freely
/// copyable and shareable.
public struct ControlClient: Sendable {
    public var socketPath: String
    /// How long one `send` may take in all: connecting, writing, and waiting
    /// for the daemon to act and answer.
    public var timeoutSeconds: Double

    public init(socketPath: String = DaemonDefaults.socketPath, timeoutSeconds: Double = 30) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends `request` and returns the daemon's response. A refusal or a
    /// failed command is a response with `ok == false`, not a thrown error;
    /// errors are for not getting a readable response at all.
    public func send(_ request: ControlRequest) throws(ControlClientError) -> ControlResponse {
        let path = socketPath
        let deadline = Deadline(secondsFromNow: timeoutSeconds)
        var line: [UInt8]
        do {
            line = Array(try ControlCoding.encoder().encode(request))
        } catch {
            throw .unencodableRequest(path: path, detail: ControlCoding.describe(error))
        }
        line.append(UInt8(ascii: "\n"))

        let socket = try connect(path)
        guard socket.setNonBlocking(true) == nil else {
            throw .systemCall(path: path, operation: "fcntl(O_NONBLOCK)", errno: Errno(rawValue: errno))
        }
        switch socket.writeAll(line, until: deadline) {
        case .success, .failure(.closed):
            // A daemon that refuses the peer answers and closes without
            // reading; its answer is still waiting to be read.
            break
        case .failure(.timedOut):
            throw .timedOut(path: path, seconds: timeoutSeconds, stage: "sending the request")
        case .failure(.failed(let error)):
            throw .systemCall(path: path, operation: "send()", errno: error)
        case .failure(.tooLong):
            preconditionFailure("writeAll does not limit length")
        }
        let reply: [UInt8]
        switch socket.readLine(maxBytes: ControlProtocol.maxMessageBytes, until: deadline) {
        case .success(let bytes): reply = bytes
        case .failure(.timedOut):
            throw .timedOut(path: path, seconds: timeoutSeconds, stage: "waiting for the response")
        case .failure(.closed(let received)):
            throw .connectionClosed(path: path, receivedBytes: received)
        case .failure(.tooLong):
            throw .responseTooLarge(path: path, maxBytes: ControlProtocol.maxMessageBytes)
        case .failure(.failed(let error)):
            throw .systemCall(path: path, operation: "recv()", errno: error)
        }
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: Data(reply))
        } catch {
            throw .undecodableResponse(path: path, detail: ControlCoding.describe(error))
        }
    }

    /// A connected socket, or the error that explains why there is none.
    private func connect(_ path: String) throws(ControlClientError) -> SocketDescriptor {
        guard let address = UnixSocketAddress(path) else {
            throw .pathTooLong(path: path, maxBytes: UnixSocketAddress.maxPathBytes)
        }
        let raw = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw .systemCall(path: path, operation: "socket()", errno: Errno(rawValue: errno)) }
        let socket = SocketDescriptor(adopting: raw)
        // connect() on a Unix socket waits (up to SO_SNDTIMEO) while the
        // listener's backlog is full; bound that wait by our timeout.
        var timeout = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1e6))
        _ = setsockopt(raw, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while true {
            let rc = address.withSockaddr { Glibc.connect(raw, $0, $1) }
            if rc == 0 { return socket }
            let error = errno
            switch error {
            case EINTR: continue
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .notRunning(path: path, errno: Errno(rawValue: error))
            case EACCES, EPERM: throw .permissionDenied(path: path, errno: Errno(rawValue: error))
            case EAGAIN, ETIMEDOUT:
                throw .timedOut(path: path, seconds: timeoutSeconds, stage: "connecting; the daemon's backlog is full")
            default: throw .systemCall(path: path, operation: "connect()", errno: Errno(rawValue: error))
            }
        }
    }
}
