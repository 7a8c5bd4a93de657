@testable import MMPolicyKinds
import MMPolicyCore
import MMPolicyTestSupport
import Testing

/// The `[tiering]` compressibility options, the gate that samples a plan's
/// demotions and leaves incompressible regions out, how its findings are
/// recorded, and the status figures: all on numbers, no kernel.
@Suite struct CompressibilityGateTests {
    static let region: UInt64 = 2 << 20

    // MARK: the manifest

    static func settings(_ lines: String) throws -> TieringSettings? {
        let manifest = try Manifest.parse(toml: """
            name = "p"
            kind = "tiering"
            object = "p.bpf.o"
            description = "d"
            [tiering]
            \(lines)
            """, path: "policies/p.toml", kinds: KindRegistry.builtIn)
        return manifest.kindSettings as? TieringSettings
    }

    static func failure(_ lines: String) -> ManifestError? {
        do {
            _ = try settings(lines)
            return nil
        } catch let error as ManifestError {
            return error
        } catch {
            return nil
        }
    }

    @Test func skipAndEightPagesByDefault() throws {
        let settings = try #require(try Self.settings("interval_ms = 1000"))
        #expect(settings.incompressible == .skip && settings.compressibilitySamplePages == 8)
        #expect(TieringSettings.defaults.incompressible == .skip && TieringSettings.defaults.compressibilitySamplePages == 8)
    }

    @Test func theOptionsAreRead() throws {
        let settings = try #require(try Self.settings("incompressible = \"demote\"\ncompressibility_sample_pages = 0"))
        #expect(settings.incompressible == .demote && settings.compressibilitySamplePages == 0)
        #expect(try Self.settings("compressibility_sample_pages = 512")?.compressibilitySamplePages == 512)
    }

    @Test func wrongValuesNameTheKey() throws {
        let word = try #require(Self.failure("incompressible = \"keep\""))
        #expect(word.key == "tiering.incompressible"
                && word.reason == .invalidValue(expected: "\"skip\" or \"demote\"", found: "string \"keep\""))
        let type = try #require(Self.failure("incompressible = true"))
        #expect(type.key == "tiering.incompressible")
        let tooMany = try #require(Self.failure("compressibility_sample_pages = 513"))
        #expect(tooMany.key == "tiering.compressibility_sample_pages")
        #expect(Self.failure("compressibility_sample_pages = -1")?.key == "tiering.compressibility_sample_pages")
    }

    // MARK: the gate

    static func accepted(_ pid: Int32, _ kind: TieringActionKind, regions: ClosedRange<UInt64>) -> TieringValidator.Accepted {
        let range = AddressRange(start: regions.lowerBound * region, end: (regions.upperBound + 1) * region)
        return TieringValidator.Accepted(action: TieringAction(pid: pid, kind: kind, start: range.start, length: range.length),
                                         ranges: [range])
    }

    /// A sampler that answers from a table (regions not in it: no resident page) and counts its calls.
    final class Table {
        var permille: [UInt64: UInt32]
        var calls: [(pid: Int32, region: UInt64, parts: [AddressRange])] = []
        init(_ permille: [UInt64: UInt32]) { self.permille = permille }
        func sample(_ pid: Int32, _ region: UInt64, _ parts: [AddressRange]) -> UInt32? {
            calls.append((pid, region, parts))
            return permille[region]
        }
    }

    static func gate(_ policy: TieringSettings.IncompressiblePolicy, pages: Int = 8) -> CompressibilityGate {
        var settings = TieringSettings.defaults
        settings.incompressible = policy
        settings.compressibilitySamplePages = pages
        return CompressibilityGate(settings: settings)
    }

    @Test func skipCutsIncompressibleRegionsOutOfDemotionsOnly() throws {
        var gate = Self.gate(.skip)
        // Regions 100...103 of pid 7: 101 random (1000), 102 just past the line; 100 and 103 compress.
        let table = Table([100: 20, 101: 1000, 102: 886, 103: 885])
        let plan = [Self.accepted(7, .demote, regions: 100...103), Self.accepted(7, .promote, regions: 101...101)]
        let (kept, report) = gate.apply(plan, now: 1, clock: { 0 }, sample: table.sample)
        #expect(kept.count == 2)
        #expect(kept[0].ranges == [AddressRange(start: 100 * Self.region, length: Self.region),
                                   AddressRange(start: 103 * Self.region, length: Self.region)])
        #expect(kept[1] == plan[1], "a promotion is not touched")
        #expect(report == CompressibilitySampling(sampledRegions: 4, incompressibleRegions: 2, skippedBytes: 2 * Self.region))
        #expect(table.calls.map(\.region) == [100, 101, 102, 103] && table.calls.allSatisfy { $0.pid == 7 })
        #expect(table.calls[0].parts == [AddressRange(start: 100 * Self.region, length: Self.region)])
    }

    @Test func anActionLeftEmptyGoes() throws {
        var gate = Self.gate(.skip)
        let table = Table([5: 1000, 6: 100])
        let (kept, report) = gate.apply([Self.accepted(3, .demote, regions: 5...5), Self.accepted(3, .demote, regions: 6...6)],
                                        now: 1, clock: { 0 }, sample: table.sample)
        #expect(kept.map(\.action.start) == [6 * Self.region])
        #expect(report?.skippedBytes == Self.region)
    }

    @Test func demoteSamplesAndRecordsButMovesEverything() throws {
        var gate = Self.gate(.demote)
        let table = Table([5: 1000])
        let plan = [Self.accepted(3, .demote, regions: 5...6)]
        let (kept, report) = gate.apply(plan, now: 1, clock: { 0 }, sample: table.sample)
        #expect(kept == plan)
        #expect(report == CompressibilitySampling(sampledRegions: 2, incompressibleRegions: 1, skippedBytes: 0))
    }

    @Test func aRegionIsSampledOncePerPlanAndAgainOnlyAfterTheInterval() throws {
        var gate = Self.gate(.skip)
        let table = Table([5: 1000])
        // Two actions over the same region, parts of it: one sample, of both parts.
        let first = AddressRange(start: 5 * Self.region, length: 4096), second = AddressRange(start: 5 * Self.region + 8192, length: 4096)
        let plan = [first, second].map {
            TieringValidator.Accepted(action: TieringAction(pid: 3, kind: .demote, start: $0.start, length: $0.length), ranges: [$0])
        }
        let (kept, report) = gate.apply(plan, now: 1, clock: { 0 }, sample: table.sample)
        #expect(kept.isEmpty && report?.skippedBytes == 8192)
        #expect(table.calls.count == 1 && table.calls[0].parts == [first, second])
        // Within the interval: the estimate is reused, nothing sampled.
        let again = gate.apply(plan, now: 1 + CompressibilityGate.resampleIntervalNs - 1, clock: { 0 }, sample: table.sample)
        #expect(table.calls.count == 1 && again.accepted.isEmpty && again.report?.sampledRegions == 0)
        // After it: sampled again; the region now compresses and goes.
        table.permille[5] = 300
        let later = gate.apply(plan, now: 1 + CompressibilityGate.resampleIntervalNs, clock: { 0 }, sample: table.sample)
        #expect(table.calls.count == 2 && later.accepted == plan && later.report?.sampledRegions == 1)
    }

    @Test func aRegionWithoutResidentPagesIsDemotedAndAskedAgain() throws {
        var gate = Self.gate(.skip)
        let table = Table([:])
        let plan = [Self.accepted(3, .demote, regions: 9...9)]
        #expect(gate.apply(plan, now: 1, clock: { 0 }, sample: table.sample).accepted == plan)
        #expect(gate.apply(plan, now: 2, clock: { 0 }, sample: table.sample).accepted == plan)
        #expect(table.calls.count == 2, "no estimate is kept for a region that had none")
    }

    @Test func noSamplingWithZeroPagesOrWithoutDemotions() throws {
        var off = Self.gate(.skip, pages: 0)
        let table = Table([5: 1000])
        let plan = [Self.accepted(3, .demote, regions: 5...5)]
        let result = off.apply(plan, now: 1, clock: { 0 }, sample: table.sample)
        #expect(result.accepted == plan && result.report == nil && table.calls.isEmpty)
        var on = Self.gate(.skip)
        let promote = [Self.accepted(3, .promote, regions: 5...5)]
        #expect(on.apply(promote, now: 1, clock: { 0 }, sample: table.sample).report == nil && table.calls.isEmpty)
    }

    @Test func theSamplingTimeIsMeasured() throws {
        var gate = Self.gate(.skip)
        var ticks: [UInt64] = [1_000_000, 3_500_000]
        let result = gate.apply([Self.accepted(3, .demote, regions: 5...5)], now: 1, clock: { ticks.removeFirst() },
                                sample: Table([5: 10]).sample)
        #expect(result.report?.sampleMicroseconds == 2500)
    }

    @Test func theLineIsTheRegionMapsRule() {
        #expect(TieringSensors.incompressiblePermille == 885)
        #expect(!CompressibilityGate.isIncompressible(885) && CompressibilityGate.isIncompressible(886))
        // zram's whole-page line, per mille, is the region map's.
        #expect(Int((CompressibilityEstimate.zramWholePageLine * 1000).rounded()) == 885)
    }

    // MARK: records

    @Test func recordsWithoutTheCheckStillDecode() throws {
        // A version-1 payload as written before the compressibility check existed.
        let old = DecisionPayload(version: 1, body: .object([
            "actionsAsked": .integer(2), "demotedBytes": .integer(4096), "coldBytes": .integer(0), "promotedBytes": .integer(0),
            "processes": .array([]), "refusals": .array([]), "refusedCount": .integer(0), "failures": .array([]),
            "tier": .object(["swapTotalBytes": .integer(1), "swapFreeBytes": .integer(1), "storedBytes": .integer(0),
                             "compressedBytes": .integer(0), "usedBytes": .integer(0)]),
        ]))
        let payload = try #require(old.decode(TieringDecisionPayload.self))
        #expect(payload.demotedBytes == 4096 && payload.compressibility == nil)
        var new = payload
        new.compressibility = CompressibilitySampling(sampledRegions: 3, incompressibleRegions: 1, skippedBytes: 2 << 20, sampleMicroseconds: 120)
        #expect(DecisionPayload(new).decode(TieringDecisionPayload.self) == new, "round trip")
    }

    @Test func theSummarySaysWhatWasLeftResident() {
        var record = DecisionRecord(kind: .tiering, trigger: "periodic", scope: "s", origin: "/g", mode: .enforce, outcome: .carriedOut)
        var payload = TieringDecisionPayload(demotedBytes: 4 << 20)
        payload.compressibility = CompressibilitySampling(sampledRegions: 3, incompressibleRegions: 1, skippedBytes: 2 << 20)
        #expect(TieringDecisionText.summary(record, payload) == "periodic plan in /g: moved 4.0 MiB out; 2.0 MiB left resident as incompressible")
        record.outcome = .fellBack
        payload.demotedBytes = 0
        #expect(TieringDecisionText.summary(record, payload) == "periodic plan in /g: nothing done; 2.0 MiB left resident as incompressible")
    }

    // MARK: status

    @Test func savedIsWhatIsOutLessWhatTheTierSpendsOnIt() {
        var totals = TieringTotals()
        totals.swappedBytes = 100 << 20
        // 400 MiB in swap, zram spends 100 MiB of RAM on it: 1/4 per byte.
        totals.tier = TierFigures(swapTotalBytes: 1 << 30, swapFreeBytes: (1 << 30) - (400 << 20), storedBytes: 400 << 20,
                                  compressedBytes: 90 << 20, usedBytes: 100 << 20)
        #expect(totals.savedBytes == 75 << 20)
        // Disk swap: its bytes cost no RAM.
        totals.tier = TierFigures(swapTotalBytes: 1 << 30, swapFreeBytes: (1 << 30) - (400 << 20))
        #expect(totals.savedBytes == 100 << 20)
        // Nothing in swap: nothing to spend.
        totals.tier = TierFigures(swapTotalBytes: 1 << 30, swapFreeBytes: 1 << 30, usedBytes: 4096)
        #expect(totals.savedBytes == 100 << 20)
    }
}
