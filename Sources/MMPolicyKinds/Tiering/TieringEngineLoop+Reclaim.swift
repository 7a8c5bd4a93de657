import BPFKit
import MMPolicyCore

/// A plan's reclaim targets: which memory cgroup an id names, and the
/// kernel's own reclaim of each accepted one (``MemcgReclaim``: v2
/// memory.reclaim, v1 a stepped, journaled lower-and-raise of
/// memory.limit_in_bytes), one after the other on the engine's thread.
extension TieringEngineLoop {
    /// Has the kernel reclaim each accepted target, records what came of
    /// it; returns how many gave anything up.
    func reclaim(_ targets: [TieringValidator.AcceptedTarget], policy: String, payload: inout TieringDecisionPayload) -> Int {
        guard !targets.isEmpty else { return 0 }
        guard let mount = environment.mount else {
            for target in targets {
                payload.failures.append("cgroup \(target.cgroup): there is no memory cgroup hierarchy to reclaim in")
            }
            return 0
        }
        var done = 0
        for target in targets {
            var entry = TieringDecisionPayload.Reclaim(cgroupID: target.target.cgroupID, cgroup: target.cgroup,
                                                       askedBytes: target.target.bytes, grantedBytes: target.bytes)
            do throws(MemcgReclaimError) {
                let outcome = try MemcgReclaim(path: target.cgroup, version: mount.version)
                    .reclaim(target.bytes, journal: environment.journal, owner: policy)
                entry.reclaimedBytes = outcome.reclaimedBytes
                entry.durationUs = Double(outcome.durationNs) / 1000
                entry.steps = outcome.steps.count
                entry.stop = outcome.stop.rawValue
                if outcome.oomKills > 0 {
                    payload.failures.append("cgroup \(target.cgroup): the kernel OOM-killed \(outcome.oomKills) process(es) while its limit was lowered")
                }
                for note in outcome.notes { environment.log("tiering: \(note)") }
                if outcome.reclaimedBytes > 0 { done += 1 }
            } catch {
                entry.failure = error.description
                payload.failures.append(error.description)
                environment.log("tiering: policy '\(policy)': \(error)")
            }
            payload.reclaimedBytes += entry.reclaimedBytes
            payload.reclaims.append(entry)
        }
        return done
    }

    /// Observe mode: records what each accepted target would have asked
    /// the kernel for, and does nothing.
    func observe(_ targets: [TieringValidator.AcceptedTarget], payload: inout TieringDecisionPayload) -> Int {
        for target in targets {
            payload.reclaims.append(TieringDecisionPayload.Reclaim(cgroupID: target.target.cgroupID, cgroup: target.cgroup,
                                                                   askedBytes: target.target.bytes, grantedBytes: target.bytes))
            payload.reclaimedBytes += target.bytes
        }
        return targets.count
    }

    /// Which memory cgroup an id names: looked for in `scope` first (where
    /// a valid target is), then in the whole hierarchy (to say why one
    /// outside is refused).
    func cgroupFacts(for scope: ResolvedScope) -> TieringCgroupFacts {
        guard let mount = environment.mount else { return .none }
        let root = mount.path, scopePath = scope.cgroupPath
        return TieringCgroupFacts { id in
            if let scopePath, let found = CgroupTree.directory(withID: id, under: scopePath) { return found }
            return CgroupTree.directory(withID: id, under: root)
        }
    }
}
