import CLibBPF
import SystemPackage

/// An attachment of a program to a kernel hook. Owns the link's file
/// descriptor: releasing the link (or ``detach()``) detaches the program,
/// unless the link was pinned.
public final class BPFLink {
    private var handle: OpaquePointer?
    public let program: String
    public let object: String

    init(handle: OpaquePointer, program: String, object: String) {
        self.handle = handle
        self.program = program
        self.object = object
    }

    deinit { detach() }

    public var fd: Int32? { handle.map { bpf_link__fd($0) } }

    /// Detaches now. Idempotent.
    public func detach() {
        if let handle { bpf_link__destroy(handle) }
        handle = nil
    }

    public func pin(at path: String) throws(BPFError) {
        guard let handle else { throw BPFError(.pin, object: object, program: program, reason: "the link is detached") }
        let rc = bpf_link__pin(handle, path)
        if rc != 0 {
            throw BPFError(.pin, object: object, program: program, errno: Errno(rawValue: -rc), reason: "cannot pin the link at '\(path)'")
        }
    }

    /// For an iterator link: runs the iterator once and returns all it wrote.
    public func readIterator() throws(BPFError) -> [UInt8] {
        guard let fd else { throw BPFError(.run, object: object, program: program, reason: "the link is detached") }
        let iterFD = bpf_iter_create(fd)
        guard iterFD >= 0 else {
            throw BPFError(.run, object: object, program: program, errno: Errno(rawValue: -iterFD), reason: "cannot create an iterator instance")
        }
        do {
            let iterator = FileDescriptor(rawValue: iterFD)
            return try iterator.closeAfter { try BPFObject.readAll(iterator) }
        } catch {
            throw BPFError(.run, object: object, program: program, errno: error as? Errno, reason: "reading the iterator failed")
        }
    }
}
