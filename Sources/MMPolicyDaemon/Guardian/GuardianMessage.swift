import MMPolicyCore

/// What the daemon and its guardian say to each other on their link, one
/// message per packet (the link is a SOCK_SEQPACKET pair: a message arrives
/// whole or not at all, and a closed end still reads as end of file).
///
/// Text, so `strace` shows it: "armed", "hold 1000000000 /sys/fs/cgroup/memory/job",
/// "release /sys/fs/cgroup/memory/job", "onset 123456789 /sys/...",
/// "handed 123456789 1123456789 0 /sys/...", "clean". A path is the rest of
/// the line and may hold spaces; a path with a newline is never sent.
enum GuardianMessage: Equatable, Sendable {
    // guardian -> daemon
    /// Named, locked in memory, waiting.
    case armed
    /// The guardian saw an OOM begin in a held memcg (CLOCK_MONOTONIC ns).
    case onset(memcg: String, onsetNs: UInt64)
    /// The guardian handed an OOM nobody resolved to the kernel killer.
    case handed(OOMHoldBoard.Handover)
    // daemon -> guardian
    /// Watch the memcgs at and below `root`; hand an OOM older than `boundNs` to the kernel.
    case hold(root: String, boundNs: UInt64)
    /// Stop watching `root`.
    case release(root: String)
    /// The daemon shut down cleanly and restored everything: exit, touch nothing.
    case cleanExit

    /// The largest message: a verb, three numbers and a path (PATH_MAX).
    static let maximumSize = 4096 + 128

    /// The packet's text; nil if a path holds a newline (such a memcg is not held).
    var text: String? {
        switch self {
        case .armed: return "armed"
        case .cleanExit: return "clean"
        case .onset(let memcg, let onsetNs): return Self.line("onset \(onsetNs)", memcg)
        case .handed(let h): return Self.line("handed \(h.onsetNs) \(h.handedNs) \(h.killCount)", h.memcg)
        case .hold(let root, let boundNs): return Self.line("hold \(boundNs)", root)
        case .release(let root): return Self.line("release", root)
        }
    }

    private static func line(_ head: String, _ path: String) -> String? {
        path.contains("\n") || path.isEmpty ? nil : head + " " + path
    }

    /// Parses a packet; nil if it is not a message of this protocol.
    init?(text: String) {
        switch text {
        case "armed": self = .armed; return
        case "clean": self = .cleanExit; return
        default: break
        }
        var words = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        guard words.count == 2 else { return nil }
        let verb = words[0]
        let numberCount = ["onset": 1, "handed": 3, "hold": 1, "release": 0][String(verb)]
        guard let numberCount else { return nil }
        var numbers: [UInt64] = []
        var rest = words[1]
        for _ in 0..<numberCount {
            words = rest.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard words.count == 2, let number = UInt64(words[0]) else { return nil }
            numbers.append(number)
            rest = words[1]
        }
        let path = String(rest)
        guard !path.isEmpty, !path.contains("\n") else { return nil }
        switch verb {
        case "onset": self = .onset(memcg: path, onsetNs: numbers[0])
        case "handed":
            self = .handed(OOMHoldBoard.Handover(memcg: path, onsetNs: numbers[0], handedNs: numbers[1], killCount: numbers[2]))
        case "hold": self = .hold(root: path, boundNs: numbers[0])
        default: self = .release(root: path)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Sending and receiving ``GuardianMessage``s on one end of the link.
enum GuardianLink {
    enum Received: Equatable {
        case message(GuardianMessage)
        /// Nothing to read now (non-blocking), or a packet of no known message.
        case nothing
        /// The other end closed: its process is gone (or dismissed us).
        case closed
    }

    /// Sends `message` without blocking and without SIGPIPE; false if it
    /// could not be sent now (the other end is gone, or its buffer is full).
    static func send(_ message: GuardianMessage, on fd: Int32) -> Bool {
        guard let text = message.text else { return true }
        let bytes = Array(text.utf8)
        while true {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n == bytes.count { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Receives one message; blocks only if `blocking`.
    static func receive(on fd: Int32, blocking: Bool) -> Received {
        var buffer = [UInt8](repeating: 0, count: GuardianMessage.maximumSize)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, blocking ? 0 : Int32(MSG_DONTWAIT)) }
            if n > 0 {
                return GuardianMessage(text: String(decoding: buffer[..<n], as: UTF8.self)).map { .message($0) } ?? .nothing
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .nothing }
            // 0: end of file. ECONNRESET: it died with our message unread.
            return .closed
        }
    }
}
