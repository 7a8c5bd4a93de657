#if canImport(Glibc)
import Glibc
#endif
import MMPolicyCore

/// A victim that passed validation, pinned by a pidfd so that the process
/// killed is the process checked even if its pid is reused meanwhile.
public struct ValidatedVictim: Sendable {
    public let process: ProcessSnapshot
    public let pidfd: PidFD
    /// Its memory cgroup directory, if the system has a memory controller.
    public let cgroupPath: String?
}

/// Why a decision was refused. Every rejection is a strike against the policy.
public struct OOMRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Checks an OOM policy's choice before anything is killed: the victim is
/// alive, inside the scope that ran out of memory, and not protected (pid 1,
/// kernel threads, the daemon, oom_score_adj -1000, the manifest's protect
/// list by comm or cgroup). A BPF program is trusted to compute, never to act.
public struct OOMVictimValidator: Sendable {
    public var daemonPID: Int32
    public var protect: ProtectList
    public var mount: MemoryCgroupMount?

    public init(daemonPID: Int32, protect: ProtectList, mount: MemoryCgroupMount?) {
        self.daemonPID = daemonPID
        self.protect = protect
        self.mount = mount
    }

    /// Validates process `pid` as a victim for an OOM in `scopePath` (a memory
    /// cgroup directory; nil = the whole system).
    public func validate(pid: Int32, within scopePath: String?) -> Result<ValidatedVictim, OOMRejection> {
        guard pid > 1 else {
            return .failure(OOMRejection(pid == 1 ? "pid 1 (init) is protected" : "pid \(pid) is not a process"))
        }
        guard pid != daemonPID else { return .failure(OOMRejection("pid \(pid) is the mmpolicy daemon itself")) }
        let pidfd: PidFD
        do { pidfd = try PidFD(pid: pid) } catch {
            return .failure(OOMRejection("pid \(pid) is not alive (\(error.errno.description))"))
        }
        let process: ProcessSnapshot
        do { process = try ProcessSnapshot.read(pid: pid) } catch {
            return .failure(OOMRejection("pid \(pid) is not alive (\(error.errno.description))"))
        }
        // The pidfd was opened before the snapshot; if its process is still
        // running now, the snapshot describes that same process.
        guard !pidfd.hasExited else { return .failure(OOMRejection("pid \(pid) exited during validation")) }
        if let problem = protection(of: process) { return .failure(OOMRejection(problem)) }
        let cgroupPath = mount.flatMap { ProcessSnapshot.memoryCgroupPath(pid: pid, mount: $0) }
        if let scopePath {
            guard let cgroupPath, CgroupTree.isWithin(cgroupPath, scopePath) else {
                return .failure(OOMRejection("pid \(pid) (\(process.comm)) is in \(cgroupPath ?? "no memory cgroup"), outside the scope \(scopePath)"))
            }
        }
        if let cgroupPath, let protected = protectedCgroup(containing: cgroupPath) {
            return .failure(OOMRejection("pid \(pid) (\(process.comm)) is in protected cgroup \(protected)"))
        }
        return .success(ValidatedVictim(process: process, pidfd: pidfd, cgroupPath: cgroupPath))
    }

    /// Validates every process of cgroup `id` (a descendant of `scopePath`, or
    /// the scope itself) as victims of a whole-group kill. Refuses the group if
    /// any member is protected or the group is empty.
    public func validateGroup(id: UInt64, within scopePath: String) -> Result<(path: String, victims: [ValidatedVictim]), OOMRejection> {
        guard let path = CgroupTree.directory(withID: id, under: scopePath) else {
            return .failure(OOMRejection("cgroup id \(id) is not \(scopePath) or below it"))
        }
        if let protected = protectedCgroup(containing: path) {
            return .failure(OOMRejection("cgroup \(path) is protected by \(protected)"))
        }
        var victims: [ValidatedVictim] = []
        for pid in CgroupTree.processes(under: path) {
            switch validate(pid: pid, within: path) {
            case .success(let victim): victims.append(victim)
            case .failure(let rejection):
                // A member that vanished is no obstacle; a protected one is.
                if ProcessSnapshot.isAlive(pid: pid) {
                    return .failure(OOMRejection("cgroup \(path) holds a process that may not be killed: \(rejection.reason)"))
                }
            }
        }
        guard !victims.isEmpty else { return .failure(OOMRejection("cgroup \(path) has no processes to kill")) }
        return .success((path, victims))
    }

    func protection(of process: ProcessSnapshot) -> String? {
        if process.isKernelThread { return "pid \(process.pid) (\(process.comm)) is a kernel thread" }
        if process.oomScoreAdj == -1000 { return "pid \(process.pid) (\(process.comm)) has oom_score_adj -1000 (never to be OOM-killed)" }
        if protect.comms.contains(process.comm) { return "pid \(process.pid) (\(process.comm)) is protected by the manifest's protect.comms" }
        return nil
    }

    func protectedCgroup(containing path: String) -> String? { protect.cgroupEntry(containing: path, mount: mount) }
}
