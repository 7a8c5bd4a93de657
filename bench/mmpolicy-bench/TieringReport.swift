// The tiering benchmark's tables: medians over rounds of each contender's
// figures, ratios within a round to no policy (slowdown) and to the static
// limit (saving), the readings over time, every run, and the targets.
import MMPolicyCore

/// The figures of a finished (or interrupted) tiering benchmark, as markdown tables.
///
/// Exists apart from the runs so that an interrupted benchmark still
/// prints what it measured, and so that every figure is judged the same
/// way: a ratio within one round (the machine's load drifts between
/// rounds), then the median over rounds.
struct TierReport {
    let settings: TierRunSettings
    let contenders: [TierContender]
    let results: [TierRunResult]

    static let mib = 1048576.0

    /// One line per finished run, printed as it finishes.
    static func progress(_ r: TierRunResult) {
        let cold = r.last.swappedShare(.cold) * 100
        Swift.print("  saved \(fmt(r.finalSavedBytes / mib, 0)) MiB, cold out \(fmt(cold, 0)) %, hot out \(fmt(r.last.swappedShare(.hot) * 100, 1)) %, hot loops \(fmt(r.rates.cpu / 1e6, 2)) M touches/CPU-s (control \(fmt(r.rates.controlCPU / 1e6, 2)), relative \(fmt(r.rates.relative, 3)); before t = 0 \(fmt(r.ratesBefore.relative, 3))), daemon CPU \(fmt(r.daemonCPUSeconds, 2)) s, refaults \(r.refaults)"
                    + (r.ejected.map { ", EJECTED: \($0)" } ?? "") + (r.otherSwap.isEmpty ? "" : ", other swap in use: \(r.otherSwap.joined(separator: ", "))"))
    }

    func runs(_ contender: TierContender) -> [TierRunResult] { results.filter { $0.contender == contender } }

    func baseline(_ r: TierRunResult) -> TierRunResult? { results.first { $0.round == r.round && $0.contender == .none } }
    func oracle(_ r: TierRunResult) -> TierRunResult? { results.first { $0.round == r.round && $0.contender == .staticLimit } }

    /// Throughput loss against no policy in the same round, percent.
    func loss(_ r: TierRunResult, _ rate: (TierRunResult) -> Double) -> Double? {
        guard let base = baseline(r) else { return nil }
        return (1 - rate(r) / rate(base)) * 100
    }

    /// Saving as a share of the static limit's in the same round.
    func savingRatio(_ r: TierRunResult) -> Double? {
        guard let o = oracle(r), o.finalSavedBytes > 0 else { return nil }
        return r.finalSavedBytes / o.finalSavedBytes
    }

    /// The workloads' system time above no policy's in the same round, s
    /// (reclaim and compression in the processes' own context: limit
    /// reclaim, refaults' decompression).
    func workloadSystemExcess(_ r: TierRunResult) -> Double? {
        guard let base = baseline(r) else { return nil }
        return r.workloadSystemSeconds - base.workloadSystemSeconds
    }

    /// daemon + kswapd + the workloads' system time above no policy + the limit write, s.
    func totalCPU(_ r: TierRunResult) -> Double {
        r.daemonCPUSeconds + r.kswapdCPUSeconds + max(0, workloadSystemExcess(r) ?? 0) + Double(r.limitWriteCPUNs) / 1e9
    }

    func median(_ contender: TierContender, _ value: (TierRunResult) -> Double?) -> Double {
        Self.median(runs(contender).compactMap(value).filter { $0.isFinite })
    }

    /// The middle value; of an even count, the mean of the two middle ones.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// "median (min-max)" when there is more than one round.
    func spread(_ contender: TierContender, _ decimals: Int, _ value: (TierRunResult) -> Double?) -> String {
        let values = runs(contender).compactMap(value).filter { $0.isFinite }
        guard !values.isEmpty else { return "-" }
        let mid = fmt(Self.median(values), decimals)
        return values.count == 1 ? mid : "\(mid) (\(fmt(values.min()!, decimals))-\(fmt(values.max()!, decimals)))"
    }

    var sixty: Double { Double(min(60, settings.durationSeconds)) }

    func print() {
        let s = settings
        let n = Double(s.processes)
        let hotTotal = Double(s.hotBytes) * n, coldTotal = Double(s.coldBytes) * n, randomTotal = Double(s.incompressibleBytes) * n
        let rounds = Set(results.map(\.round)).count
        Swift.print("## Tiering: \(s.processes) processes, hot \(fmt(hotTotal / Self.mib, 0)) MiB, cold \(fmt(coldTotal / Self.mib, 0)) MiB, incompressible \(fmt(randomTotal / Self.mib, 0)) MiB in all; medians of \(rounds) round(s) (min-max)\n")
        if let o = results.first(where: { $0.contender == .staticLimit }) {
            let others = runs(.staticLimit).map { fmt(Double($0.otherMemoryBytes) / Self.mib, 1) }.joined(separator: ", ")
            Swift.print("Static limit: hot sets x \(s.staticFactor) = \(fmt(hotTotal * s.staticFactor / Self.mib, 1)) MiB + the processes' other memory measured at t = 0 (memcg usage minus the parts' resident pages: \(others) MiB) = \(fmt(Double(o.limitBytes ?? 0) / Self.mib, 1)) MiB (first round).\n")
        }

        Swift.print("| contender | memory saved MiB | saved / static (same round) | cold set out at \(fmt(sixty, 0)) s | cold set out at end | hot set out at end | hot-loop throughput loss | 2nd half | loss, after t = 0 only | CPU s | refaults (memcg anon) | time to 90 % of final saving s |")
        Swift.print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in contenders where !runs(c).isEmpty {
            let cells = [
                spread(c, 0) { $0.finalSavedBytes / Self.mib },
                c == .staticLimit ? "1 (oracle)" : spread(c, 2) { savingRatio($0) },
                spread(c, 1) { $0.sample(at: sixty).map { $0.swappedShare(.cold) * 100 } } + " %",
                spread(c, 1) { $0.last.swappedShare(.cold) * 100 } + " %",
                spread(c, 1) { $0.last.swappedShare(.hot) * 100 } + " %",
                c == .none ? "0 (baseline)" : spread(c, 1) { loss($0, \.relativeChange) } + " %",
                c == .none ? "0 (baseline)" : spread(c, 1) { loss($0, \.relativeChangeLate) } + " %",
                c == .none ? "0 (baseline)" : spread(c, 1) { loss($0, \.rates.relative) } + " %",
                spread(c, 2) { totalCPU($0) },
                spread(c, 0) { Double($0.refaults) },
                spread(c, 1) { $0.secondsTo90 },
            ]
            Swift.print("| \(c) | \(cells.joined(separator: " | ")) |")
        }

        Swift.print("\nHot-loop throughput loss = 1 - (the run's change) / (no policy's change in the same round), where a run's change is (workloads' touches per loop-CPU second / the control's) after t = 0 over the same in the settle time before it. \"After t = 0 only\" leaves out the settle time: 1 - (workloads / control after t = 0) / (no policy's). Negative: faster than no policy (noise).")
        Swift.print("\nCPU, seconds over the \(s.durationSeconds) s (daemon: utime+stime of `mmpolicy daemon`; kswapd: all kswapd threads; workloads' system time above no policy's in the same round: reclaim, compression and decompression in the processes' own context; limit write: the writer's thread CPU, which reclaims in its own context):\n")
        Swift.print("| contender | daemon | kswapd | workloads' system time above none | limit write | total | major faults (memcg) | most in swap (memcg) MiB | plans carried out | demoted by plans MiB | refused actions |")
        Swift.print("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in contenders where !runs(c).isEmpty {
            let policy = c.policyName != nil
            let cells = [
                spread(c, 2) { $0.daemonCPUSeconds }, spread(c, 2) { $0.kswapdCPUSeconds },
                c == .none ? "0 (baseline)" : spread(c, 2) { workloadSystemExcess($0) },
                spread(c, 2) { Double($0.limitWriteCPUNs) / 1e9 }, spread(c, 2) { totalCPU($0) },
                spread(c, 0) { Double($0.majorFaults) }, spread(c, 0) { Double($0.maxMemcgSwapBytes) / Self.mib },
                policy ? spread(c, 0) { Double($0.plans) } : "-",
                policy ? spread(c, 0) { Double($0.demotedBytes) / Self.mib } : "-",
                policy ? spread(c, 0) { Double($0.refused) } : "-",
            ]
            Swift.print("| \(c) | \(cells.joined(separator: " | ")) |")
        }

        Swift.print("\nzram at the end, and the incompressible part (sent = its pages in swap, pagemap; zram holds them as huge pages, stored whole: held = huge_pages x 4 KiB):\n")
        Swift.print("| contender | zram stored MiB | compressed MiB | zram RAM (mem_used_total) MiB | RAM / stored | huge pages | incompressible sent to zram MiB | held for them MiB | saved on them MiB | hot loops, M touches per CPU-s | control, M touches per CPU-s | M touches/s wall |")
        Swift.print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in contenders where !runs(c).isEmpty {
            let cells = [
                spread(c, 1) { Double($0.last.zram.storedBytes) / Self.mib },
                spread(c, 1) { Double($0.last.zram.compressedBytes) / Self.mib },
                spread(c, 1) { Double($0.last.zram.usedBytes) / Self.mib },
                spread(c, 2) { $0.last.zram.storedBytes == 0 ? nil : Double($0.last.zram.usedBytes) / Double($0.last.zram.storedBytes) },
                spread(c, 0) { $0.last.zram.hugePages.map { Double($0) } },
                spread(c, 1) { Double($0.last.swappedBytes(.incompressible)) / Self.mib },
                spread(c, 1) { $0.last.zram.hugePages.map { Double($0) * 4096 / Self.mib } },
                spread(c, 1) { r in r.last.zram.hugePages.map { (Double(r.last.swappedBytes(.incompressible)) - Double($0) * 4096) / Self.mib } },
                spread(c, 2) { $0.rates.cpu / 1e6 }, spread(c, 2) { $0.rates.controlCPU / 1e6 }, spread(c, 2) { $0.rates.wall / 1e6 },
            ]
            Swift.print("| \(c) | \(cells.joined(separator: " | ")) |")
        }

        let marks = [2.0, 5, 10, 15, 20, 30, 45, 60, 75, 90, 120].filter { $0 <= Double(s.durationSeconds) }
        Swift.print("\nOver time (medians): memory saved MiB / cold set out % / hot set out %, seconds after the contender was applied:\n")
        Swift.print("| contender | " + marks.map { "\(fmt($0, 0)) s" }.joined(separator: " | ") + " |")
        Swift.print("|---|" + marks.map { _ in "---|" }.joined())
        for c in contenders where !runs(c).isEmpty {
            let cells = marks.map { t in
                let saved = median(c) { $0.sample(at: t).map { Double($0.savedBytes) / Self.mib } }
                let cold = median(c) { $0.sample(at: t).map { $0.swappedShare(.cold) * 100 } }
                let hot = median(c) { $0.sample(at: t).map { $0.swappedShare(.hot) * 100 } }
                return "\(fmt(saved, 0)) / \(fmt(cold, 0)) / \(fmt(hot, 0))"
            }
            Swift.print("| \(c) | \(cells.joined(separator: " | ")) |")
        }

        Swift.print("\nEvery run (in the order run):\n")
        Swift.print("| round | contender | saved MiB | cold out % | hot out % | incompr. out MiB | M touches/CPU-s | control | relative | relative before t = 0 | loss % | loss % after t = 0 only | daemon CPU s | workloads sys s | refaults | t90 s | other memory MiB | load average after | notes |")
        Swift.print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results {
            var notes: [String] = []
            if let limit = r.limitBytes { notes.append("limit \(fmt(Double(limit) / Self.mib, 1)) MiB") }
            if let ejected = r.ejected { notes.append("ejected: \(ejected)") }
            if !r.otherSwap.isEmpty { notes.append("other swap in use: \(r.otherSwap.joined(separator: ", "))") }
            if r.maxForeignBytes > 0 { notes.append("up to \(fmt(Double(r.maxForeignBytes) / Self.mib, 1)) MiB of other processes' pages on the run's zram") }
            if r.maxElsewhereBytes > 0 { notes.append("up to \(fmt(Double(r.maxElsewhereBytes) / Self.mib, 1)) MiB of the memcg's swap on another device") }
            let cells = [
                "\(r.round + 1)", "\(r.contender)", fmt(r.finalSavedBytes / Self.mib, 0), fmt(r.last.swappedShare(.cold) * 100, 1),
                fmt(r.last.swappedShare(.hot) * 100, 1), fmt(Double(r.last.swappedBytes(.incompressible)) / Self.mib, 1),
                fmt(r.rates.cpu / 1e6, 2), fmt(r.rates.controlCPU / 1e6, 2), fmt(r.rates.relative, 3), fmt(r.ratesBefore.relative, 3),
                loss(r, \.relativeChange).map { fmt($0, 1) } ?? "-", loss(r, \.rates.relative).map { fmt($0, 1) } ?? "-",
                fmt(r.daemonCPUSeconds, 2), fmt(r.workloadSystemSeconds, 2), "\(r.refaults)", r.secondsTo90.map { fmt($0, 0) } ?? "-",
                fmt(Double(r.otherMemoryBytes) / Self.mib, 1), r.loadAverageAfter, notes.joined(separator: "; "),
            ]
            Swift.print("| \(cells.joined(separator: " | ")) |")
        }
        printTargets()
        Swift.print("")
    }

    /// Percentage points of throughput loss this measurement cannot tell
    /// apart: no policy's own change from its settle time to the run spans
    /// about +-2 % between runs (bench/README.md, "Tiering").
    static let resolutionPoints = 2.0

    /// The issue's targets, for each policy contender.
    func printTargets() {
        let policies = contenders.filter { $0.policyName != nil && !runs($0).isEmpty }
        guard !policies.isEmpty else { return }
        Swift.print("\nTargets (medians):")
        let staticLoss = median(.staticLimit) { loss($0, \.relativeChange) }
        for c in policies {
            var lines: [String] = []
            if Double(settings.durationSeconds) >= 60 {
                let cold = median(c) { $0.sample(at: 60).map { $0.swappedShare(.cold) * 100 } }
                lines.append(">= 60 % of the cold set out within 60 s: \(fmt(cold, 1)) %, \(cold >= 60 ? "met" : "not met")")
            }
            let cpuLoss = median(c) { loss($0, \.relativeChange) }, afterLoss = median(c) { loss($0, \.rates.relative) }
            lines.append("hot-loop throughput loss <= 3 %: \(fmt(cpuLoss, 1)) % (\(fmt(afterLoss, 1)) % from after t = 0 alone), \(cpuLoss <= 3 ? "met" : "not met")" + (cpuLoss.isNaN ? " (no `none` contender)" : ""))
            let ratio = median(c) { savingRatio($0) }
            let noMore = cpuLoss <= max(staticLoss, 0) + Self.resolutionPoints
            lines.append(">= 90 % of the static limit's saving at no more slowdown (within \(fmt(Self.resolutionPoints, 0)) points, the measurement's resolution): \(fmt(ratio * 100, 0)) % of its saving, loss \(fmt(cpuLoss, 1)) % against its \(fmt(staticLoss, 1)) %, \(ratio >= 0.9 && noMore ? "met" : "not met")" + (ratio.isNaN ? " (no `static` contender)" : ""))
            let sent = median(c) { Double($0.last.swappedBytes(.incompressible)) / Self.mib }
            lines.append("incompressible memory costs no zram CPU (none of it sent): \(fmt(sent, 1)) MiB sent, \(sent == 0 ? "met" : "not met")")
            Swift.print("- \(c): " + lines.joined(separator: "; "))
        }
    }
}
