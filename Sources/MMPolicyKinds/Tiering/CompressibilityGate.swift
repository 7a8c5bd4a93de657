import CMMPolicyABI
import MMPolicyCore

/// The last step before a plan's demotions are carried out: each 2 MiB
/// region they cover is sampled (a few resident pages, unless the region
/// was sampled in the last ``resampleIntervalNs``), and, with
/// `[tiering] incompressible = "skip"`, the regions zram would store whole
/// are cut out of the demotions.
///
/// Exists because paging out memory that does not compress (compressed
/// media, encrypted or random data) costs the CPU to try compressing it,
/// frees nothing (zram keeps such a page whole) and costs a swap-in when it
/// is touched again. What it finds also goes into the region map
/// (`compressed_permille`, MMPOLICY_TIER_REGION_INCOMPRESSIBLE), so a
/// policy can stop choosing those regions itself.
///
/// Pure: the sampling itself (a process's memory, the region map) is the
/// `Sampler` the engine passes in, so the gate is tested without a kernel.
struct CompressibilityGate {
    /// One region's last estimate.
    struct Sample: Equatable {
        /// What zram would keep of it per 1000 bytes (whole-stored pages at 1000).
        var permille: UInt32
        var sampledNs: UInt64
    }

    /// Samples the given parts of region `region` of process `pid`: its
    /// per-mille estimate, nil when no sampled page was resident (or the
    /// process could not be read).
    typealias Sampler = (_ pid: Int32, _ region: UInt64, _ parts: [AddressRange]) -> UInt32?

    /// A region's estimate is trusted this long; memory changes, but rarely
    /// from compressible to not and back within a minute.
    static let resampleIntervalNs: UInt64 = 60_000_000_000

    var samplePages: Int
    var policy: TieringSettings.IncompressiblePolicy
    /// Per process, per region: the last estimate.
    private(set) var samples: [Int32: [UInt64: Sample]] = [:]

    init(settings: TieringSettings) {
        samplePages = settings.compressibilitySamplePages
        policy = settings.incompressible
    }

    /// Whether a region with this estimate is incompressible (the region
    /// map's rule, MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE).
    static func isIncompressible(_ permille: UInt32) -> Bool { permille > TieringSensors.incompressiblePermille }

    /// `accepted` with, if the policy is `.skip`, every incompressible
    /// region cut out of its demotions (an action left empty goes); what it
    /// sampled and skipped. Other actions pass unchanged. `clock` times the
    /// sampling (CLOCK_MONOTONIC ns).
    mutating func apply(_ accepted: [TieringValidator.Accepted], now: UInt64, clock: () -> UInt64,
                        sample: Sampler) -> (accepted: [TieringValidator.Accepted], report: CompressibilitySampling?) {
        guard samplePages > 0, accepted.contains(where: { $0.action.kind == .demote }) else { return (accepted, nil) }
        forgetOld(now: now)
        var report = CompressibilitySampling()
        let started = clock()
        // Every demoted part of each region, per process, so a region is sampled once per plan.
        var parts: [Int32: [UInt64: [AddressRange]]] = [:]
        for item in accepted where item.action.kind == .demote {
            for range in item.ranges {
                for region in TieringEngineLoop.regions(of: range) {
                    let span = Self.span(of: region)
                    parts[item.action.pid, default: [:]][region, default: []]
                        .append(AddressRange(start: max(range.start, span.start), end: min(range.end, span.end)))
                }
            }
        }
        var incompressible: [Int32: [UInt64]] = [:]
        for pid in parts.keys.sorted() {
            for (region, regionParts) in parts[pid]!.sorted(by: { $0.key < $1.key }) {
                var known = samples[pid]?[region]
                if known == nil {
                    if let permille = sample(pid, region, AddressRange.merged(regionParts)) {
                        known = Sample(permille: permille, sampledNs: now)
                        samples[pid, default: [:]][region] = known
                    }
                    report.sampledRegions += 1
                }
                if let known, Self.isIncompressible(known.permille) {
                    report.incompressibleRegions += 1
                    incompressible[pid, default: []].append(region)
                }
            }
        }
        report.sampleMicroseconds = Double(clock() - started) / 1000
        guard policy == .skip, !incompressible.isEmpty else { return (accepted, report) }
        var kept: [TieringValidator.Accepted] = []
        for var item in accepted {
            if item.action.kind == .demote, let regions = incompressible[item.action.pid] {
                let before = item.bytes
                for region in regions { item.ranges = AddressRange.removing(Self.span(of: region), from: item.ranges) }
                report.skippedBytes += before - item.bytes
                if item.ranges.isEmpty { continue }
            }
            kept.append(item)
        }
        return (kept, report)
    }

    /// Drops estimates older than ``resampleIntervalNs`` (and so the
    /// processes that are gone, in time).
    private mutating func forgetOld(now: UInt64) {
        for pid in samples.keys {
            samples[pid] = samples[pid]!.filter { now < $0.value.sampledNs + Self.resampleIntervalNs }
            if samples[pid]!.isEmpty { samples.removeValue(forKey: pid) }
        }
    }

    /// The addresses of a 2 MiB region.
    static func span(of region: UInt64) -> AddressRange {
        let shift = UInt64(MMPOLICY_TIER_REGION_SHIFT)
        return AddressRange(start: region << shift, length: 1 << shift)
    }
}

/// What the compressibility check did in one plan (part of the tiering
/// decision record): how many regions it sampled, how many of the plan's
/// regions are incompressible, what it left out of the demotions for that,
/// and what the sampling cost.
public struct CompressibilitySampling: Codable, Sendable, Equatable {
    /// Regions sampled in this plan (the others had a recent estimate).
    public var sampledRegions: Int = 0
    /// Regions of the plan's demotions that are incompressible (sampled now or before).
    public var incompressibleRegions: Int = 0
    /// Bytes of address space left out of the demotions as incompressible
    /// (`incompressible = "skip"`; 0 with "demote").
    public var skippedBytes: UInt64 = 0
    /// Time spent sampling, all regions together.
    public var sampleMicroseconds: Double = 0

    public init(sampledRegions: Int = 0, incompressibleRegions: Int = 0, skippedBytes: UInt64 = 0, sampleMicroseconds: Double = 0) {
        self.sampledRegions = sampledRegions
        self.incompressibleRegions = incompressibleRegions
        self.skippedBytes = skippedBytes
        self.sampleMicroseconds = sampleMicroseconds
    }
}
