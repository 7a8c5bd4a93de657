@testable import MMPolicyKinds
import MMPolicyCore
import Testing

/// The system-shortage rule and the cgroup v2 early trigger: when the OOM
/// engine asks a policy, decided on numbers alone.
@Suite struct OOMTriggerTests {
    static let mib: UInt64 = 1 << 20
    /// earlyoom's 10 % / 10 %, no PSI.
    static let settings = OOMTriggerSettings(memAvailablePercent: 10, swapFreePercent: 10, psi: nil,
                                             memcgHeadroomPercent: 5, steerOOMScoreAdj: true)

    static func memory(availableMiB: UInt64, swapTotalMiB: UInt64 = 0, swapFreeMiB: UInt64 = 0) -> MemInfo {
        MemInfo(memTotal: 1000 * mib, memFree: availableMiB * mib, memAvailable: availableMiB * mib,
                swapTotal: swapTotalMiB * mib, swapFree: swapFreeMiB * mib)
    }

    // MARK: SystemShortage.isShort

    @Test func shortAtTheLineAndNotAboveIt() {
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 100), Self.settings))
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 20), Self.settings))
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 101), Self.settings))
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 900), Self.settings))
    }

    @Test func noSwapCountsAsSwapExhausted() {
        // earlyoom's convention: with no swap, memory alone decides.
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 50, swapTotalMiB: 0), Self.settings))
    }

    @Test func freeSwapKeepsTheSystemOutOfShortage() {
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 50, swapTotalMiB: 1000, swapFreeMiB: 500), Self.settings))
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 50, swapTotalMiB: 1000, swapFreeMiB: 101), Self.settings))
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 50, swapTotalMiB: 1000, swapFreeMiB: 100), Self.settings))
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 50, swapTotalMiB: 1000, swapFreeMiB: 0), Self.settings))
    }

    @Test func pressureDoublesTheThresholds() {
        let nearlyShort = Self.memory(availableMiB: 150, swapTotalMiB: 1000, swapFreeMiB: 150)
        #expect(!SystemShortage.isShort(nearlyShort, Self.settings))
        #expect(SystemShortage.isShort(nearlyShort, Self.settings, pressure: true))
        #expect(SystemShortage.isShort(Self.memory(availableMiB: 200), Self.settings, pressure: true))
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 201), Self.settings, pressure: true))
        #expect(!SystemShortage.isShort(Self.memory(availableMiB: 150, swapTotalMiB: 1000, swapFreeMiB: 201), Self.settings, pressure: true))
    }

    // MARK: SystemShortage.wakeBudget

    @Test func wakeBudgetIsHalfTheHeadroomAboveTheLine() {
        // The line is 100 MiB (10 % of 1000 MiB).
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 300), Self.settings) == 100 * Self.mib)
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 900), Self.settings) == 400 * Self.mib)
    }

    @Test func wakeBudgetNeverFallsBelowFourMiB() {
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 105), Self.settings) == 4 * Self.mib)
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 100), Self.settings) == 4 * Self.mib)
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 10), Self.settings) == 4 * Self.mib)
        #expect(SystemShortage.wakeBudget(Self.memory(availableMiB: 110), Self.settings) == 5 * Self.mib)
    }

    // MARK: MemcgV2EarlyTrigger.shouldAct

    static func events(oom: UInt64 = 0, oomKill: UInt64 = 0) -> MemcgV2.MemoryEvents {
        MemcgV2.MemoryEvents(low: 0, high: 0, max: 0, oom: oom, oomKill: oomKill, oomGroupKill: nil)
    }

    static func shouldAct(unreclaimableMiB: UInt64, maxMiB: UInt64?, events: MemcgV2.MemoryEvents = events(),
                          previous: MemcgV2.MemoryEvents? = events(), pressure: Bool = false) -> Bool {
        MemcgV2EarlyTrigger.shouldAct(unreclaimable: unreclaimableMiB * mib, max: maxMiB.map { $0 * mib }, events: events,
                                      previous: previous, headroomPercent: 5, pressure: pressure)
    }

    @Test func actsWithinTheHeadroomBelowMax() {
        #expect(Self.shouldAct(unreclaimableMiB: 95, maxMiB: 100))
        #expect(Self.shouldAct(unreclaimableMiB: 100, maxMiB: 100))
        #expect(!Self.shouldAct(unreclaimableMiB: 94, maxMiB: 100))
        #expect(!Self.shouldAct(unreclaimableMiB: 10, maxMiB: 100))
    }

    @Test func pressureWidensTheHeadroomTwofold() {
        #expect(Self.shouldAct(unreclaimableMiB: 90, maxMiB: 100, pressure: true))
        #expect(!Self.shouldAct(unreclaimableMiB: 89, maxMiB: 100, pressure: true))
        #expect(!Self.shouldAct(unreclaimableMiB: 90, maxMiB: 100, pressure: false))
    }

    @Test func noLimitIsNeverEarly() {
        #expect(!Self.shouldAct(unreclaimableMiB: 1 << 20, maxMiB: nil, pressure: true))
        #expect(!Self.shouldAct(unreclaimableMiB: 1, maxMiB: 0, pressure: true))
    }

    @Test func theKernelGettingThereFirstAlwaysCounts() {
        #expect(Self.shouldAct(unreclaimableMiB: 0, maxMiB: nil, events: Self.events(oom: 1), previous: Self.events()))
        #expect(Self.shouldAct(unreclaimableMiB: 0, maxMiB: 100, events: Self.events(oom: 3, oomKill: 2),
                               previous: Self.events(oom: 3, oomKill: 1)))
        // Counts that did not move, or no earlier reading, are no news.
        #expect(!Self.shouldAct(unreclaimableMiB: 0, maxMiB: 100, events: Self.events(oom: 3, oomKill: 2),
                                previous: Self.events(oom: 3, oomKill: 2)))
        #expect(!Self.shouldAct(unreclaimableMiB: 0, maxMiB: 100, events: Self.events(oom: 3, oomKill: 2), previous: nil))
    }
}
