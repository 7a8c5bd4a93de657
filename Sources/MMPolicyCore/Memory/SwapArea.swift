import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// swapon(2) and swapoff(2): turning a formatted device into swap and back.
///
/// They are called through glibc (looked up once by name, like the other
/// calls Swift's Glibc module leaves out: <sys/swap.h> is not in it), not
/// by running swapon(8): no fork from the daemon, and the errno comes back
/// as it is.
enum SwapArea {
    /// SWAP_FLAG_PREFER: the priority in the low 15 bits applies.
    static let preferFlag: Int32 = 0x8000
    static let priorityMask: Int32 = 0x7fff
    /// The priorities swapon(2) takes with SWAP_FLAG_PREFER.
    static let priorities = 0...32767

    private typealias Call = @convention(c) (UnsafePointer<CChar>, Int32) -> Int32
    private typealias OffCall = @convention(c) (UnsafePointer<CChar>) -> Int32
    private static let swaponFunction: Call = unsafeBitCast(dlsym(nil, "swapon")!, to: Call.self)
    private static let swapoffFunction: OffCall = unsafeBitCast(dlsym(nil, "swapoff")!, to: OffCall.self)

    /// Swaps on `path` at `priority` (0...32767, higher used first).
    static func on(_ path: String, priority: Int) throws(ZramError) {
        let flags = preferFlag | (Int32(priority) & priorityMask)
        guard swaponFunction(path, flags) == 0 else { throw .current("swapon (priority \(priority)) of", path) }
    }

    /// Swaps off `path`: the kernel brings every page it holds back into
    /// memory first (ENOMEM when there is no room). Retried on EINTR.
    static func off(_ path: String) throws(ZramError) {
        while swapoffFunction(path) != 0 {
            if Glibc.errno == EINTR { continue }
            throw .current("swapoff of", path)
        }
    }

    /// Whether `path` is an active swap area now (/proc/swaps).
    static func isActive(_ path: String) throws(ZramError) -> Bool {
        do { return try SwapDevices.parse(KernelFile.read("/proc/swaps")).contains { $0.path == path } } catch {
            throw .file("reading", error)
        }
    }
}
