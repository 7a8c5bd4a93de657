import MMPolicyCore
import SystemPackage

/// Why the daemon could not set up or serve its control socket.
///
/// Exists so that `mmpolicy daemon` can fail at startup with one paragraph
/// naming the socket path, the errno and what to do, instead of a bare code.
public enum ControlSocketError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The path does not fit in a Unix socket address.
    case pathTooLong(path: String, maxBytes: Int)
    /// The socket's parent directory could not be created.
    case createDirectory(directory: String, socketPath: String, errno: Errno)
    /// The socket's directory, or the socket path, is a symbolic link, owned
    /// by another user or writable by others (see ``SecureDirectory``).
    case insecureDirectory(SecureDirectoryError)
    /// Something already answers on the path.
    case alreadyListening(path: String)
    /// The path exists and is not a socket, so it is not ours to remove.
    case notASocket(path: String)
    /// A leftover socket file could not be checked or removed.
    case staleSocket(path: String, operation: String, errno: Errno)
    /// A system call setting up the listening socket failed.
    case setup(path: String, operation: String, errno: Errno)
    /// `run()` was called while another `run()` is serving.
    case alreadyRunning(path: String)

    public var description: String {
        switch self {
        case let .pathTooLong(path, maxBytes):
            return "mmpolicy cannot listen on \(path): a Unix socket path may be at most \(maxBytes) bytes and this one is \(path.utf8.count). Pass a shorter path with --socket."
        case let .createDirectory(directory, socketPath, errno):
            return "mmpolicy cannot create \(directory), the directory for its control socket \(socketPath): \(errno) (errno \(errno.rawValue)). Create the directory (mode 0755) or pass another path with --socket."
        case let .insecureDirectory(error):
            return "\(error) (The socket path is set with --socket.)"
        case let .alreadyListening(path):
            return "another mmpolicy daemon is already listening on \(path). Stop it (e.g. `systemctl stop mmpolicy`, or `mmpolicy status` to find its pid), or pass --socket to use another path."
        case let .notASocket(path):
            return "mmpolicy will not listen on \(path): a file that is not a socket is already there, and mmpolicy does not delete files it did not create. Remove it yourself if it is not needed, or pass another path with --socket."
        case let .staleSocket(path, operation, errno):
            return "mmpolicy found a leftover control socket at \(path) and could not \(operation) it: \(errno) (errno \(errno.rawValue)). Remove the file by hand, or pass another path with --socket."
        case let .setup(path, operation, errno):
            return "mmpolicy cannot listen on its control socket \(path): \(operation) failed: \(errno) (errno \(errno.rawValue)). Check that the directory is writable by root and not on a read-only file system, or pass another path with --socket."
        case let .alreadyRunning(path):
            return "the control server for \(path) is already running; run() serves once per server. Call run() from a single task."
        }
    }
}

/// Why `mmpolicy <command>` got no answer from the daemon.
///
/// Exists so that every way of failing to reach the daemon prints one
/// paragraph naming the socket path and the fix, rather than an errno.
public enum ControlClientError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The path does not fit in a Unix socket address.
    case pathTooLong(path: String, maxBytes: Int)
    /// No socket file, or a socket file nobody listens on (ENOENT, ECONNREFUSED).
    case notRunning(path: String, errno: Errno)
    /// The caller may not connect (EACCES, EPERM).
    case permissionDenied(path: String, errno: Errno)
    /// socket(), connect(), send() or recv() failed for another reason.
    case systemCall(path: String, operation: String, errno: Errno)
    /// No complete response within the timeout.
    case timedOut(path: String, seconds: Double, stage: String)
    /// The daemon closed the connection before a whole response line arrived.
    case connectionClosed(path: String, receivedBytes: Int)
    /// The response line was longer than the protocol allows.
    case responseTooLarge(path: String, maxBytes: Int)
    /// The response line was not a `ControlResponse`.
    case undecodableResponse(path: String, detail: String)
    /// The request could not be encoded as JSON.
    case unencodableRequest(path: String, detail: String)

    public var description: String {
        switch self {
        case let .pathTooLong(path, maxBytes):
            return "cannot reach the mmpolicy daemon at \(path): a Unix socket path may be at most \(maxBytes) bytes and this one is \(path.utf8.count). Pass a shorter path with --socket."
        case let .notRunning(path, _):
            return "the mmpolicy daemon is not running: nothing is listening on \(path). Start it with `mmpolicy daemon` (or `make run`), or pass --socket if it uses another path."
        case let .permissionDenied(path, errno):
            return "permission denied connecting to the mmpolicy daemon at \(path) (\(errno)): its control socket accepts root only. Run the command as root, e.g. with sudo."
        case let .systemCall(path, operation, errno):
            return "cannot talk to the mmpolicy daemon at \(path): \(operation) failed: \(errno) (errno \(errno.rawValue)). Check that the daemon is healthy (`journalctl -u mmpolicy`) and try again."
        case let .timedOut(path, seconds, stage):
            return "the mmpolicy daemon at \(path) did not answer within \(Self.format(seconds)) s (\(stage)). It may be busy or stuck: check its log (`journalctl -u mmpolicy`), or retry with a longer --timeout."
        case let .connectionClosed(path, receivedBytes):
            let what = receivedBytes == 0 ? "without a response" : "after \(receivedBytes) bytes of an unfinished response"
            return "the mmpolicy daemon at \(path) closed the connection \(what). It may have stopped or crashed: check its log (`journalctl -u mmpolicy`) and that it is still running."
        case let .responseTooLarge(path, maxBytes):
            return "the mmpolicy daemon at \(path) sent a response longer than the protocol's \(maxBytes)-byte limit. Ask for less (e.g. `mmpolicy events --limit`), and make sure the CLI and daemon are the same release."
        case let .undecodableResponse(path, detail):
            return "the mmpolicy daemon at \(path) sent a response this CLI cannot read: \(detail). Make sure the CLI and the daemon are the same release."
        case let .unencodableRequest(path, detail):
            return "cannot send the request to the mmpolicy daemon at \(path): it could not be encoded as JSON: \(detail). Check the command's arguments for values JSON cannot carry."
        }
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}
