import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Copies bytes out of another process's memory with process_vm_readv(2).
///
/// Exists for looking at what a process holds (how well it would compress)
/// without stopping it. Mind what it does to swapped pages: the kernel
/// faults every page it copies in, so **reading a swapped-out page brings
/// it back into RAM** (measured: 256 pages read, 256 major faults, VmSwap
/// down by 1 MiB), undoing a demotion. Check `PageResidency` first, as
/// `CompressibilityEstimate` does, or sample before demoting. A page read
/// back into the swap cache by MADV_WILLNEED is mapped without a major fault.
public enum RemoteMemory {
    /// Copies `range` of the process `pidfd` refers to into `buffer` (at most
    /// `buffer.count` bytes). Returns the bytes copied: fewer than asked when
    /// the range runs into unmapped memory. Throws when nothing could be
    /// copied (EFAULT: the start is not mapped; ESRCH: the process is gone;
    /// EPERM: no ptrace read access).
    public static func copy(_ pidfd: PidFD, from range: AddressRange, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        let length = Int(min(range.length, UInt64(buffer.count)))
        guard length > 0 else { return 0 }
        var local = iovec(iov_base: buffer.baseAddress, iov_len: length)
        var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(range.start)), iov_len: length)
        while true {
            let n = LinuxSyscall.processVMReadv(pidfd.pid, local: &local, 1, remote: &remote, 1)
            if n > 0 {
                try pidfd.checkAlive(after: "the memory of process \(pidfd.pid)")
                return n
            }
            let code = n == 0 ? Errno.badAddress : Errno(rawValue: Glibc.errno)
            if code == .interrupted { continue }
            let fix: String? = switch code {
            case .badAddress: "The range \(range.hexDescription) is not mapped in process \(pidfd.pid) (any more)."
            case .noSuchProcess: "Process \(pidfd.pid) no longer exists."
            case .notPermitted, .permissionDenied: "Reading process \(pidfd.pid)'s memory needs ptrace read access (root, or CAP_SYS_PTRACE)."
            case .noMemory: "The kernel could not allocate memory for the copy."
            default: nil
            }
            throw SystemCallError(operation: "process_vm_readv", target: "process \(pidfd.pid), \(range.hexDescription)", errno: code, fix: fix)
        }
    }
}
