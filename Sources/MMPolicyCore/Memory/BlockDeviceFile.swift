import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An open block device (/dev/zramN), for reading or writing its first
/// page; the one owner of its descriptor, closed when it goes.
///
/// Writable opens are exclusive (O_EXCL): the kernel refuses them with
/// EBUSY while the device is swap or mounted, so a swap header is never
/// written over a device someone is using.
struct BlockDeviceFile: ~Copyable {
    let path: String
    private let fd: Int32

    /// Opens `path` read-only, or exclusively for writing.
    init(path: String, writable: Bool) throws(ZramError) {
        self.path = path
        let flags = writable ? O_WRONLY | O_EXCL | O_CLOEXEC : O_RDONLY | O_CLOEXEC
        let fd = open(path, flags)
        guard fd >= 0 else {
            let code = Errno(rawValue: Glibc.errno)
            if writable && code == .resourceBusy {
                throw ZramError(.deviceBusy("it is open exclusively elsewhere (swap, a mount)"), path: path, errno: code)
            }
            throw ZramError(.systemCall(operation: writable ? "opening for writing" : "opening"), path: path, errno: code)
        }
        self.fd = fd
    }

    /// Up to `count` bytes from `offset` (fewer at the device's end; none
    /// when it has no size).
    func read(count: Int, at offset: Int64) throws(ZramError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled)) }
            if n < 0 && Glibc.errno == EINTR { continue }
            if n < 0 { throw .current("reading", path) }
            if n == 0 { break }
            filled += n
        }
        return Array(bytes.prefix(filled))
    }

    /// Writes `bytes` at `offset` and waits until the device has them.
    func write(_ bytes: [UInt8], at offset: Int64) throws(ZramError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written)) }
            if n < 0 && Glibc.errno == EINTR { continue }
            if n <= 0 { throw n < 0 ? .current("writing the swap header to", path) : ZramError(.systemCall(operation: "writing the swap header to"), path: path, errno: .noSpace) }
            written += n
        }
        guard fsync(fd) == 0 else { throw .current("syncing the swap header to", path) }
    }

    deinit { close(fd) }
}
