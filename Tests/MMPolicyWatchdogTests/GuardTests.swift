import Foundation
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

@testable import MMPolicyWatchdog

/// Guard rules, their activity floors, the per-kind defaults with manifest
/// overrides, and the monitor's hysteresis, history and trips.
@Suite struct GuardTests {
    static let second: UInt64 = 1_000_000_000

    /// A 1 s window ending at `index` s whose refault ratio is `ratio` over `evicted` evicted pages.
    static func window(_ index: UInt64, refaultRatio ratio: Double, evicted: UInt64 = 10_000) -> SignalWindow {
        let refaults = UInt64((ratio * Double(evicted)).rounded())
        return SignalWindow(subject: "p", startNs: (index - 1) * second, endNs: index * second,
                            memory: MemorySignals(refaultsFile: refaults, scanned: evicted * 2, stolen: evicted, evicted: evicted,
                                                  scopeBytes: 24 << 30))
    }

    static let refaultRule = GuardRule(name: "max_refault_ratio", metric: .refaultRatio, comparator: .above, threshold: 0.5,
                                       minimumActivity: 1000)

    // MARK: rules

    @Test func aRuleJudgesOnlyBusyWindows() {
        let rule = Self.refaultRule
        #expect(rule.judge(Self.window(1, refaultRatio: 0.9)) == .breached(0.9))
        #expect(rule.judge(Self.window(1, refaultRatio: 0.2)) == .clear(0.2))
        #expect(rule.judge(Self.window(1, refaultRatio: 0.5)) == .clear(0.5), "the threshold itself is not a breach")
        // 3 refaults of 4 evicted pages: a ratio of 0.75 out of idle noise.
        #expect(rule.judge(Self.window(1, refaultRatio: 0.75, evicted: 4)) == .notJudged)
        // Floors are per second: 1500 pages in a 2 s window is 750 a second.
        let slow = SignalWindow(subject: "p", startNs: 0, endNs: 2 * Self.second,
                                memory: MemorySignals(refaultsFile: 1500, evicted: 1500))
        #expect(rule.judge(slow) == .notJudged)
        #expect(rule.judge(SignalWindow(subject: "p", startNs: 0, endNs: Self.second, memory: nil)) == .notJudged)
    }

    @Test func aCgroupThrashingElsewhereLeavesTheSystemScopesRefaultGuardsUnjudged() {
        // Half a million refaults a second from one memcg's limit reclaim,
        // no global reclaim: a system-scope policy is not to blame.
        let elsewhere = SignalWindow(subject: "p", startNs: 0, endNs: Self.second,
                                     memory: MemorySignals(refaultsFile: 500_000, scanned: 0, stolen: 0, evicted: 520_000,
                                                           globalEvicted: 0, scopeBytes: 24 << 30))
        for rule in GuardDefaults.rules(for: OOMKind()) where rule.metric == .refaultRatio || rule.metric == .refaultRatePerGiB {
            #expect(rule.judge(elsewhere) == .notJudged, "\(rule.name)")
        }
        // The same refaults with the system itself evicting are judged.
        var pressed = elsewhere.memory!
        pressed.globalEvicted = 20_000
        let judged = SignalWindow(subject: "p", startNs: 0, endNs: Self.second, memory: pressed)
        #expect(Self.refaultRule.judge(judged) == .breached(500_000.0 / 520_000.0))
    }

    @Test func belowRulesBreachUnderTheirThreshold() {
        let rule = GuardRule(name: "min_scan_efficiency", metric: .scanEfficiency, comparator: .below, threshold: 0.1, minimumActivity: 10_000)
        func window(scanned: UInt64, stolen: UInt64) -> SignalWindow {
            SignalWindow(subject: "p", startNs: 0, endNs: Self.second, memory: MemorySignals(scanned: scanned, stolen: stolen))
        }
        #expect(rule.judge(window(scanned: 100_000, stolen: 5_000)) == .breached(0.05))
        #expect(rule.judge(window(scanned: 100_000, stolen: 50_000)) == .clear(0.5))
        #expect(rule.judge(window(scanned: 5_000, stolen: 10)) == .notJudged, "5000 scanned pages is below the floor")
    }

    @Test func everyMetricReadsItsFigure() {
        let window = SignalWindow(
            subject: "p", startNs: 0, endNs: Self.second,
            memory: MemorySignals(refaultsFile: 2048, scanned: 4, stolen: 1, evicted: 4096, scopeBytes: 1 << 30),
            pressure: PressureSignals(someAvg10: 7.5),
            bpf: BPFSignals(programs: [ProgramSignals(name: "cb", role: .callback, runs: 4, runTimeNanoseconds: 8_000)], mapMemoryBytes: 4096),
            decisions: DecisionHealth(consecutiveFallbacks: 2),
            lastMinute: MinuteCounts(actions: 1, rejections: 2, errors: 3, deadlineMisses: 4, callbackRuns: 4, callbackRunTimeNanoseconds: 8_000))
        let expected: [GuardMetric: Double] = [
            .refaultRatio: 0.5, .refaultRatePerGiB: 2048, .scanEfficiency: 0.25, .psiSomeAvg10: 7.5, .bpfNsPerRun: 2000,
            .bpfCPUPercent: 0.0008, .callbackMicroseconds: 2, .mapMemoryKB: 4, .actionsPerMinute: 1, .consecutiveFallbacks: 2,
            .rejectionsPerMinute: 2, .decisionErrorsPerMinute: 3, .deadlineMissesPerMinute: 4,
        ]
        for metric in GuardMetric.allCases {
            let value = metric.value(in: window)
            #expect(abs((value ?? -1) - expected[metric]!) < 1e-9, "\(metric): \(String(describing: value))")
        }
    }

    // MARK: defaults

    /// Kinds without guards or defaults of their own, and one that overrides a default.
    static let plain = TestKind("plain", abiID: 201)
    static let tiering = TestKind("tiering", abiID: 202, guardDefaults: [
        "max_refault_ratio": GuardDefault(0.3, reason: "tiering evicts on purpose, so each refault is its own wrong guess"),
        "max_bpf_cpu_percent": GuardDefault(nil, reason: "a test of turning a shared guard off"),
    ])
    static let definitions: [(any PolicyKindDefinition)?] = [OOMKind(), plain, tiering, nil]

    @Test func everyKindGetsTheGenericGuards() {
        let generic: Set = ["max_refault_ratio", "max_refault_rate_per_gib", "min_scan_efficiency", "max_bpf_ns_per_run",
                            "max_map_memory_kb", "max_callback_us", "max_rejections",
                            "max_decision_errors", "max_deadline_misses"]
        for definition in Self.definitions {
            let names = Set(GuardDefaults.rules(for: definition).map(\.name))
            #expect(generic.isSubset(of: names), "\(String(describing: definition?.kind)): \(names)")
            #expect(!names.contains("max_psi_some_avg10"), "PSI is off by default (\(String(describing: definition?.kind)))")
            #expect(!names.contains("deadline_ms") && !names.contains("breach_windows") && !names.contains("cooldown_s"),
                    "settings are not per-window rules")
        }
    }

    @Test func theOOMKindAddsKillsAndFallbacks() throws {
        let oom = GuardDefaults.rules(for: OOMKind())
        let kills = try #require(oom.first { $0.name == "max_kills_per_minute" })
        #expect(kills.metric == .actionsPerMinute && kills.comparator == .above && kills.threshold == 6)
        #expect(oom.first { $0.name == "max_consecutive_fallbacks" }?.threshold == 3, "oom's own default for a shared guard")
        for definition in [Self.plain, Self.tiering] {
            let names = GuardDefaults.rules(for: definition).map(\.name)
            #expect(!names.contains("max_kills_per_minute") && !names.contains("max_consecutive_fallbacks"), "\(definition.kind)")
        }
    }

    @Test func aKindsDefaultReplacesTheSharedOne() {
        func threshold(_ definition: (any PolicyKindDefinition)?, _ key: String) -> Double? {
            GuardDefaults.rules(for: definition).first { $0.name == key }?.threshold
        }
        #expect(threshold(Self.tiering, "max_refault_ratio") == 0.3)
        #expect(threshold(OOMKind(), "max_refault_ratio") == 0.5 && threshold(Self.plain, "max_refault_ratio") == 0.5)
        #expect(threshold(Self.tiering, "max_bpf_cpu_percent") == nil, "a kind may turn a shared guard off")
        #expect(threshold(Self.plain, "max_bpf_cpu_percent") == 25)
        #expect(GuardTable.defaultValue("max_consecutive_fallbacks", for: OOMKind()) == 3)
        #expect(GuardTable.defaultValue("max_consecutive_fallbacks", for: Self.plain) == nil)
        #expect(GuardTable.value("deadline_ms", settings: GuardSettings(), for: OOMKind()) == 100)
        #expect(GuardTable.value("deadline_ms", settings: ["deadline_ms": 20], for: OOMKind()) == 20)
    }

    @Test func everyTableKeyIsUniqueAndEveryRuleHasAFloorWhereItNeedsOne() {
        let entries = GuardTable.entries(for: OOMKind())
        #expect(Set(entries.map(\.key)).count == entries.count)
        for entry in entries {
            #expect(entry.range.contains(entry.sharedDefault ?? entry.range.bounds.lowerBound), "\(entry.key)'s default is in its range")
            #expect(!entry.reason.isEmpty, "\(entry.key) says why")
        }
        let floors = Dictionary(uniqueKeysWithValues: entries.compactMap { entry in entry.metric.map { ($0, entry.minimumActivity) } })
        #expect(floors[.refaultRatio] == 1000)
        #expect(floors[.scanEfficiency] == 10_000)
        #expect(floors[.refaultRatePerGiB] == 256)
        #expect(floors[.bpfNsPerRun] == 100)
        #expect(floors[.callbackMicroseconds] == 3)
        #expect(entries.filter { $0.metric == nil }.map(\.key) == ["deadline_ms", "breach_windows", "cooldown_s"])
    }

    @Test func manifestSettingsOverrideTheDefaultsEitherWay() throws {
        let settings: GuardSettings = [
            "max_kills_per_minute": 20, "max_callback_us": 500, "max_refault_ratio": 0.9, "min_scan_efficiency": 0.02,
            "max_psi_some_avg10": 40, "breach_windows": 5, "max_decision_errors": 0, "max_deadline_misses": 10,
            "max_map_memory_kb": 1024, "max_bpf_ns_per_run": 2000, "max_bpf_cpu_percent": 5, "max_refault_rate_per_gib": 1000,
        ]
        let rules = Dictionary(uniqueKeysWithValues: GuardDefaults.rules(for: OOMKind(), settings: settings).map { ($0.name, $0.threshold) })
        #expect(rules["max_kills_per_minute"] == 20, "looser")
        #expect(rules["max_refault_ratio"] == 0.9)
        #expect(rules["min_scan_efficiency"] == 0.02)
        #expect(rules["max_callback_us"] == 500, "tighter")
        #expect(rules["max_decision_errors"] == 0)
        #expect(rules["max_deadline_misses"] == 10)
        #expect(rules["max_map_memory_kb"] == 1024)
        #expect(rules["max_bpf_ns_per_run"] == 2000)
        #expect(rules["max_bpf_cpu_percent"] == 5)
        #expect(rules["max_refault_rate_per_gib"] == 1000)
        #expect(rules["max_psi_some_avg10"] == 40, "a manifest turns on a guard that is off by default")
        #expect(rules["max_rejections"] == 5, "keys the manifest leaves out keep the default")
        #expect(GuardDefaults.breachWindows(settings) == 5)
        #expect(GuardDefaults.breachWindows(GuardSettings()) == 3)

        // A shared guard that is off for a kind can be turned on for it.
        let plain = GuardDefaults.rules(for: Self.plain, settings: ["max_consecutive_fallbacks": 1])
        #expect(plain.contains { $0.name == "max_consecutive_fallbacks" && $0.threshold == 1 })
        let monitor = GuardMonitor(subject: "p", definition: OOMKind(), settings: settings)
        #expect(monitor.breachWindows == 5)
        #expect(monitor.rules.count == GuardTable.entries(for: OOMKind()).filter { $0.metric != nil }.count)
    }

    // MARK: monitor

    @Test func twoBreachesThenACleanWindowStartOver() {
        var monitor = GuardMonitor(subject: "p", rules: [Self.refaultRule])
        #expect(monitor.observe(Self.window(1, refaultRatio: 0.8)) == nil)
        #expect(monitor.observe(Self.window(2, refaultRatio: 0.9)) == nil)
        #expect(monitor.status[0].consecutiveBreaches == 2)
        #expect(monitor.observe(Self.window(3, refaultRatio: 0.1)) == nil, "a clean window ends the run")
        #expect(monitor.status[0].consecutiveBreaches == 0)
        #expect(monitor.observe(Self.window(4, refaultRatio: 0.8)) == nil)
        #expect(monitor.observe(Self.window(5, refaultRatio: 0.8)) == nil)
        #expect(monitor.lastTrip == nil)
    }

    @Test func threeConsecutiveBreachesTrip() throws {
        var monitor = GuardMonitor(subject: "oom_largest", rules: [Self.refaultRule])
        #expect(monitor.observe(Self.window(1, refaultRatio: 0.83)) == nil)
        #expect(monitor.observe(Self.window(2, refaultRatio: 0.91)) == nil)
        let observed = monitor.observe(Self.window(3, refaultRatio: 0.88))
        let trip = try #require(observed)
        #expect(trip.subject == "oom_largest")
        #expect(trip.guardName == "max_refault_ratio")
        #expect(trip.metric == .refaultRatio && trip.comparator == .above && trip.threshold == 0.5)
        #expect(trip.values == [0.83, 0.91, 0.88])
        #expect(trip.windows == 3 && trip.windowSeconds == 1)
        #expect(trip.endNs == 3 * Self.second)
        #expect(trip.summary == "refault_ratio 0.83, 0.91, 0.88 above 0.50 for 3 consecutive 1 s windows")
        #expect(monitor.lastTrip == trip)
        #expect(monitor.status[0].consecutiveBreaches == 0, "the run starts over after a trip")
    }

    @Test func quietWindowsEndARunAndNeverBreach() {
        var monitor = GuardMonitor(subject: "p", rules: [Self.refaultRule])
        _ = monitor.observe(Self.window(1, refaultRatio: 0.9))
        _ = monitor.observe(Self.window(2, refaultRatio: 0.9))
        #expect(monitor.observe(Self.window(3, refaultRatio: 1.0, evicted: 10)) == nil, "too quiet to judge")
        #expect(monitor.status[0].consecutiveBreaches == 0)
        for index in UInt64(4)...20 {
            #expect(monitor.observe(Self.window(index, refaultRatio: 1.0, evicted: 999)) == nil, "999 evicted pages is below the floor")
        }
    }

    @Test func breachWindowsOfOneTripsAtOnceAndLongerNeedsMore() {
        var eager = GuardMonitor(subject: "p", rules: [Self.refaultRule], breachWindows: 1)
        #expect(eager.observe(Self.window(1, refaultRatio: 0.9))?.summary == "refault_ratio 0.90 above 0.50 for 1 consecutive 1 s windows")
        var patient = GuardMonitor(subject: "p", rules: [Self.refaultRule], breachWindows: 5)
        for index in UInt64(1)...4 { #expect(patient.observe(Self.window(index, refaultRatio: 0.9)) == nil) }
        #expect(patient.observe(Self.window(5, refaultRatio: 0.9))?.values.count == 5)
    }

    @Test func aKillBurstTripsTheOOMGuardAfterItsWindows() throws {
        var monitor = GuardMonitor(subject: "oom_growth", definition: OOMKind())
        func window(_ index: UInt64, killsInMinute: UInt64) -> SignalWindow {
            SignalWindow(subject: "oom_growth", startNs: (index - 1) * Self.second, endNs: index * Self.second,
                         lastMinute: MinuteCounts(actions: killsInMinute))
        }
        #expect(monitor.observe(window(1, killsInMinute: 6)) == nil, "6 a minute is allowed")
        #expect(monitor.observe(window(2, killsInMinute: 7)) == nil)
        #expect(monitor.observe(window(3, killsInMinute: 7)) == nil)
        let observed = monitor.observe(window(4, killsInMinute: 7))
        let trip = try #require(observed)
        #expect(trip.guardName == "max_kills_per_minute")
        #expect(trip.summary == "actions_per_minute 7, 7, 7 above 6 for 3 consecutive 1 s windows")
    }

    @Test func aHealthyIdleWindowTripsNoDefaultGuardOfAnyKind() {
        // What a policy on an idle 24 GiB machine sees: no reclaim, a few
        // refaults, cheap sensors, small maps, no decisions.
        let window = SignalWindow(
            subject: "p", startNs: 0, endNs: Self.second,
            memory: MemorySignals(refaultsFile: 40, activations: 10, scanned: 0, stolen: 0, evicted: 0, scopeBytes: 24 << 30),
            pressure: PressureSignals(someStallMicroseconds: 1000, someAvg10: 0.4),
            bpf: BPFSignals(programs: [ProgramSignals(name: "sensor", role: .sensor, runs: 20_000, runTimeNanoseconds: 6_000_000)],
                            mapMemoryBytes: 3 << 20))
        for definition in Self.definitions {
            var monitor = GuardMonitor(subject: "p", definition: definition)
            for _ in 0..<10 { #expect(monitor.observe(window) == nil, "\(String(describing: definition?.kind))") }
        }
    }

    @Test func historyKeepsTheLastWindowsInOrder() {
        var monitor = GuardMonitor(subject: "p", rules: [], historyLimit: 4)
        #expect(monitor.history.isEmpty)
        for index in UInt64(1)...3 { _ = monitor.observe(Self.window(index, refaultRatio: 0)) }
        #expect(monitor.history.map(\.endNs) == [1, 2, 3].map { $0 * Self.second })
        for index in UInt64(4)...10 { _ = monitor.observe(Self.window(index, refaultRatio: 0)) }
        #expect(monitor.history.map(\.endNs) == [7, 8, 9, 10].map { $0 * Self.second })
    }

    @Test func windowsTripsAndStatusRoundTripThroughJSON() throws {
        var monitor = GuardMonitor(subject: "p", rules: [Self.refaultRule], breachWindows: 1)
        let window = Self.window(1, refaultRatio: 0.75)
        let observed = monitor.observe(window)
        let trip = try #require(observed)
        let encoder = JSONEncoder()
        let decoder = JSONDecoder()
        #expect(try decoder.decode(SignalWindow.self, from: encoder.encode(window)) == window)
        #expect(try decoder.decode(GuardTrip.self, from: encoder.encode(trip)) == trip)
        #expect(try decoder.decode([GuardMonitor.GuardStatus].self, from: encoder.encode(monitor.status)) == monitor.status)
        let json = String(decoding: try encoder.encode(window), as: UTF8.self)
        #expect(json.contains("\"refaultRatio\":0.75"), "derived figures are in the JSON: \(json)")
    }
}
