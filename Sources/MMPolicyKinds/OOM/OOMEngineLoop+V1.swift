#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// cgroup v1: an OOM eventfd on every governed memcg with the kernel killer
/// disabled (journaled), handover to the kernel killer when the policy does
/// not decide, and waiting for the OOM to clear after a kill.
extension OOMEngineLoop {
    /// A v1 OOM handed to the kernel: the group's kill count then, and since
    /// when its OOM looked clear.
    struct Handover {
        var killCount: UInt64
        var clearSinceNs: UInt64?
    }

    /// Room below the limit that means an OOM notification is stale: the
    /// charge that failed (up to a 2 MiB huge page) fits now, and the
    /// uncharge that made the room has already woken the waiting tasks.
    static let staleRoomBytes: UInt64 = 8 << 20
    /// How long a handed-over OOM must look clear, with no kernel kill seen,
    /// before the kernel killer is disabled again.
    static let handoverQuietNs: UInt64 = 500_000_000
    static let rescanIntervalNs: UInt64 = 1_000_000_000
    static let clearTimeoutNs: UInt64 = 2_000_000_000

    /// Registers an OOM eventfd on every memcg of every v1 scope (new
    /// children included) and keeps the kernel killer disabled exactly on
    /// those governed by a policy, restoring the rest from the journal.
    func reconcileV1() {
        defer { publishHolds() }
        var wanted: [String: OOMPolicyInstance] = [:]
        for policy in policies.values {
            guard case .v1(let root) = domain(of: policy) else { continue }
            for path in CgroupTree.descendants(of: root) {
                if let current = wanted[path], current.scope.cgroupPath!.count >= root.count { continue }
                wanted[path] = policy
            }
        }
        for path in Array(v1Notifiers.keys) where wanted[path] == nil { v1Notifiers.removeValue(forKey: path) }
        pruneJournalFailures(wanted: wanted.mapValues(\.name))
        for path in wanted.keys.sorted() where v1Notifiers[path] == nil {
            do { v1Notifiers[path] = try OOMNotifier(memcg: path) } catch {
                environment.log("cannot watch \(path) for OOM: \(error)")
            }
        }
        let shouldDisable = Set(wanted.keys.filter { v1Notifiers[$0] != nil })
        let release = v1Disabled.subtracting(shouldDisable)
        if !release.isEmpty {
            for failure in restoreKnobs(release.map { $0 + Self.oomControl }) {
                environment.log("restoring the kernel OOM killer failed: \(failure)")
            }
            v1Disabled.subtract(release)
            for path in release { fallbackPending.removeValue(forKey: path) }
        }
        // Through the journal worker, which answers with `.journaled`: the
        // memcg is governed from then on. Parents first (the worker keeps the
        // order), so a child's inherited value is journaled as its parent's
        // original: the reader runs on the worker, after the parent's job.
        let journal = environment.journal
        for path in shouldDisable.subtracting(v1Disabled).sorted(by: { $0.count < $1.count })
        where journalInFlight[path + Self.oomControl] == nil {
            let parentKnob = parentDirectory(of: path) + Self.oomControl
            requestKnobWrite("1", to: path + Self.oomControl, owner: wanted[path]!.name, tag: .memcg(path)) { text in
                guard text.contains("oom_kill_disable 1") else { return "0" }
                // Not journaled above: someone else's "off". A journal that
                // cannot say: the kernel default (and the write that follows
                // most likely fails too).
                do { return try journal.storedOriginal(of: parentKnob) ?? "1" } catch { return "0" }
            }
        }
    }

    func handleV1(fired: [String], t0: UInt64) {
        let firedSet = Set(fired)
        // The OOM is in the topmost memcg that fired: v1 notifies the group
        // that hit its limit and every group below it.
        let origins = fired.filter { path in
            var parent = parentDirectory(of: path)
            while parent.count > 1 {
                if firedSet.contains(parent) { return false }
                parent = parentDirectory(of: parent)
            }
            return true
        }
        for origin in origins.sorted() {
            guard let policy = governor(of: origin, version: .v1), fallbackPending[origin] == nil else { continue }
            guard access(origin, F_OK) == 0 else { v1Notifiers.removeValue(forKey: origin); continue }
            guard let control = try? MemcgV1(path: origin).oomControl(), control.underOOM else { continue }
            // With its killer on, the OOM is the kernel's: not governed yet
            // (its journal entry is on its way, or failed), or handed over
            // (by this engine, or by the guardian while this daemon was
            // stopped). With it off, even if only copied from a governed
            // parent at mkdir, the policy decides, and a fallback turns the
            // killer back on (`handToKernel`).
            guard control.oomKillDisable else { continue }
            let memcg = MemcgV1(path: origin)
            let limit = ((try? memcg.limitBytes()) ?? nil) ?? 0, usage = (try? memcg.usageBytes()) ?? 0
            // A notification from a task that retried while a kill was still
            // freeing memory: there is room now and the task has been woken.
            if limit > 0, usage + Self.staleRoomBytes < limit { continue }
            // Still under OOM after an earlier kill. While a victim of it is
            // still exiting, or the memcg has not got at least half the
            // victims' memory back, that memory may still be on its way
            // (process_mrelease answers ESRCH once the victim passed
            // exit_mm(), and the last holder of its mm frees the pages):
            // wait, up to `killSettleNs`, as the kernel's killer waits for
            // its own victim, rather than kill a second process. The
            // uncharge wakes the waiters; an OOM that persists notifies again.
            let nowNs = monotonicNanoseconds()
            if let index = awaitingClear.firstIndex(where: {
                $0.origin == origin && $0.stillReleasing(usage: usage, now: nowNs, settleNs: Self.killSettleNs)
            }) {
                // Looked at again when the memory is back or the wait is over.
                awaitingClear[index].notifiedAgain = true
                continue
            }
            // Otherwise that record is final now.
            if let index = awaitingClear.firstIndex(where: { $0.origin == origin }) {
                var pending = awaitingClear.remove(at: index)
                pending.record.detail = pending.record.detail.isEmpty ? "the OOM persisted after the kill" : pending.record.detail
                emit(pending.record, policy: pending.policy)
            }
            let scope = (try? ResolvedScope.cgroup(origin, mount: policy.scope.mount)) ?? policy.scope
            decide(policy, origin: origin, scope: scope, trigger: .memcgOOM, limit: limit, usage: usage, t0: t0,
                   wokenBy: "memcg-eventfd")
        }
    }

    /// Hands memcg `origin`'s OOM to the kernel killer until it clears.
    ///
    /// This and ``serviceFallbacks(now:)`` write oom_kill_disable without the
    /// journal, and need not go through it: a memcg is in `v1Disabled` only
    /// after `journal.write` journaled its original, and the entry stays until
    /// the memcg leaves `v1Disabled`. So a daemon killed mid-handover is
    /// restored like any other (and the OOM path takes no SQLite write).
    ///
    /// A memcg not governed yet whose killer is off because it copied
    /// mmpolicy's value from a governed ancestor is given its original back
    /// (what the ancestor's journal entry says, and what the guardian would
    /// write), with no journal entry of its own: that is the value it would
    /// have had. When its journal job answers, the handover goes on.
    func handToKernel(_ origin: String, now: UInt64) {
        guard v1Disabled.contains(origin) || inheritedOriginal(of: origin) != nil else { return }
        do {
            let memcg = MemcgV1(path: origin)
            let kills = (try? memcg.oomControl().oomKillCount) ?? 0
            try memcg.setOOMKillDisable(false)
            fallbackPending[origin] = Handover(killCount: kills, clearSinceNs: nil)
        } catch {
            environment.log("handing \(origin)'s OOM to the kernel failed: \(error)")
        }
    }

    /// Re-disables the kernel killer on handed-over memcgs once their OOM is
    /// over: the kernel killed (its count went up) and under_oom is clear, or
    /// under_oom stayed clear for a while (the OOM resolved without a kill).
    /// under_oom alone is not enough: it drops for a moment while woken tasks
    /// retry their charge, before the kernel gets to kill.
    func serviceFallbacks(now: UInt64) {
        for (origin, handover) in fallbackPending {
            guard let control = try? MemcgV1(path: origin).oomControl() else { fallbackPending.removeValue(forKey: origin); continue }
            guard !control.underOOM else {
                fallbackPending[origin]?.clearSinceNs = nil
                continue
            }
            let clearSince = handover.clearSinceNs ?? now
            fallbackPending[origin]?.clearSinceNs = clearSince
            guard control.oomKillCount > handover.killCount || now - clearSince >= Self.handoverQuietNs else { continue }
            fallbackPending.removeValue(forKey: origin)
            if v1Disabled.contains(origin) {
                do { try MemcgV1(path: origin).setOOMKillDisable(true) } catch {
                    environment.log("re-disabling the kernel OOM killer on \(origin) failed: \(error)")
                }
            }
        }
    }

    /// How long after a kill a further OOM notification of the same memcg
    /// waits for the victims' memory to come back before the policy is
    /// asked again (the kernel's OOM reaper gives a victim about a second).
    static let killSettleNs: UInt64 = 500_000_000

    func serviceAwaitingClear(now: UInt64) {
        var keep: [PendingDecision] = []
        // OOMs notified again during a kill's settling, whose wait is over.
        var recheck: [String] = []
        for var pending in awaitingClear {
            let cleared = pending.origin.flatMap { try? MemcgV1(path: $0).oomControl() }.map { !$0.underOOM } ?? true
            if !cleared, pending.notifiedAgain, let origin = pending.origin,
               !pending.stillReleasing(usage: (try? MemcgV1(path: origin).usageBytes()) ?? 0, now: now, settleNs: Self.killSettleNs) {
                pending.notifiedAgain = false
                recheck.append(origin)
            }
            if cleared {
                pending.record.envelope.timing.set(OOMStep.cleared, Double(monotonicNanoseconds() - pending.t0) / 1000)
                emit(pending.record, policy: pending.policy)
            } else if now >= pending.deadlineNs {
                pending.record.detail = "the OOM had not cleared \(Self.clearTimeoutNs / 1_000_000) ms after the kill"
                emit(pending.record, policy: pending.policy)
            } else {
                keep.append(pending)
            }
        }
        awaitingClear = keep
        // The notification that came during the wait is answered now (the
        // kernel does not repeat it while its waiters sleep).
        if !recheck.isEmpty { handleV1(fired: recheck, t0: monotonicNanoseconds()) }
    }
}
