#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemPackage

import Glibc

/// One open socket (or eventfd) descriptor and the only place that closes it.
///
/// A class, not a struct: the descriptor is an identity, and a copyable value
/// holding it would let two copies close the same number. Whoever holds the
/// last reference closes the descriptor exactly once, in `deinit`, so a thread
/// still using it (the accept loop, a connection) keeps it open.
final class SocketDescriptor: Sendable {
    let raw: Int32

    init(adopting raw: Int32) { self.raw = raw }

    deinit { _ = close(raw) }

    /// Sets or clears O_NONBLOCK.
    func setNonBlocking(_ on: Bool) -> Errno? {
        let flags = fcntl(raw, F_GETFL)
        guard flags >= 0 else { return Errno(rawValue: errno) }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        guard fcntl(raw, F_SETFL, wanted) == 0 else { return Errno(rawValue: errno) }
        return nil
    }

    /// The credentials the kernel recorded for the peer when it connected (SO_PEERCRED).
    func peerCredentials() -> Result<PeerCredentials, Errno> {
        var cred = LinuxPeerCredentials()
        var length = socklen_t(MemoryLayout<LinuxPeerCredentials>.size)
        guard getsockopt(raw, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else {
            return .failure(Errno(rawValue: errno))
        }
        return .success(PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid))
    }
}

/// `struct ucred` from <sys/socket.h>, which Glibc's Swift module hides
/// behind _GNU_SOURCE; the layout is fixed by the Linux ABI.
private struct LinuxPeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// A Unix socket address for `path`, or nil when the path does not fit in
/// `sun_path` (107 bytes plus the terminating NUL).
struct UnixSocketAddress {
    static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private var storage = sockaddr_un()

    init?(_ path: String) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= Self.maxPathBytes, !bytes.contains(0) else { return nil }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}

/// A point in time on CLOCK_MONOTONIC; how long is left until it.
struct Deadline {
    private let nanoseconds: UInt64

    init(secondsFromNow seconds: Double) {
        nanoseconds = Self.now() &+ UInt64(min(max(0, seconds), 1e9) * 1e9)  // At most ~31 years.
    }

    /// Milliseconds left, for poll(): 0 once the deadline has passed.
    var remainingMilliseconds: Int32 {
        let now = Self.now()
        guard nanoseconds > now else { return 0 }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Why reading a line or writing bytes on a non-blocking socket stopped short.
enum SocketIOFailure: Error {
    /// The deadline passed first.
    case timedOut
    /// The peer closed (or reset) the connection; `received` bytes came before that.
    case closed(received: Int)
    /// More than the allowed number of bytes arrived without a newline.
    case tooLong
    case failed(Errno)
}

extension SocketDescriptor {
    /// Waits until the socket is ready for `events` (POLLIN/POLLOUT) or the
    /// deadline passes. Returns false on timeout.
    func wait(for events: Int16, until deadline: Deadline) -> Result<Bool, Errno> {
        var pfd = pollfd(fd: raw, events: events, revents: 0)
        while true {
            let n = poll(&pfd, 1, deadline.remainingMilliseconds)
            if n > 0 { return .success(true) }
            if n == 0 { return .success(false) }
            if errno != EINTR { return .failure(Errno(rawValue: errno)) }
        }
    }

    /// Reads up to and including the first "\n" (returned without it) from a
    /// non-blocking socket. Reads past the newline are impossible: bytes are
    /// peeked first and only the line is consumed.
    func readLine(maxBytes: Int, until deadline: Deadline) -> Result<[UInt8], SocketIOFailure> {
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            switch wait(for: Int16(POLLIN), until: deadline) {
            case .failure(let error): return .failure(.failed(error))
            case .success(false): return .failure(.timedOut)
            case .success(true): break
            }
            let peeked = chunk.withUnsafeMutableBytes { recv(raw, $0.baseAddress, $0.count, Int32(MSG_PEEK)) }
            if peeked < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { return .failure(.closed(received: line.count)) }
                return .failure(.failed(Errno(rawValue: errno)))
            }
            if peeked == 0 { return .failure(.closed(received: line.count)) }
            let newline = chunk[0..<peeked].firstIndex(of: UInt8(ascii: "\n"))
            let take = newline.map { $0 + 1 } ?? peeked
            let got = chunk.withUnsafeMutableBytes { recv(raw, $0.baseAddress, take, 0) }
            if got < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(.failed(Errno(rawValue: errno)))
            }
            line += chunk[0..<got]
            if got == take, newline != nil {
                line.removeLast()
                guard line.count <= maxBytes else { return .failure(.tooLong) }
                return .success(line)
            }
            if line.count > maxBytes { return .failure(.tooLong) }
        }
    }

    /// Writes all of `bytes` to a non-blocking socket (no SIGPIPE).
    func writeAll(_ bytes: [UInt8], until deadline: Deadline) -> Result<Void, SocketIOFailure> {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(raw, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n >= 0 { offset += n; continue }
            switch errno {
            case EINTR: continue
            case EAGAIN:
                switch wait(for: Int16(POLLOUT), until: deadline) {
                case .failure(let error): return .failure(.failed(error))
                case .success(false): return .failure(.timedOut)
                case .success(true): continue
                }
            case EPIPE, ECONNRESET: return .failure(.closed(received: 0))
            default: return .failure(.failed(Errno(rawValue: errno)))
            }
        }
        return .success(())
    }
}

/// The JSON coders both ends use: one line, sorted keys, readable paths.
enum ControlCoding {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// One paragraph-friendly sentence about why decoding failed.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return String(describing: error) }
        func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (key.map { [$0] } ?? [])
            let text = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : "`" + text.drop { $0 == "." } + "`"
        }
        switch error {
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "it is not valid JSON (\(context.debugDescription))" }
            return "the value at \(path(context)) is invalid: \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "the required field \(path(context, key)) is missing"
        case .typeMismatch(let type, let context):
            return "the value at \(path(context)) is not of type \(type): \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "the value at \(path(context)) is null where a \(type) is required"
        @unknown default:
            return String(describing: error)
        }
    }
}
