#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// The engine's knob writes, kept off SQLite.
///
/// A knob the engine changes needs its original journaled durably first;
/// that SQLite write can wait seconds behind someone else's lock on the
/// database. So the engine's thread never journals: it sends a
/// journal-then-write job to the engine's `KnobJournalWorker` and goes on
/// deciding; the worker journals, writes the knob only if that succeeded,
/// and sends the result back as a `.journaled` command. Only then does the
/// engine count the knob as changed (a v1 memcg as governed). It keeps the
/// entries it journaled (`journaled`), so restoring needs no read of the
/// database either: it writes the original back itself (a file write) and
/// has the worker forget the entry afterwards.
extension OOMEngineLoop {
    static let oomControl = "/memory.oom_control"

    /// A memcg whose journal job failed: the policy that wanted it, and one
    /// sentence for its `status`.
    struct JournalFailure {
        var policy: String
        var message: String
    }

    /// Sends "journal `path`'s original, then write `value` to it" to the
    /// journal worker; the answer comes back as `.journaled(tag, ...)`.
    func requestKnobWrite(_ value: String, to path: String, owner: String, tag: OOMEngine.KnobWriteTag,
                          original: @escaping KnobJournal.OriginalReader = KnobJournal.trimmedText) {
        journalInFlight[path] = owner
        let loop = self.loop, journal = environment.journal
        engine.journalWorker.write(value, to: path, owner: owner, original: original) { result in
            if !loop.send(.journaled(tag, path: path, result)), case .success = result {
                // The engine has stopped and restored what it knew of: put this one back too.
                journal.restore(paths: [path])
            }
        }
    }

    /// The journal worker's answer (engine thread).
    func journaled(_ tag: OOMEngine.KnobWriteTag, path: String, _ result: Result<KnobJournalEntry, KnobError>) {
        let owner = journalInFlight.removeValue(forKey: path)
        switch result {
        case .failure(let error):
            switch tag {
            case .memcg(let memcg):
                // Not governed: the next look at the tree (once a second) tries again.
                journalFailed(memcg, policy: owner, error)
            case .steer(let policy, let pid):
                if let watch = v2Watches[policy], watch.steerInFlight == pid { watch.steerInFlight = nil }
                environment.log("steering oom_score_adj of pid \(pid) failed: \(error)")
            }
        case .success(let entry):
            journaled[path] = entry
            switch tag {
            case .memcg(let memcg):
                if journalFailures.removeValue(forKey: memcg) != nil {
                    environment.log("the knob journal took \(memcg) again: its kernel OOM killer is off as its policy's mode says")
                    publishProblems()
                }
                guard v1Notifiers[memcg] != nil, governor(of: memcg, version: .v1) != nil else {
                    // No longer wanted (its policy was detached meanwhile).
                    for failure in restoreKnobs([path]) { environment.log("restoring the kernel OOM killer failed: \(failure)") }
                    return
                }
                v1Disabled.insert(memcg)
                // Its OOM was handed to the kernel while the journal entry was
                // on its way: the handover goes on until the OOM is over.
                if fallbackPending[memcg] != nil {
                    do { try MemcgV1(path: memcg).setOOMKillDisable(false) } catch {
                        environment.log("handing \(memcg)'s OOM to the kernel failed: \(error)")
                    }
                }
            case .steer(let policy, let pid):
                if let watch = v2Watches[policy], watch.steerInFlight == pid {
                    watch.steerInFlight = nil
                    watch.steeredPID = pid
                } else {
                    restoreKnobs([path])
                }
            }
        }
    }

    /// A memcg's journal job failed: the knob was not written, so its
    /// kernel OOM killer stays as it was. One that is off anyway, because
    /// the memcg copied it from its governed parent at mkdir, is turned back
    /// on (its ancestor's journaled original): with no journal entry of its
    /// own a daemon that died now would leave it to the guardian's sweep of
    /// descendants. Either way the kernel resolves its OOMs, and its
    /// policy's status says so until a later job (the next look at the
    /// tree, once a second) succeeds.
    func journalFailed(_ memcg: String, policy: String?, _ error: KnobError) {
        guard let policy, v1Notifiers[memcg] != nil, governor(of: memcg, version: .v1) != nil else { return }
        var what = "the kernel OOM killer is left on"
        if let original = inheritedOriginal(of: memcg), original != "1",
           (try? MemcgV1(path: memcg).oomControl().oomKillDisable) == true {
            do {
                try MemcgV1(path: memcg).setOOMKillDisable(false)
                what = "the kernel OOM killer was turned back on (the memcg had copied its parent's 'off' when it was made)"
            } catch {
                what = "the kernel OOM killer is OFF (copied from its parent when the memcg was made) and turning it on failed: \(error)"
            }
        }
        let first = journalFailures[memcg] == nil
        journalFailures[memcg] = JournalFailure(policy: policy, message: "\(memcg): \(what), because the knob journal could not be written (\(error.detail.isEmpty ? error.description : error.detail))")
        if first {
            environment.log("cannot disable the kernel OOM killer on \(memcg) for policy '\(policy)': \(error); \(what), and the kernel resolves its OOMs until the journal can be written (retried every second)")
            publishProblems()
        }
    }

    /// Answers an attach once its journal jobs are answered: an attach
    /// some of whose memcgs could not be journaled is taken back and
    /// refused, so that `status` never shows a policy enforcing where the
    /// kernel's killer is on.
    func attachSettled(_ name: String, _ reply: CommandReply<Result<Void, OOMAttachError>>) {
        let failed = journalFailures.filter { $0.value.policy == name }.keys.sorted()
        guard !failed.isEmpty, policies[name] != nil else { return reply.resume(.success(())) }
        let first = journalFailures[failed[0]]!.message
        detach(name)
        let error = OOMAttachError(
            policy: name,
            reason: "the knob journal could not be written for \(failed.count) of its memcgs, so their kernel OOM killer could not be turned off with a way to restore it (\(first))",
            fix: "See `mmpolicy status` for the state database's problem and fix it (free space, or restart the daemon to move a damaged database aside), then load the policy again")
        afterJournalSettles { reply.resume(.failure(error)) }
    }

    /// Publishes `journalFailures` per policy, for `status`.
    func publishProblems() {
        var byPolicy: [String: [String]] = [:]
        for memcg in journalFailures.keys.sorted() {
            let failure = journalFailures[memcg]!
            byPolicy[failure.policy, default: []].append(failure.message)
        }
        engine.problemBoard.withLock { $0 = byPolicy }
    }

    /// Forgets failures of memcgs no longer wanted (`wanted`: memcg -> policy).
    func pruneJournalFailures(wanted: [String: String]) {
        let before = journalFailures.count
        journalFailures = journalFailures.filter { wanted[$0.key] == $0.value.policy }
        if journalFailures.count != before { publishProblems() }
    }

    /// Writes the journaled originals of `paths` back (memory.oom_control
    /// first, parents before children; descendants that inherited mmpolicy's
    /// value are reset too) and has the worker forget them afterwards. Only
    /// file writes on this thread. Paths this engine did not journal are
    /// skipped. Returns the failures; those stay journaled.
    @discardableResult
    func restoreKnobs(_ paths: [String]) -> [KnobError] {
        let entries = paths.compactMap { journaled[$0] }
        let ordered = entries.filter { $0.path.hasSuffix(Self.oomControl) }.sorted { $0.path.count < $1.path.count }
            + entries.filter { !$0.path.hasSuffix(Self.oomControl) }
        // A knob with a journal job on its way is the job's answer to restore.
        let known = Set(journaled.keys).union(journalInFlight.keys)
        var failures: [KnobError] = []
        var forget: [String] = []
        for entry in ordered {
            let back = KnobJournal.writeBack(entry, journaled: known)
            failures += back.failures
            guard back.complete else { continue }
            journaled.removeValue(forKey: entry.path)
            forget.append(entry.path)
        }
        if !forget.isEmpty {
            let log = environment.log
            engine.journalWorker.forget(paths: forget) { errors in
                for error in errors { log("\(error) (it stays journaled; the next start restores it again)") }
            }
        }
        return failures
    }

    /// Runs `body` once the journal worker has run every job sent so far and
    /// the engine has taken their answers (and the jobs those answers led to,
    /// such as forgetting a knob restored because its policy had gone, have
    /// run too). For replies to attach and detach; never waits on this thread.
    func afterJournalSettles(_ body: @escaping @Sendable () -> Void) {
        let loop = self.loop, worker = engine.journalWorker
        worker.barrier {
            // The answers were sent before this runs, so the engine takes them first.
            let then: @Sendable () -> Void = { worker.barrier(body) }
            // Refused also when the engine stops before taking it: `body` must run.
            loop.send(.settled(then), onRefused: then)
        }
    }

    /// The original to write back to memcg `path`'s oom_kill_disable when it
    /// is not journaled itself and its killer is off only because it copied
    /// mmpolicy's value from a journaled ancestor at mkdir; nil otherwise.
    func inheritedOriginal(of path: String) -> String? {
        guard journaled[path + Self.oomControl] == nil else { return nil }
        var parent = parentDirectory(of: path)
        while parent.count > 1 {
            if let entry = journaled[parent + Self.oomControl] { return entry.original == "1" ? nil : entry.original }
            parent = parentDirectory(of: parent)
        }
        return nil
    }
}
