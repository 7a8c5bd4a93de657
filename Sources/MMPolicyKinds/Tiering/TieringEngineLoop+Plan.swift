#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// One plan, from the callback to the record: ask, check, carry out (or
/// observe), count, record.
extension TieringEngineLoop {
    func plan(_ name: String, trigger: TieringTrigger, t0: UInt64) {
        guard var attached = policies[name] else { return }
        let instance = attached.instance
        refreshProcesses(name)
        attached = policies[name] ?? attached
        let pressure = try? PressureStall.read(pressurePath(of: instance))
        let tier = SlowTier.current()
        let figures = TierFigures(swapTotalBytes: tier.swapTotalBytes, swapFreeBytes: tier.swapFreeBytes,
                                  storedBytes: tier.storedBytes, compressedBytes: tier.compressedBytes, usedBytes: tier.usedBytes)
        let (usage, limit) = scopeUsage(instance.scope)
        let request = TieringRequest(
            trigger: trigger, scope: instance.scope, intervalNs: t0 - attached.lastPlanNs, pressure: pressure,
            someDeltaUs: delta(pressure?.some.total, attached.lastPressure?.some.total),
            fullDeltaUs: delta(pressure?.full.total, attached.lastPressure?.full.total),
            memory: try? MemInfo.read(), scopeUsageBytes: usage, scopeLimitBytes: limit, tier: figures,
            maxDemoteBytes: instance.settings.maxDemoteBytes, maxPromoteBytes: instance.settings.maxPromoteBytes,
            daemonPID: environment.daemonPID)
        attached.lastPlanNs = t0
        attached.lastPressure = pressure
        attached.nextPlanNs = t0 + instance.intervalNs
        policies[name] = attached

        var record = DecisionRecord(kind: .tiering, trigger: trigger.name, scope: instance.scope.description,
                                    origin: instance.scope.cgroupPath ?? "system", mode: instance.mode, outcome: .fellBack,
                                    wokenBy: trigger == .pressure ? "psi" : "timer")
        var payload = TieringDecisionPayload(tier: figures)
        let callStart = monotonicNanoseconds()
        let answer = Result { () throws(BPFError) in try instance.planner.plan(request) }
        let decided = monotonicNanoseconds()
        record.timing.decidedUs = Double(decided - t0) / 1000
        record.timing.callbackUs = Double(decided - callStart) / 1000
        engine.totals.withLock { $0[name]?.plans += 1; $0[name]?.tier = figures; $0[name]?.zramDiskSizeBytes = tier.zramDiskSizeBytes }

        let plan: TieringPlan
        switch answer {
        case .failure(let error):
            record.outcome = .error
            record.detail = "plan could not be run: \(error)"
            return finish(name, record: record, payload: payload, health: .error)
        case .success(let answered):
            plan = answered
        }
        payload.actionsAsked = plan.actions.count + plan.malformed
        payload.targetsAsked = plan.targets.count
        guard plan.status == UInt32(MMPOLICY_DECIDED.rawValue) || plan.status == UInt32(MMPOLICY_NO_DECISION.rawValue) else {
            record.outcome = .error
            record.detail = "plan returned \(Int32(bitPattern: plan.status))"
            record.policyError = instance.takeErrorReport()
            return finish(name, record: record, payload: payload, health: .error)
        }
        guard plan.decided, !plan.actions.isEmpty || plan.malformed > 0 || !plan.targets.isEmpty else {
            // Nothing to do: counted, not recorded (a plan every interval would bury the audit trail).
            engine.health.count(.fallback, for: name)
            return
        }
        guard decided - t0 <= instance.deadlineNs else {
            record.detail = "plan took \(decimalString(Double(decided - t0) / 1e6, places: 2)) ms, past deadline_ms \(instance.deadlineNs / 1_000_000)"
            return finish(name, record: record, payload: payload, health: .deadlineMiss)
        }

        let swapFreePercent = tier.swapTotalBytes == 0 ? 0 : Double(tier.swapFreeBytes) * 100 / Double(tier.swapTotalBytes)
        var checked = attached.validator.validate(plan.actions, targets: plan.targets, facts: facts(for: attached),
                                                  cgroups: cgroupFacts(for: attached.instance.scope), swapFreePercent: swapFreePercent)
        for _ in 0..<plan.malformed {
            checked.refusals.append(.init(action: TieringAction(pid: 0, kind: .cold, start: 0, length: 0), reason: "an action of unknown kind"))
        }
        payload.refusedCount = checked.refusals.count + checked.targetRefusals.count
        payload.refusals = Array(checked.refusals.prefix(TieringDecisionPayload.maxListed))
        payload.targetRefusals = Array(checked.targetRefusals.prefix(TieringDecisionPayload.maxListed))
        if let note = checked.trimNote { record.detail = "trimmed \(TieringDecisionText.mib(checked.trimmedBytes)): \(note)" }
        // Sampled before they go out (observe mode too); left resident if incompressible and [tiering] says skip.
        (checked.accepted, payload.compressibility) = checkCompressibility(name, checked.accepted, now: decided)

        var moves: [Int32: TieringDecisionPayload.ProcessMoves] = [:]
        var done = 0
        if instance.mode == .observe {
            for accepted in checked.accepted {
                add(accepted.bytes, of: accepted.action, to: &payload, &moves)
                done += 1
            }
            done += observe(checked.acceptedTargets, payload: &payload)
        } else {
            done = carryOut(checked.accepted, payload: &payload, moves: &moves, now: decided)
            done += reclaim(checked.acceptedTargets, policy: name, payload: &payload)
            record.timing.set(TieringStep.carriedOut, Double(monotonicNanoseconds() - t0) / 1000)
        }
        payload.processes = moves.values.sorted { $0.demotedBytes + $0.promotedBytes > $1.demotedBytes + $1.promotedBytes }
            .prefix(TieringDecisionPayload.maxListed).map { $0 }
        let refused = payload.refusedCount
        engine.totals.withLock {
            $0[name]?.refused += UInt64(refused)
            if instance.mode == .enforce {
                $0[name]?.demotedBytes += payload.demotedBytes
                $0[name]?.coldBytes += payload.coldBytes
                $0[name]?.promotedBytes += payload.promotedBytes
                $0[name]?.incompressibleSkippedBytes += payload.compressibility?.skippedBytes ?? 0
                $0[name]?.reclaimedBytes += payload.reclaimedBytes
            }
        }
        if done == 0, refused == 0, record.detail.isEmpty, let failure = payload.failures.first { record.detail = failure }
        let health: DecisionHealth.Event
        if done > 0 {
            record.outcome = instance.mode == .observe ? .observed : .carriedOut
            health = instance.mode == .observe ? .observed : .carriedOut(actions: done)
        } else if refused > 0 {
            record.outcome = .rejected
            health = .rejection
        } else {
            health = .fallback
        }
        // A partly refused plan counts its refusals too (the watchdog's max_rejections).
        if done > 0, refused > 0 { engine.health.addRejections(1, for: name) }
        finish(name, record: record, payload: payload, health: health)
    }

    /// Carries out accepted actions, per process and kind in one
    /// process_madvise(2) call each; returns how many actions moved anything.
    func carryOut(_ accepted: [TieringValidator.Accepted], payload: inout TieringDecisionPayload,
                  moves: inout [Int32: TieringDecisionPayload.ProcessMoves], now: UInt64) -> Int {
        var done = 0
        let grouped = Dictionary(grouping: accepted) { PIDAndKind(pid: $0.action.pid, kind: $0.action.kind) }
        for key in grouped.keys.sorted(by: { ($0.pid, $0.kind.rawValue) < ($1.pid, $1.kind.rawValue) }) {
            let group = grouped[key]!
            let pidfd: PidFD
            do { pidfd = try PidFD(pid: key.pid) } catch {
                payload.failures.append("pid \(key.pid): \(error)")
                continue
            }
            let ranges = group.flatMap(\.ranges)
            let advice: MemoryAdvice = key.kind == .demote ? .pageOut : key.kind == .cold ? .cold : .willNeed
            let outcome = ProcessMadvise.advise(pidfd, ranges: ranges, advice: advice)
            if let error = outcome.error { payload.failures.append("pid \(key.pid) \(key.kind.name): \(error)") }
            guard outcome.bytes > 0 else { continue }
            done += group.count
            add(outcome.bytes, of: group[0].action, to: &payload, &moves)
            if key.kind == .demote, let sensors {
                for region in Set(ranges.flatMap { Self.regions(of: $0) }) {
                    try? sensors.markDemoted(pid: key.pid, region: region, now: now)
                }
                try? sensors.addDemoted(pid: key.pid, bytes: outcome.bytes)
            }
        }
        return done
    }

    struct PIDAndKind: Hashable {
        var pid: Int32
        var kind: TieringActionKind
    }

    /// The 2 MiB regions a range touches.
    static func regions(of range: AddressRange) -> [UInt64] {
        guard range.length > 0 else { return [] }
        let shift = UInt64(MMPOLICY_TIER_REGION_SHIFT)
        return Array((range.start >> shift)...((range.end - 1) >> shift))
    }

    func add(_ bytes: UInt64, of action: TieringAction, to payload: inout TieringDecisionPayload,
             _ moves: inout [Int32: TieringDecisionPayload.ProcessMoves]) {
        var entry = moves[action.pid] ?? .init(pid: action.pid, comm: (try? ProcessSnapshot.read(pid: action.pid))?.comm ?? "?")
        switch action.kind {
        case .demote: payload.demotedBytes += bytes; entry.demotedBytes += bytes
        case .cold: payload.coldBytes += bytes; entry.coldBytes += bytes
        case .promote: payload.promotedBytes += bytes; entry.promotedBytes += bytes
        }
        moves[action.pid] = entry
    }

    func finish(_ name: String, record: DecisionRecord, payload: TieringDecisionPayload, health: DecisionHealth.Event) {
        engine.health.count(health, for: name)
        var record = record
        record.payload = DecisionPayload(payload)
        environment.record(EventRecord(timeNs: wallClockNanoseconds(), type: .decision, policy: name,
                                       summary: TieringDecisionText.summary(record, payload), decision: record))
    }

    /// What the validator may ask about the processes of `attached`.
    func facts(for attached: Attached) -> TieringValidator.TieringProcessFacts {
        let tracked = attached.tracked
        let mount = environment.mount
        return TieringValidator.TieringProcessFacts(
            governs: { tracked.contains($0) },
            identity: { pid in
                guard let snapshot = try? ProcessSnapshot.read(pid: pid), !snapshot.hasExited else { return nil }
                return (snapshot.comm, mount.flatMap { ProcessSnapshot.memoryCgroupPath(pid: pid, mount: $0) })
            },
            anonymousMappings: { pid in (try? ProcessMemoryMap.read(pid: pid))?.anonymousRanges })
    }

    /// The scope's memory use and limit (0: none).
    func scopeUsage(_ scope: ResolvedScope) -> (UInt64, UInt64) {
        guard let path = scope.cgroupPath, let mount = scope.mount else {
            let memory = try? MemInfo.read()
            return ((memory?.memTotal ?? 0) - min(memory?.memTotal ?? 0, memory?.memAvailable ?? 0), 0)
        }
        if mount.version == .v1 {
            let memcg = MemcgV1(path: path)
            return ((try? memcg.usageBytes()) ?? 0, ((try? memcg.limitBytes()) ?? nil) ?? 0)
        }
        let memcg = MemcgV2(path: path)
        return ((try? memcg.current()) ?? 0, ((try? memcg.max()) ?? nil) ?? 0)
    }

    func delta(_ now: UInt64?, _ before: UInt64?) -> UInt64 {
        guard let now, let before, now >= before else { return 0 }
        return now - before
    }
}
