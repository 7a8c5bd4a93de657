#if canImport(Glibc)
import Glibc
#endif

/// A cgroup knob that a new child cgroup copies from its parent when it is
/// created, as cgroup v1's memory.oom_control copies `oom_kill_disable`.
///
/// It exists because of the gap between `mkdir` and the daemon's next look at
/// the tree (up to a second): a memcg made below one whose kernel OOM killer
/// mmpolicy disabled starts out with the killer disabled too, but has no
/// journal entry yet. Restoring the parent alone would leave that child with
/// the killer off after the daemon is gone, and a task that hits its limit
/// there would wait forever. So restoring a journaled knob of this kind also
/// resets every descendant that is not journaled itself (nor below another
/// journaled one) and holds the value mmpolicy sets.
struct InheritedKnob: Sendable {
    /// The knob's file name in each cgroup directory.
    var fileName: String
    /// The one value mmpolicy ever writes to it, in the form `normalize` gives.
    var mmpolicyValue: String
    /// The file's text as a value to compare ("oom_kill_disable 1\n..." -> "1").
    var normalize: @Sendable (String) -> String

    static let oomKillDisable = InheritedKnob(fileName: "memory.oom_control", mmpolicyValue: "1") { text in
        text.contains("oom_kill_disable 1") ? "1" : "0"
    }

    static let all: [InheritedKnob] = [.oomKillDisable]

    /// The rule for the knob file at `path`, with the cgroup directory it is in.
    static func rule(for path: String) -> (knob: InheritedKnob, directory: String)? {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let name = path[path.index(after: slash)...]
        guard let knob = all.first(where: { $0.fileName == name }) else { return nil }
        return (knob, String(path[..<slash]))
    }

    /// Knob files below `directory` that took their value from it: in
    /// descendants that are not journaled (`journaled` holds knob file
    /// paths), not descending into a journaled one, whose subtree is that
    /// entry's own.
    func inheritors(below directory: String, journaled: Set<String>) -> [String] {
        var found: [String] = []
        var queue = CgroupTree.subdirectories(of: directory)
        while let child = queue.popLast() {
            let file = child + "/" + fileName
            if journaled.contains(file) { continue }
            found.append(file)
            queue.append(contentsOf: CgroupTree.subdirectories(of: child))
        }
        return found.sorted()
    }
}
