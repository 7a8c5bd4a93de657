#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import Logging
import MMPolicyCore
import MMPolicyWatchdog

/// A request the daemon refuses: one paragraph naming what and the fix.
public struct DaemonRequestError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The loaded policies: loads, verifies, attaches, unloads, and answers for
/// them. Every change to the set goes through here, in order, and is saved
/// as the desired set so a restarted daemon comes back with it.
public actor PolicyManager {
    struct Loaded {
        var attachment: PolicyAttachment
        var engine: any KindEngine
        /// The policy's sensor programs (every program that is not a
        /// callback), attached for as long as it is loaded.
        var sensors: [BPFLink]
        var desired: DesiredPolicy
        var kind: PolicyKind
        var loadedNs: Int64
        var parameters: [ParameterOverride]
        var guards: GuardSettings
    }

    let configuration: DaemonConfiguration
    let store: StateStore
    let recorder: EventRecorder
    let engines: KindEngines
    let watchdog: Watchdog
    let mount: MemoryCgroupMount?
    let logger: Logger
    /// Manifests parsed once per content (parsing leaks in TOMLKit).
    let manifests: ManifestCache
    private var loaded: [String: Loaded] = [:]
    /// Desired policies that failed to load at start-up, by name, until one
    /// loads or is unloaded (`status` shows them).
    private var failed: [String: FailedPolicy] = [:]
    /// Names whose load is between its checks and its end: the actor runs
    /// other requests while a load awaits its engine, so a second load of
    /// the same name must be refused here, not found loaded later.
    private var loading: Set<String> = []

    public init(configuration: DaemonConfiguration, store: StateStore, recorder: EventRecorder, engines: KindEngines,
                watchdog: Watchdog, mount: MemoryCgroupMount?, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.recorder = recorder
        self.engines = engines
        self.watchdog = watchdog
        self.mount = mount
        self.logger = logger
        self.manifests = ManifestCache(kinds: configuration.kinds)
    }

    // MARK: load

    /// Loads, verifies and attaches a policy, then saves it in the desired set.
    public func load(_ request: LoadRequest, persist: Bool = true) async throws -> PolicyStatus {
        let manifest = try resolveManifest(request.policy)
        let name = request.alias ?? manifest.name
        guard Manifest.isValidName(name) else {
            throw DaemonRequestError("'\(name)' is not a valid policy name: use 1 to 31 of a-z, 0-9 and _.")
        }
        if let existing = loaded[name] {
            throw DaemonRequestError("policy '\(name)' is already loaded (scope \(existing.desired.scope), \(existing.desired.mode) mode). Unload it first (`mmpolicy unload \(name)`), or load this one under another name with --name.")
        }
        guard loading.insert(name).inserted else {
            throw DaemonRequestError("policy '\(name)' is being loaded by another request right now. Wait for it (`mmpolicy status`), or load this one under another name with --name.")
        }
        defer { loading.remove(name) }
        if request.force != true, let exit = try? store.lastExit(policy: name), let info = exit.exit,
           info.cooldownUntilNs > wallClockNanoseconds() {
            let left = Double(info.cooldownUntilNs - wallClockNanoseconds()) / 1e9
            throw DaemonRequestError("policy '\(name)' was ejected by the watchdog \(Self.age(of: exit.timeNs)) ago (\(info.description)) and is cooling down for another \(durationString(seconds: left.rounded(.up))). Fix what tripped the guard, loosen it in the manifest's [guards], or load it now with --force.")
        }
        guard let engine = engines.engine(for: manifest.kind) else {
            throw DaemonRequestError("policy '\(manifest.name)' is of kind \(manifest.kind.rawValue), which this daemon has no engine for (it runs \(engines.kinds.map(\.rawValue).joined(separator: ", "))). Load a policy of one of those kinds, or run an mmpolicy built with that kind.")
        }
        let scopeText = request.scope ?? manifest.scope.description
        let scope = try resolveScope(scopeText, policy: name)
        let mode: PolicyMode
        if let text = request.mode {
            guard let parsed = PolicyMode(rawValue: text) else {
                throw DaemonRequestError("mode '\(text)' is not a mode: use enforce (carry decisions out) or observe (record them only).")
            }
            mode = parsed
        } else {
            mode = manifest.mode
        }
        let overrides = request.overrides.map { ($0.key, ParameterValue(parsing: $0.value)) }
        let policy: Policy
        do {
            policy = try Policy.open(manifest: manifest, searchPath: configuration.objectSearchPath, kinds: configuration.kinds,
                                     overrides: overrides)
        } catch {
            throw DaemonRequestError("\(error)")
        }
        let start = monotonicNanoseconds()
        do {
            // The engine's sensor maps, shared by name (see KindEngine.sharedMaps).
            for (mapName, fd) in engine.sharedMaps { try policy.object.map(named: mapName)?.reuse(fd: fd) }
            try policy.load()
        } catch {
            record(.loadFailed, policy: name, "verifier refused \(policy.objectPath): \(error.reason)")
            throw DaemonRequestError("\(error)")
        }
        let loadMs = Double(monotonicNanoseconds() - start) / 1e6
        let attachment = PolicyAttachment(policy: policy, name: name, scope: scope, mode: mode)
        var sensors: [BPFLink] = []
        do {
            for program in policy.object.programs where program.type != .syscall { sensors.append(try program.attach()) }
        } catch {
            throw DaemonRequestError("policy '\(name)' cannot be attached: its sensor program could not be attached: \(error)")
        }
        do {
            try await engine.attach(attachment)
        } catch {
            throw DaemonRequestError("\(error)")
        }
        let desired = DesiredPolicy(name: name, source: request.policy, scope: scope.cgroupPath ?? "system", mode: mode.rawValue,
                                    overrides: request.overrides, addedNs: wallClockNanoseconds())
        let parameters = policy.object.parameters.map { variable in
            ParameterOverride(key: variable.name, value: policy.object.currentValue(of: variable).map { "\($0)" } ?? "?")
        }
        // What is loaded must be what a restarted daemon loads: a load that
        // cannot be saved is taken back and refused.
        if persist {
            do { try store.setDesired(desired) } catch {
                await engine.detach(name: name)
                logger.error("policy \(name) was not loaded: saving the desired set failed: \(error)")
                throw DaemonRequestError("policy '\(name)' was not loaded: the daemon could not save it in its desired set (\(error)), so a restarted daemon would not bring it back. Free space in \(configuration.stateDirectory) or repair its database, then load it again.")
            }
        }
        failed[name] = nil
        loaded[name] = Loaded(attachment: attachment, engine: engine, sensors: sensors, desired: desired, kind: manifest.kind,
                              loadedNs: wallClockNanoseconds(), parameters: parameters, guards: manifest.guards)
        var subject = WatchedSubject(policy: policy, scope: scope) { engine.health(of: name) ?? DecisionHealth() }
        subject.name = name
        watchdog.watch(subject, definition: configuration.kinds.definition(for: manifest.kind), settings: manifest.guards)
        record(.loaded, policy: name, "loaded \(policy.objectPath) on \(scope) in \(mode.rawValue) mode (verified in \(decimalString(loadMs, places: 1)) ms)")
        logger.info("loaded policy \(name) on \(scope) (\(mode.rawValue))")
        AllocatorTuning.releaseFreedMemory()
        return status(of: loaded[name]!)
    }

    func resolveManifest(_ reference: String) throws -> Manifest {
        if reference.contains("/") || reference.hasSuffix(".toml") {
            do { return try manifests.load(path: reference) } catch { throw DaemonRequestError("\(error)") }
        }
        let catalog = manifests.catalog(directory: configuration.policyDirectory)
        if let manifest = catalog.manifest(named: reference) { return manifest }
        if let broken = catalog.errors.first(where: { $0.path.hasSuffix("/\(reference).toml") }) {
            throw DaemonRequestError("\(broken)")
        }
        let known = catalog.manifests.map(\.name)
        throw DaemonRequestError("no policy named '\(reference)' in the daemon's policy directory \(configuration.policyDirectory) (known: \(known.isEmpty ? "none" : known.joined(separator: ", "))). Give one of those names, or a path to a manifest (.toml).")
    }

    func resolveScope(_ text: String, policy: String) throws -> ResolvedScope {
        let spec: ScopeSpec
        do { spec = try ScopeSpec(parsing: text) } catch { throw DaemonRequestError("scope '\(text)' for policy '\(policy)' is not valid: \(error)") }
        switch spec {
        case .system: return .system
        case .cgroup(let path):
            do { return try ResolvedScope.cgroup(path, mount: mount) } catch { throw DaemonRequestError("\(error)") }
        }
    }

    // MARK: unload

    /// Detaches and unloads `name`, restoring what it changed, and drops it
    /// from the desired set. An unload that cannot be saved is refused and
    /// the policy stays loaded (a restarted daemon would bring it back),
    /// unless `evenIfUnsaved` (the watchdog's ejection: harm comes first).
    public func unload(_ name: String, persist: Bool = true, reason: String = "unloaded by request",
                       evenIfUnsaved: Bool = false) async throws {
        if persist, loaded[name] != nil || failed[name] != nil {
            do { _ = try store.removeDesired(name: name) } catch {
                guard evenIfUnsaved else {
                    logger.error("policy \(name) was not unloaded: saving the desired set failed: \(error)")
                    throw DaemonRequestError("policy '\(name)' was not unloaded: the daemon could not drop it from its desired set (\(error)), so a restarted daemon would load it again. Free space in \(configuration.stateDirectory) or repair its database, then unload it again.")
                }
                logger.error("policy \(name) is unloaded but stays in the saved desired set, which could not be written (\(error)): a restarted daemon would load it again")
                record(.note, policy: name, "unloaded, but the desired set could not be saved (\(error)): a restarted daemon would load it again")
            }
        }
        // The sampler reads the policy's descriptors: stop before they close.
        watchdog.unwatch(name)
        guard let entry = loaded.removeValue(forKey: name) else {
            if failed.removeValue(forKey: name) != nil {
                // Desired but never loaded: unloading drops it from the desired set (done above).
                record(.unloaded, policy: name, "\(reason); it had failed to load, and is no longer desired")
                logger.info("dropped policy \(name), which had failed to load, from the desired set: \(reason)")
                return
            }
            let names = loaded.keys.sorted()
            throw DaemonRequestError("no policy named '\(name)' is loaded (loaded: \(names.isEmpty ? "none" : names.joined(separator: ", "))). `mmpolicy status` lists them.")
        }
        await entry.engine.detach(name: name)
        // Sensors last: the policy's maps stay fed until its engine let go.
        withExtendedLifetime(entry.sensors) {}
        record(.unloaded, policy: name, "\(reason); its knobs are restored")
        logger.info("unloaded policy \(name): \(reason)")
        AllocatorTuning.releaseFreedMemory()
    }

    /// The watchdog's verdict: unloads `name`, restoring every knob it
    /// changed, drops it from the desired set (a restarted daemon must not
    /// bring back a policy that was doing harm) and records the exit.
    public func eject(_ trip: GuardTrip) async {
        let name = trip.subject
        guard let entry = loaded[name] else { return }
        let cooldown = Int64(entry.guards.cooldownS ?? Self.defaultCooldownSeconds) * 1_000_000_000
        var exit = PolicyExit(guardName: trip.guardName, metric: trip.metric.rawValue, comparison: trip.comparator.rawValue,
                              threshold: trip.threshold, values: trip.values, windows: trip.windows,
                              windowSeconds: trip.windowSeconds, description: trip.summary, restoredKnobs: [],
                              cooldownUntilNs: wallClockNanoseconds() + cooldown)
        exit.restoredKnobs = ((try? store.journalEntries(owner: name)) ?? []).map { "\($0.path)=\($0.original)" }
        try? await unload(name, reason: "ejected by the watchdog (\(exit.guardName))", evenIfUnsaved: true)
        // After the unload, so the policy stops first; `entry` keeps its object (and map) open.
        exit.policyError = await lastPolicyError(entry)
        let until = durationString(seconds: Double(exit.cooldownUntilNs - wallClockNanoseconds()) / 1e9)
        let said = exit.policyError.map { "; the policy said: \($0.message) (code \($0.code))" } ?? ""
        recorder.record(EventRecord(
            timeNs: wallClockNanoseconds(), type: .exit, policy: name,
            summary: "ejected by guard \(exit.guardName): \(exit.description); \(exit.restoredKnobs.count) knob(s) restored; no reload for \(until) without --force\(said)",
            exit: exit))
        logger.warning("watchdog ejected policy \(name): \(exit.description)")
    }

    /// What the policy last said about a failure: a report not yet taken
    /// by its engine, else the latest one its engine put in a decision
    /// since it was loaded.
    func lastPolicyError(_ entry: Loaded) async -> PolicyErrorInfo? {
        if let report = (try? entry.attachment.policy.errorReport(clear: false)) ?? nil {
            return PolicyErrorInfo(code: report.code, message: report.message)
        }
        await recorder.flush()
        let recent = (try? store.events(EventQuery(policy: entry.desired.name, sinceNs: entry.loadedNs, limit: 100))) ?? []
        return recent.reversed().lazy.compactMap { $0.decision?.policyError }.first
    }

    /// How long an ejected policy may not be loaded again without --force,
    /// unless its manifest's `[guards] cooldown_s` says otherwise.
    static let defaultCooldownSeconds = Int(GuardTable.sharedEntry("cooldown_s")?.sharedDefault ?? 300)

    /// How long ago `timeNs` (wall clock) was.
    static func age(of timeNs: Int64) -> String { durationString(seconds: Double(wallClockNanoseconds() - timeNs) / 1e9) }

    /// Unloads everything without touching the desired set (daemon shutdown).
    public func unloadAll(reason: String) async {
        for name in loaded.keys.sorted() { try? await unload(name, persist: false, reason: reason) }
    }

    /// Loads the saved desired set; on a first start (an empty state
    /// directory) the default set instead.
    public func restoreDesiredSet(firstStart: Bool) async {
        let desired: [DesiredPolicy]
        do { desired = try store.desiredPolicies() } catch {
            // Not an empty set: neither the saved policies nor the default set are loaded, and it is said.
            store.health.report(.desiredSet, "the desired policy set could not be read at start (\(error.summary)), so no saved policy was loaded (nor the default set). Load them again with `mmpolicy load`; if the database is damaged, restarting the daemon moves it aside and salvages what it can.")
            return
        }
        if desired.isEmpty, firstStart, let path = configuration.defaultSetPath {
            do {
                let set = try PolicySet.load(path: path)
                for entry in set.entries {
                    let request = LoadRequest(policy: entry.name, scope: entry.scope, mode: entry.mode?.rawValue,
                                              overrides: entry.set.map { ParameterOverride(key: $0.key, value: $0.value) })
                    do { _ = try await load(request) } catch {
                        noteFailure(name: entry.name, source: entry.name, scope: entry.scope ?? "the manifest's",
                                    mode: entry.mode?.rawValue ?? "the manifest's", error: "\(error)")
                        record(.loadFailed, policy: entry.name, "default set \(path): \(error)")
                        logger.error("default policy \(entry.name) did not load: \(error)")
                    }
                }
            } catch {
                logger.error("the default set \(path) is unreadable: \(error)")
            }
            return
        }
        for policy in desired {
            let request = LoadRequest(policy: policy.source, scope: policy.scope, mode: policy.mode,
                                      overrides: policy.overrides, alias: policy.name)
            do { _ = try await load(request, persist: false) } catch {
                noteFailure(name: policy.name, source: policy.source, scope: policy.scope, mode: policy.mode, error: "\(error)")
                record(.loadFailed, policy: policy.name, "reloading the desired set: \(error)")
                logger.error("desired policy \(policy.name) did not reload: \(error)")
            }
        }
    }

    func noteFailure(name: String, source: String, scope: String, mode: String, error: String) {
        failed[name] = FailedPolicy(name: name, source: source, scope: scope, mode: mode, error: error,
                                    failedNs: wallClockNanoseconds())
    }

    // MARK: status

    /// The loaded policies of a kind that moves memory to swap (its
    /// definition's `needsSwap`), by name: they rely on a swap area.
    public func policiesNeedingSwap() -> [String] {
        loaded.filter { configuration.kinds.definition(for: $0.value.kind)?.needsSwap == true }.keys.sorted()
    }

    /// Desired policies that did not load and have not been loaded or unloaded since, by name.
    public func failures() -> [FailedPolicy] {
        failed.keys.sorted().map { failed[$0]! }
    }

    /// Every loaded policy, with up to `history` recent watchdog windows each.
    public func statuses(history: Int = 0) -> [PolicyStatus] {
        loaded.keys.sorted().map { status(of: loaded[$0]!, history: history) }
    }

    func status(of entry: Loaded, history: Int = 0) -> PolicyStatus {
        let counts = try? store.decisionCounts(policy: entry.desired.name, sinceNs: entry.loadedNs)
        var runCount: UInt64 = 0, runTime: UInt64 = 0
        for program in entry.attachment.policy.object.programs {
            if let info = try? program.info() {
                runCount += info.runCount
                runTime += info.runTimeNanoseconds
            }
        }
        return PolicyStatus(
            name: entry.desired.name, kind: entry.kind.rawValue, scope: entry.desired.scope, mode: entry.desired.mode,
            objectPath: entry.attachment.policy.objectPath, loadedNs: entry.loadedNs,
            uptimeSeconds: Double(wallClockNanoseconds() - entry.loadedNs) / 1e9,
            decisions: counts ?? DecisionCounts(), lastDecision: try? store.lastDecision(policy: entry.desired.name),
            bpfRunCount: runCount, bpfRunTimeNs: runTime, parameters: entry.parameters,
            watchdog: watchdog.status(of: entry.desired.name, history: history),
            lastExit: try? store.lastExit(policy: entry.desired.name),
            degraded: entry.engine.problems(of: entry.desired.name).nilIfEmpty,
            figures: entry.engine.figures(of: entry.desired.name).nilIfEmpty)
    }

    func record(_ type: EventRecord.EventType, policy: String?, _ summary: String) {
        recorder.record(EventRecord(timeNs: wallClockNanoseconds(), type: type, policy: policy, summary: summary))
    }
}


extension Array {
    /// nil for an empty array: for optional fields left out of a reply when empty.
    var nilIfEmpty: [Element]? { isEmpty ? nil : self }
}
