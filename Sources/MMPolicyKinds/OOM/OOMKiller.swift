#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// What killing a set of validated victims took.
public struct KillResult: Sendable {
    /// CLOCK_MONOTONIC when the last SIGKILL was sent.
    public var killedNs: UInt64
    /// CLOCK_MONOTONIC when process_mrelease returned for the last victim
    /// (its memory is free); nil if no release succeeded.
    public var releasedNs: UInt64?
    /// Victims the signal reached.
    public var killed: [Int32]
    /// What went wrong, if anything (a victim already gone is not a failure).
    public var problems: [String]
}

/// Carries out a validated OOM decision: SIGKILL through each victim's pidfd,
/// then process_mrelease so its memory is freed now, not whenever the dying
/// task gets to run.
public enum OOMKiller {
    public static func kill(_ victims: [ValidatedVictim]) -> KillResult {
        var killed: [Int32] = [], problems: [String] = []
        for victim in victims {
            do {
                try victim.pidfd.sendSignal(SIGKILL)
                killed.append(victim.process.pid)
            } catch {
                problems.append("SIGKILL to pid \(victim.process.pid): \(error)")
            }
        }
        let killedNs = monotonicNanoseconds()
        var released = false
        // A dying victim frees its memory in its own exit while process_mrelease
        // reaps it from here: on two CPUs the halves overlap, on one they queue.
        CPUPlacement.awayFrom(Set(victims.compactMap(\.process.processor))) {
            for victim in victims where killed.contains(victim.process.pid) {
                do throws(SystemCallError) {
                    // .released or .alreadyExited (ESRCH: the victim passed exit_mm()
                    // before process_mrelease looked): either way its memory is freed
                    // or being freed by its own exit.
                    try victim.pidfd.releaseMemory()
                    released = true
                } catch where error.errno == .noSuchProcess || error.errno == .invalidArgument {
                    // releaseMemory() never throws ESRCH (see above). EINVAL after the
                    // SIGKILL: the kernel would not reap this mm, because the victim is
                    // dumping core or shares its mm with a process that is not dying (which
                    // keeps it). Counted as released all the same, though the memory may
                    // not come free.
                    released = true
                } catch {
                    problems.append("process_mrelease of pid \(victim.process.pid): \(error)")
                }
            }
        }
        return KillResult(killedNs: killedNs, releasedNs: released ? monotonicNanoseconds() : nil,
                          killed: killed, problems: problems)
    }
}
