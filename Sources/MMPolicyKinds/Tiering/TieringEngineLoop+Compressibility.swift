import BPFKit
import MMPolicyCore

/// Sampling a plan's demotions before they are carried out
/// (``CompressibilityGate``), with the process's own memory and the region
/// map.
extension TieringEngineLoop {
    /// `accepted` less the incompressible regions of its demotions when
    /// policy `name` skips them, and what was sampled. Each region sampled
    /// gets its estimate written into the region map, for policies to read.
    func checkCompressibility(_ name: String, _ accepted: [TieringValidator.Accepted], now: UInt64)
        -> ([TieringValidator.Accepted], CompressibilitySampling?) {
        guard var attached = policies[name] else { return (accepted, nil) }
        var gate = attached.compressibility ?? CompressibilityGate(settings: attached.instance.settings)
        let sensors = self.sensors, pages = gate.samplePages
        var pidfds: [Int32: PidFD?] = [:]
        let result = gate.apply(accepted, now: now, clock: monotonicNanoseconds) { pid, region, parts in
            if pidfds[pid] == nil { pidfds[pid] = .some(try? PidFD(pid: pid)) }
            guard let pidfd = pidfds[pid] ?? nil,
                  let estimate = try? CompressibilityEstimate.sample(pidfd, ranges: parts, pages: pages),
                  let stored = estimate.storedRatio
            else { return nil }
            // 0 means "not sampled" in the map: a region of zeros is 1.
            let permille = UInt32(max(1, min(1000, (stored * 1000).rounded())))
            do { try sensors?.setCompressibility(pid: pid, region: region, permille: permille) } catch {
                environment.log("tiering: cannot record the compressibility of a region of pid \(pid) for '\(name)': \(error)")
            }
            return permille
        }
        attached.compressibility = gate
        policies[name] = attached
        return result
    }
}
