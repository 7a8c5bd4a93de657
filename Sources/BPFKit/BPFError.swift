import SystemPackage

/// An error from the BPF layer, carrying enough context to act on.
///
/// Every failure names the operation, the object (and program or map when
/// there is one), the errno, and for a verifier rejection the part of the
/// verifier log that explains it. `description` is one paragraph meant for an
/// operator: what failed, why, and what to do.
public struct BPFError: Error, Sendable, CustomStringConvertible {
    /// What was being done.
    public enum Operation: String, Sendable {
        case read, open, parse, setParameter = "set parameter", load, attach, run, pin, unpin, reuse = "share the map of"
        case mapLookup = "map lookup", mapUpdate = "map update", mapDelete = "map delete", query
        case readRingBuffer = "read the ring buffer of"
    }

    public var operation: Operation
    public var errno: Errno?
    public var object: String
    public var program: String?
    public var map: String?
    /// What went wrong, in words (no trailing period).
    public var reason: String
    /// What the user can do about it (no trailing period), if anything specific.
    public var fix: String?
    /// For a verifier rejection: the verifier's message and the source line it points at.
    public var verifier: VerifierRejection?
    /// libbpf's own warnings printed during the operation, most recent last.
    public var libbpfMessages: [String]

    public init(
        _ operation: Operation, object: String, program: String? = nil, map: String? = nil,
        errno: Errno? = nil, reason: String, fix: String? = nil,
        verifier: VerifierRejection? = nil, libbpfMessages: [String] = []
    ) {
        self.operation = operation
        self.errno = errno
        self.object = object
        self.program = program
        self.map = map
        self.reason = reason
        self.fix = fix
        self.verifier = verifier
        self.libbpfMessages = libbpfMessages
    }

    public var description: String {
        var subject = "'\(object)'"
        if let program { subject += ", program '\(program)'" }
        if let map { subject += ", map '\(map)'" }
        var text = "cannot \(operation.rawValue) BPF object \(subject): \(reason)"
        if let errno { text += " (\(errno.description), errno \(errno.rawValue))" }
        text += "."
        if let verifier { text += " " + verifier.description }
        if let fix { text += " " + fix + "." }
        return text
    }
}

/// Why the kernel's verifier refused a program: its last message, the source
/// line it was looking at (from BTF line info), and the tail of its log.
public struct VerifierRejection: Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var sourceLine: String?
    public var location: String?
    public var logTail: [String]

    public var description: String {
        var text = "The verifier says: \"\(message)\""
        if let location, let sourceLine { text += " at \(location) (`\(sourceLine)`)" }
        else if let sourceLine { text += " at `\(sourceLine)`" }
        return text + "."
    }

    /// Picks the verdict out of a verifier log: the last non-statistics line
    /// and the last `; <source> @ file:line` annotation before it.
    public init?(log: String, tailLines: Int = 12) {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard !lines.isEmpty else { return nil }
        let noise = ["processed ", "verification time", "stack depth", "-- END", "-- BEGIN"]
        guard let verdictIndex = lines.lastIndex(where: { line in !noise.contains { line.hasPrefix($0) } })
        else { return nil }
        message = lines[verdictIndex].trimmingCharacters(in: " \t")
        sourceLine = nil
        location = nil
        for line in lines[..<verdictIndex].reversed() where line.hasPrefix("; ") {
            let annotation = line.dropFirst(2)
            if let at = annotation.ranges(of: " @ ").last {
                sourceLine = String(annotation[..<at.lowerBound]).trimmingCharacters(in: " \t")
                location = String(annotation[at.upperBound...])
            } else {
                sourceLine = String(annotation).trimmingCharacters(in: " \t")
            }
            break
        }
        logTail = Array(lines.suffix(tailLines))
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var view = Substring(self)
        while let first = view.first, set.contains(first) { view = view.dropFirst() }
        while let last = view.last, set.contains(last) { view = view.dropLast() }
        return String(view)
    }
}
