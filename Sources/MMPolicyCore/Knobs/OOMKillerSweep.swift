import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Turns the kernel OOM killer back on (cgroup v1 `memory.oom_control`
/// `oom_kill_disable` 1 -> 0) in every memcg below some roots where it is
/// off, for when the knob journal that says which ones mmpolicy turned off
/// cannot be read.
///
/// It exists because the journal can be lost (a damaged database) while the
/// kernel still holds what a daemon that is gone set: a memcg whose killer
/// is off and whose OOM handler is gone leaves every task that reaches the
/// limit waiting forever. Without the journal the originals are unknown, but
/// the kernel's default is known: a memcg is made with its parent's value,
/// and the root's is 0; only a userspace OOM handler turns it off. So a
/// memcg found with its killer off where mmpolicy could have turned it off
/// gets the kernel default back. Which roots that is, is the caller's rule
/// (the daemon's: the v1 scopes of its desired set, or the whole hierarchy
/// when that is unreadable too; see docs/state-database.md).
///
/// Parents are reset before their children, so a memcg made meanwhile
/// copies 0. Nothing else is touched: only a memcg whose killer is off is
/// written, and only that one value.
public enum OOMKillerSweep {
    /// What a sweep did.
    public struct Result: Sendable, Equatable {
        /// The memcg directories whose killer was off and is on now.
        public var reset: [String] = []
        /// How many memcgs were looked at.
        public var examined = 0
        /// Writes that failed (those memcgs keep their killer off).
        public var failures: [String] = []

        public init(reset: [String] = [], examined: Int = 0, failures: [String] = []) {
            self.reset = reset
            self.examined = examined
            self.failures = failures
        }
    }

    /// Sweeps each root and every memcg below it, parents first (a root
    /// below another root is swept once). A root that does not exist is skipped.
    public static func run(roots: [String]) -> Result {
        var result = Result()
        var seen = Set<String>()
        for root in roots {
            for directory in CgroupTree.descendants(of: root) where seen.insert(directory).inserted {
                result.examined += 1
                sweep(directory, into: &result)
            }
        }
        return result
    }

    private static func sweep(_ directory: String, into result: inout Result) {
        let knob = InheritedKnob.oomKillDisable
        let file = directory + "/" + knob.fileName
        guard let text = try? String(contentsOfProcFile: file), knob.normalize(text) == knob.mmpolicyValue else { return }
        do throws(KnobError) {
            try KnobJournal.writeFile(file, "0")
            result.reset.append(directory)
        } catch where error.errno == Errno.noSuchFileOrDirectory {
            // Removed meanwhile.
        } catch {
            result.failures.append(error.description)
        }
    }
}
