import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One cgroup control file held open by exactly one object, closed when it
/// is released.
///
/// It exists for a knob written several times in a row, where each write's
/// own answer matters: the stepped v1 limit of ``MemcgV1LimitReclaim``
/// (EBUSY: the kernel could not reclaim down to that value) and v2's
/// memory.reclaim (EAGAIN: it reclaimed less than asked). Each write is one
/// pwrite(2) at offset 0 of the same descriptor, not retried on EINTR (a
/// lowering step that a signal interrupted is a step not taken: the caller
/// decides); every error names the file.
public final class CgroupControlFile {
    public let path: String
    private let fd: Int32

    /// Opens `path` for reading and writing (`writable`) or reading only.
    public init(path: String, writable: Bool = true, fix: (Errno) -> String? = KernelFile.defaultFix) throws(SystemCallError) {
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError.current("open", path, fix: fix(Errno(rawValue: Glibc.errno))) }
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// The file's whole text, read from offset 0.
    public func read() throws(SystemCallError) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(bytes.count)) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw SystemCallError.current("read", path)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The file's text as one unsigned integer.
    public func readUInt64() throws(SystemCallError) -> UInt64 {
        let text = try read().trimmingWhitespace()
        guard let value = UInt64(text) else {
            throw SystemCallError.format(path, "Expected one unsigned integer, found '\(text.prefix(40))'.")
        }
        return value
    }

    /// Writes `text` in one pwrite(2) at offset 0, as cgroup knobs expect.
    /// `retryingInterrupts`: write again when a signal interrupted it (for a
    /// write that must happen, such as putting a limit back).
    public func write(_ text: String, retryingInterrupts: Bool = false) throws(SystemCallError) {
        let bytes = Array(text.utf8)
        while true {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            if n == bytes.count { return }
            if n < 0 {
                if Glibc.errno == EINTR && retryingInterrupts { continue }
                throw SystemCallError.current("write \(text)", path)
            }
            throw SystemCallError(operation: "write \(text)", target: path, errno: .ioError,
                                  fix: "The kernel took \(n) of \(bytes.count) bytes; knobs must be written whole.")
        }
    }
}
