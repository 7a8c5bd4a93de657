import BPFKit
import MMPolicyCore

/// The one signal sampler of a daemon: once per window it reads the
/// kernel's memory signals and every watched policy's BPF statistics and
/// decision counts, and hands back one ``SignalWindow`` per policy.
///
/// It exists so that watching five policies costs little more than watching
/// one: the system files (/proc/vmstat, /proc/pressure/memory,
/// /proc/meminfo) are read once per window whoever needs them, each distinct
/// memcg once however many policies share it, and nothing is read that no
/// registered policy needs. Each policy keeps its own baseline, so a policy
/// registered late gets its first window one sample after it was registered.
///
/// Not thread-safe: one owner (the daemon's watchdog loop) registers,
/// unregisters and samples.
public final class SignalSampler {
    /// Where the system-wide signals are read; tests point these at fixture copies.
    public struct SystemFiles: Sendable, Equatable {
        public var vmstat: String
        public var pressure: String
        public var meminfo: String

        public init(vmstat: String = "/proc/vmstat", pressure: String = "/proc/pressure/memory", meminfo: String = "/proc/meminfo") {
            self.vmstat = vmstat
            self.pressure = pressure
            self.meminfo = meminfo
        }
    }

    private let files: SystemFiles
    private var states: [SubjectState] = []

    public init(files: SystemFiles = SystemFiles()) {
        self.files = files
    }

    /// The names of the registered subjects, in registration order.
    public var subjectNames: [String] { states.map(\.subject.name) }

    /// Starts watching `subject`; its first sample is its baseline. A subject
    /// of the same name is replaced (and re-baselined).
    public func register(_ subject: WatchedSubject) {
        unregister(name: subject.name)
        states.append(SubjectState(subject: subject))
    }

    /// Stops watching the subject called `name` (no-op if there is none).
    /// Call it before the policy's BPF object is closed: the sampler holds
    /// its program and map descriptors by number.
    public func unregister(name: String) {
        states.removeAll { $0.subject.name == name }
    }

    /// Reads every signal once and returns a window for each subject that
    /// had been sampled before (none for a subject's first, baseline sample).
    /// `nowNs` is CLOCK_MONOTONIC, the window's end.
    public func sample(nowNs: UInt64 = monotonicNanoseconds()) -> [String: SignalWindow] {
        var system = SystemReadings(files: files)
        var memcgs: [SignalScope: Result<MemcgCounters, SystemCallError>] = [:]
        var windows: [String: SignalWindow] = [:]
        windows.reserveCapacity(states.count)
        for index in states.indices {
            let scope: Result<ScopeReading, SystemCallError>
            let pressure: Result<PressureStall, SystemCallError>
            var systemWidePressure = true
            switch states[index].subject.scope {
            case .system:
                scope = system.vmstat().map { ScopeReading(system: $0, memTotal: system.memTotal()) }
                pressure = system.pressure()
            case .memcgV1(let path):
                let counters = Self.cached(&memcgs, states[index].subject.scope) { () throws(SystemCallError) in
                    try MemcgCounters.read(MemcgV1(path: path))
                }
                scope = counters.map(ScopeReading.init(memcg:))
                pressure = system.pressure()  // v1 has no per-cgroup PSI
            case .memcgV2(let path):
                let counters = Self.cached(&memcgs, states[index].subject.scope) { () throws(SystemCallError) in
                    try MemcgCounters.read(MemcgV2(path: path))
                }
                scope = counters.map(ScopeReading.init(memcg:))
                pressure = counters.flatMap { counters in
                    counters.pressure.map { .success($0) }
                        ?? .failure(SystemCallError(operation: "read", target: path + "/memory.pressure", errno: .noSuchFileOrDirectory))
                }
                systemWidePressure = false
            }
            if let window = states[index].advance(nowNs: nowNs, scope: scope, pressure: pressure, systemWidePressure: systemWidePressure) {
                windows[window.subject] = window
            }
        }
        return windows
    }

    private static func cached(_ cache: inout [SignalScope: Result<MemcgCounters, SystemCallError>], _ scope: SignalScope,
                               _ read: () throws(SystemCallError) -> MemcgCounters) -> Result<MemcgCounters, SystemCallError> {
        if let known = cache[scope] { return known }
        let result = Result(catching: read)
        cache[scope] = result
        return result
    }
}

/// The system-wide files, each read at most once per sample and only if a
/// subject needs it.
private struct SystemReadings {
    let files: SignalSampler.SystemFiles
    private var vmstatResult: Result<VMStatCounters, SystemCallError>?
    private var pressureResult: Result<PressureStall, SystemCallError>?
    private var memTotalResult: UInt64??

    init(files: SignalSampler.SystemFiles) { self.files = files }

    mutating func vmstat() -> Result<VMStatCounters, SystemCallError> {
        if let vmstatResult { return vmstatResult }
        let path = files.vmstat
        let result = Result { () throws(SystemCallError) in try VMStatCounters.read(path) }
        vmstatResult = result
        return result
    }

    mutating func pressure() -> Result<PressureStall, SystemCallError> {
        if let pressureResult { return pressureResult }
        let path = files.pressure
        let result = Result { () throws(SystemCallError) in try PressureStall.read(path) }
        pressureResult = result
        return result
    }

    /// MemTotal in bytes; nil if /proc/meminfo cannot be read (the per-GiB rate is then left out).
    mutating func memTotal() -> UInt64? {
        if let memTotalResult { return memTotalResult }
        let total = try? MemInfo(parsing: KernelFile.read(files.meminfo)).memTotal
        memTotalResult = .some(total)
        return total
    }
}

/// One subject's baselines: the readings of its previous sample.
private struct SubjectState {
    struct ProgramTotals {
        var runs: UInt64
        var runTimeNanoseconds: UInt64
    }

    let subject: WatchedSubject
    var lastNs: UInt64?
    var scope: ScopeReading?
    var pressure: PressureStall?
    var programs: [ProgramTotals?]
    var health = DecisionHealth()
    var minute = MinuteTally()

    init(subject: WatchedSubject) {
        self.subject = subject
        programs = Array(repeating: nil, count: subject.programs.count)
    }

    /// Takes this sample's readings; returns the window since the previous
    /// sample, or nil if this is the first.
    mutating func advance(nowNs: UInt64, scope scopeResult: Result<ScopeReading, SystemCallError>,
                          pressure pressureResult: Result<PressureStall, SystemCallError>, systemWidePressure: Bool) -> SignalWindow? {
        var problems: [String] = []

        var memory: MemorySignals?
        switch scopeResult {
        case .success(let reading):
            if let previous = scope { memory = reading.since(previous) }
            scope = reading
        case .failure(let error):
            problems.append("memory counters: \(error)")
            scope = nil  // re-baseline once readable again
        }

        var pressureSignals: PressureSignals?
        switch pressureResult {
        case .success(let reading):
            if let previous = pressure { pressureSignals = reading.since(previous, systemWide: systemWidePressure) }
            pressure = reading
        case .failure(let error):
            problems.append("pressure: \(error)")
            pressure = nil
        }

        var programSignals: [ProgramSignals] = []
        programSignals.reserveCapacity(subject.programs.count)
        for (index, program) in subject.programs.enumerated() {
            do {
                let info = try BPFProgramInfo(fd: program.fd, program: program.name, object: subject.name)
                let now = ProgramTotals(runs: info.runCount, runTimeNanoseconds: info.runTimeNanoseconds)
                if let before = programs[index] {
                    programSignals.append(ProgramSignals(name: program.name, role: program.role,
                                                         runs: now.runs.saturatingMinus(before.runs),
                                                         runTimeNanoseconds: now.runTimeNanoseconds.saturatingMinus(before.runTimeNanoseconds)))
                }
                programs[index] = now
            } catch {
                problems.append("program \(program.name): \(error)")
                programs[index] = nil
            }
        }

        var mapBytes: UInt64 = 0
        for map in subject.maps {
            if let bytes = BPFMap.chargedBytes(fd: map.fd) {
                mapBytes += UInt64(bytes)
            } else {
                problems.append("map \(map.name): no memlock line in /proc/self/fdinfo/\(map.fd) (descriptor closed?)")
            }
        }

        let currentHealth = subject.health()
        let decisions = currentHealth.since(health)
        health = currentHealth

        defer { lastNs = nowNs }
        guard let startNs = lastNs else { return nil }
        let bpf = BPFSignals(programs: programSignals, mapMemoryBytes: mapBytes)
        let lastMinute = minute.add(startNs: startNs, endNs: nowNs, decisions: decisions, callbackRuns: bpf.callbackRuns,
                                    callbackRunTimeNanoseconds: bpf.callbackRunTimeNanoseconds)
        return SignalWindow(subject: subject.name, startNs: startNs, endNs: nowNs, memory: memory, pressure: pressureSignals,
                            bpf: bpf, decisions: decisions, lastMinute: lastMinute, problems: problems)
    }
}
