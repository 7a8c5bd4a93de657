import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Why a zram swap device could not be set up or torn down: what was wrong,
/// the file or device it concerns, the errno when a system call or a sysfs
/// write failed, and (in ``description``) one paragraph naming the thing
/// and the fix.
///
/// It exists because setting zram up touches a dozen kernel interfaces
/// (zram-control, comp_algorithm, disksize, the device itself, swapon(2)),
/// and an operator who asked for swap needs to read which one refused and
/// what to do, not an errno number.
public struct ZramError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// SIZE is not a size (`ByteSize.rule`).
        case sizeNotUnderstood(String)
        /// SIZE is below the smallest useful swap area.
        case sizeTooSmall(requested: UInt64, minimum: UInt64)
        /// SIZE is more than the machine's memory.
        case sizeTooLarge(requested: UInt64, memTotal: UInt64)
        /// The swap priority is outside what swapon(2) takes.
        case priorityOutOfRange(Int)
        /// The kernel's zram does not offer the algorithm.
        case algorithmUnavailable(requested: String, available: [String])
        /// There is no zram on this kernel (module not loaded), or no hot_add
        /// and no free device.
        case zramUnavailable(String)
        /// The named device does not exist; the existing ones.
        case noSuchDevice(existing: [String])
        /// The device is in use: swap already, set up already, or claimed by
        /// someone else while mmpolicy set it up.
        case deviceBusy(String)
        /// Teardown of a device mmpolicy did not set up; what it did set up.
        case notSetUpByMMPolicy(setUp: [String])
        /// Teardown of a device a policy's manifest (`setup_zram`) set up.
        case ownedByPolicy(String)
        /// Teardown of the last swap area while tiering policies rely on it.
        case lastSwapOfPolicies([String])
        /// A teardown without a device when mmpolicy set up none, or several.
        case whichDevice(setUp: [String])
        /// The knob journal could not be written or read: nothing was changed.
        case journal(String)
        /// A system call or sysfs access failed; `operation` says which.
        case systemCall(operation: String)
    }

    public var reason: Reason
    /// The file or device concerned ("/dev/zram3", "/sys/block/zram3/disksize").
    public var path: String
    public var errno: Errno?

    public init(_ reason: Reason, path: String, errno: Errno? = nil) {
        self.reason = reason
        self.path = path
        self.errno = errno
    }

    /// A failed system call or sysfs access on `path`, with the thread's errno.
    static func current(_ operation: String, _ path: String) -> ZramError {
        ZramError(.systemCall(operation: operation), path: path, errno: Errno(rawValue: Glibc.errno))
    }

    /// A failed ``KernelFile`` access, keeping its errno.
    static func file(_ operation: String, _ error: SystemCallError) -> ZramError {
        ZramError(.systemCall(operation: operation), path: error.target, errno: error.errno)
    }

    var errnoText: String {
        guard let errno else { return "" }
        return ": \(String(cString: strerror(errno.rawValue))) (errno \(errno.rawValue))"
    }

    public var description: String {
        switch reason {
        case .sizeNotUnderstood(let text):
            return "zram size '\(text)' is not a size: use \(ByteSize.rule)."
        case .sizeTooSmall(let requested, let minimum):
            return "zram size \(ByteSize(bytes: requested)) is too small for a swap area: use at least \(ByteSize(bytes: minimum))."
        case .sizeTooLarge(let requested, let memTotal):
            return "zram size \(ByteSize(bytes: requested)) is more than this machine's memory (MemTotal \(ByteSize(bytes: memTotal))). zram keeps what it stores, compressed, in that same memory: a device bigger than RAM can only fill by taking memory the processes it serves need. Use at most \(ByteSize(bytes: memTotal)); a quarter to a half of it is usual."
        case .priorityOutOfRange(let priority):
            return "swap priority \(priority) is out of range: use 0 to 32767 (higher is used first; mmpolicy's default, 100, puts zram before disk swap)."
        case .algorithmUnavailable(let requested, let available):
            return "zram compression algorithm '\(requested)' is not available on this kernel (\(path) offers \(available.isEmpty ? "none" : available.joined(separator: ", "))). Use one of those with --algorithm (lz4 is fast, zstd compresses best where it is built)."
        case .zramUnavailable(let why):
            return "zram is not available: \(why). Load the module (`modprobe zram`), or set up another swap device yourself with mkswap and swapon."
        case .noSuchDevice(let existing):
            return "\(path) does not exist (zram devices here: \(existing.isEmpty ? "none" : existing.joined(separator: ", "))). Name one of those, or leave the device out and mmpolicy adds one of its own (/sys/class/zram-control/hot_add)."
        case .deviceBusy(let why):
            return "\(path) is busy: \(why). mmpolicy uses only a zram device nobody else uses: leave the device out and it adds one of its own, or free this one first (`swapoff \(path); echo 1 > /sys/block/\(path.dropFirst("/dev/".count))/reset`) if it is yours."
        case .notSetUpByMMPolicy(let setUp):
            return "\(path) was not set up by mmpolicy (it has set up \(setUp.isEmpty ? "none" : setUp.joined(separator: ", "))), so mmpolicy will not touch it: it may be someone else's. If it is yours, swapoff it and write 1 to its zram reset file yourself."
        case .ownedByPolicy(let policy):
            return "\(path) was set up for tiering policy '\(policy)' (its manifest's [tiering] setup_zram) and goes when that policy is unloaded: `mmpolicy unload \(policy)`."
        case .lastSwapOfPolicies(let policies):
            return "\(path) is the last active swap area and tiering polic\(policies.count == 1 ? "y" : "ies") \(policies.map { "'\($0)'" }.joined(separator: ", ")) rel\(policies.count == 1 ? "ies" : "y") on it to move memory to: nothing was torn down. Unload \(policies.count == 1 ? "it" : "them") first (`mmpolicy unload NAME`), or set up other swap first."
        case .whichDevice(let setUp):
            if setUp.isEmpty { return "mmpolicy has set up no zram device to tear down (`mmpolicy tier status` lists the swap areas and who set them up)." }
            return "mmpolicy has set up several zram devices (\(setUp.joined(separator: ", "))): name the one to tear down, e.g. `mmpolicy tier teardown-zram \(setUp[0])`."
        case .journal(let why):
            return "the knob journal could not record or read \(path) (\(why)), so nothing was changed: mmpolicy changes nothing it could not undo after a crash. Free space in the state directory or repair its database (`mmpolicy status` shows state problems), then try again."
        case .systemCall(let operation):
            return "\(operation) \(path) failed\(errnoText). \(fix(for: operation))"
        }
    }

    /// The advice for a failed system call or sysfs access.
    func fix(for operation: String) -> String {
        switch errno {
        case .some(.permissionDenied), .some(.notPermitted):
            if operation.hasPrefix("swapon") {
                return "swapon needs root (CAP_SYS_ADMIN); the kernel also refuses more than 32 swap areas in all (`cat /proc/swaps`)."
            }
            return "Run as root: zram and swap are set up with root's privileges."
        case .some(.resourceBusy):
            return "Something else holds the device open or set it up meanwhile; mmpolicy left it as it found it. Check `cat /proc/swaps` and `lsblk`, then try again."
        case .some(.noMemory):
            if operation.hasPrefix("swapoff") {
                return "There is not enough free memory to bring back what the device holds: free memory (or set up other swap first) and try again."
            }
            return "The kernel could not allocate memory for it: free memory and try again, or ask for a smaller size."
        case .some(.noSuchFileOrDirectory), .some(.noSuchAddressOrDevice), .some(.operationNotSupportedByDevice):
            return "The device or its sysfs file is gone: it may have been removed meanwhile, or this kernel's zram lacks the interface."
        case .some(.invalidArgument):
            if operation.hasPrefix("swapon") { return "The kernel refused the swap header mmpolicy wrote, or the device is already swap." }
            if operation.hasPrefix("swapoff") { return "The device is not an active swap area (any more)." }
            return "The kernel refused the value; check the zram documentation for the file."
        default:
            return "Check the kernel log (`dmesg`) for what zram or swap reported."
        }
    }
}
