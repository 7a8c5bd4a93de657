import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// The guardian's watch, while the daemon runs, over the memcgs whose kernel
/// OOM killer a policy holds off (cgroup v1 `oom_kill_disable=1`).
///
/// It exists because a held OOM waits for the daemon, and a daemon that is
/// stopped (SIGSTOP, a debugger), stuck or slow would leave the memcg's tasks
/// waiting without bound. The guardian registers its own OOM eventfd on every
/// memcg at and below each held root (and an inotify watch for new children,
/// which copy `oom_kill_disable=1` at mkdir and are rescanned for when they
/// appear), notes when each OOM began, and hands
/// an OOM still unresolved after its root's bound to the kernel killer
/// (`oom_kill_disable=0` on the memcg that hit its limit, which also wakes
/// its waiting tasks). It tells the daemon both: the onset (so decision
/// latencies count from the OOM) and the handover (so the daemon records it
/// and turns the killer off again once the OOM is over).
///
/// It does not need the daemon to act: a stopped daemon's messages wait in
/// the link until it runs again.
struct GuardianOOMWatch {
    /// Held roots and their bounds.
    private(set) var holds: [String: UInt64] = [:]
    private var notifiers: [String: OOMNotifier] = [:]
    /// New children of held memcgs (nil if inotify is unavailable: then the
    /// trees are walked every ``fallbackRescanIntervalNs``).
    private let creations = try? DirectoryCreationWatch()
    /// OOMs in progress: memcg -> when the guardian saw it begin.
    private(set) var episodes: [String: UInt64] = [:]
    private var nextRescanNs: UInt64 = 0

    /// How often the held trees are walked for new memcgs anyway (a
    /// safety net: inotify reports each mkdir), and how often without inotify.
    static let rescanIntervalNs: UInt64 = 5_000_000_000
    static let fallbackRescanIntervalNs: UInt64 = 250_000_000
    /// How often an OOM in progress is looked at.
    static let checkIntervalNs: UInt64 = 20_000_000

    /// The eventfds to poll, with their memcgs.
    var pollSet: [(fd: Int32, memcg: String)] { notifiers.map { ($0.value.rawValue, $0.key) } }
    /// The inotify descriptor to poll for new memcgs, if any.
    var creationFD: Int32? { creations?.rawValue }

    /// A memcg was made below a held one: walk the trees at the next service.
    mutating func childrenChanged() {
        if creations?.drain() == true { nextRescanNs = 0 }
    }

    /// How long the guardian may sleep before it must look again.
    func timeoutMs(now: UInt64) -> Int32 {
        guard !holds.isEmpty else { return -1 }
        let next = episodes.isEmpty ? nextRescanNs : min(nextRescanNs, now + Self.checkIntervalNs)
        return next <= now ? 0 : Int32(min((next - now) / 1_000_000 + 1, 1000))
    }

    /// Applies a hold or release from the daemon; the next ``service(now:)`` rescans.
    mutating func apply(_ message: GuardianMessage) {
        switch message {
        case .hold(let root, let boundNs): holds[root] = boundNs
        case .release(let root): holds.removeValue(forKey: root)
        default: return
        }
        nextRescanNs = 0
    }

    /// Memcgs whose eventfd fired: an OOM may have begun. Returns the onsets to report.
    mutating func fired(_ memcgs: [String], now: UInt64) -> [GuardianMessage] {
        var onsets: [GuardianMessage] = []
        for memcg in memcgs {
            _ = notifiers[memcg]?.consume()
            guard episodes[memcg] == nil else { continue }
            guard let control = try? MemcgV1(path: memcg).oomControl() else {
                notifiers.removeValue(forKey: memcg)  // removed: the kernel signals its eventfds at rmdir
                continue
            }
            // With the killer on, the kernel resolves it: nothing is held.
            guard control.underOOM, control.oomKillDisable else { continue }
            episodes[memcg] = now
            onsets.append(.onset(memcg: memcg, onsetNs: now))
        }
        return onsets
    }

    /// Rescans when due, and hands every OOM past its bound to the kernel.
    /// Returns the handovers (and the failures, for the log).
    mutating func service(now: UInt64) -> (handed: [OOMHoldBoard.Handover], failures: [String]) {
        if now >= nextRescanNs {
            rescan()
            nextRescanNs = now + (creations == nil ? Self.fallbackRescanIntervalNs : Self.rescanIntervalNs)
        }
        guard !episodes.isEmpty else { return ([], []) }
        // Still held and under OOM.
        var open: [String: MemcgV1.OOMControl] = [:]
        for memcg in episodes.keys {
            if let control = try? MemcgV1(path: memcg).oomControl(), control.underOOM, control.oomKillDisable {
                open[memcg] = control
            } else {
                episodes.removeValue(forKey: memcg)
            }
        }
        var handed: [OOMHoldBoard.Handover] = [], failures: [String] = []
        // v1 marks the memcg at its limit and everything below it under_oom;
        // the killer that must run is the topmost one's.
        for (memcg, control) in open where !Self.hasAncestor(of: memcg, in: open) {
            guard let onset = episodes[memcg], let bound = bound(of: memcg), now >= onset + bound else { continue }
            do {
                try MemcgV1(path: memcg).setOOMKillDisable(false)
                handed.append(OOMHoldBoard.Handover(memcg: memcg, onsetNs: onset, handedNs: now, killCount: control.oomKillCount))
            } catch {
                failures.append("handing the OOM in \(memcg) to the kernel failed: \(error)")
            }
            for other in open.keys where CgroupTree.isWithin(other, memcg) { episodes.removeValue(forKey: other) }
        }
        return (handed, failures)
    }

    /// The bound of the nearest held root containing `memcg`.
    func bound(of memcg: String) -> UInt64? {
        holds.filter { CgroupTree.isWithin(memcg, $0.key) }.max { $0.key.count < $1.key.count }?.value
    }

    static func hasAncestor(of memcg: String, in set: [String: MemcgV1.OOMControl]) -> Bool {
        set.keys.contains { $0 != memcg && CgroupTree.isWithin(memcg, $0) }
    }

    /// Registers an eventfd (and a creation watch) on every memcg at and
    /// below each root; drops those gone. Walks again while it finds new
    /// ones: a child made after its parent was listed but before the parent
    /// was watched shows up in the next walk.
    private mutating func rescan() {
        for _ in 0..<3 {
            var wanted = Set<String>()
            for root in holds.keys { wanted.formUnion(CgroupTree.descendants(of: root)) }
            for memcg in Array(notifiers.keys) where !wanted.contains(memcg) {
                notifiers.removeValue(forKey: memcg)
                episodes.removeValue(forKey: memcg)
            }
            var found = false
            for memcg in wanted where notifiers[memcg] == nil {
                try? creations?.watch(memcg)
                // Registering on a memcg already under OOM signals at once.
                notifiers[memcg] = try? OOMNotifier(memcg: memcg)
                found = true
            }
            if !found { return }
        }
    }
}
