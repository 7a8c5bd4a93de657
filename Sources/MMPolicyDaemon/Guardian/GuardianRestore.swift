import BPFKit
import Logging
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// What the guardian does once its daemon is gone: take the state
/// directory's lock, restore every journaled knob (or, if the journal cannot
/// be read, the kernel defaults it can identify: ``KnobRecovery``), record it
/// in the audit trail, release the lock.
///
/// The lock decides who restores. Holding it means no daemon is running on
/// the directory (a daemon holds it for life from its first step), so every
/// journaled knob is orphaned and restoring all of them is right, even ones
/// a newer daemon journaled before it died too. If a live daemon holds it, a
/// newer daemon has started; it restored the journal itself before changing
/// anything, may already have turned the kernel OOM killer off again, and
/// the guardian must not undo that: it leaves without touching a knob.
struct GuardianRestore {
    var stateDirectory: String
    var daemonPID: Int32
    var logger: Logger

    /// How long to wait for the lock while another guardian restores, or
    /// while the dead daemon's own descriptor on it is still being closed.
    static let lockWaitNs: UInt64 = 3_000_000_000

    enum LockOutcome: Equatable {
        case acquired
        /// A live daemon holds it (its pid).
        case heldByDaemon(Int32)
        case timedOut(holder: Int32?)
    }

    /// Returns the exit status: 0 when nothing is left changed (or a newer
    /// daemon took over), 1 when something could not be restored or the
    /// journal could not be read.
    func run(daemonEndedNs: UInt64) -> Int32 {
        let me = getpid()
        let lock: StateDirectoryLock
        do { lock = try StateDirectoryLock(directory: stateDirectory) } catch {
            logger.critical("mmpolicy guardian pid \(me): daemon pid \(daemonPID) died but \(error); its knobs stay changed until the daemon is started again.")
            return 1
        }
        switch takeLock(lock) {
        case .acquired:
            break
        case .heldByDaemon(let pid):
            logger.notice("mmpolicy guardian pid \(me): daemon pid \(daemonPID) died, but daemon pid \(pid) already holds \(lock.path) and restored what it left; nothing to do.")
            return 0
        case .timedOut(let holder):
            logger.critical("mmpolicy guardian pid \(me): daemon pid \(daemonPID) died but \(lock.path) stayed locked (by \(holder.map { "pid \($0)" } ?? "an unknown process")) for \(Self.lockWaitNs / 1_000_000_000) s; knobs stay changed until a daemon starts on \(stateDirectory).")
            return 1
        }
        let lockedNs = monotonicNanoseconds()
        let lastOwner = lock.recordedPID

        // No integrity check: the restore must take milliseconds, and a
        // journal that cannot be read makes it fall back to the kernel
        // defaults anyway (the next daemon start checks the file).
        let opened = Result { () throws(StateStoreError) in try StateStore(directory: stateDirectory, checkIntegrity: false) }
        let outcome: KnobRecovery.Outcome
        switch opened {
        case .success(let store):
            outcome = KnobRecovery.run(.journal(KnobJournal(storage: store)), desiredSet: {
                Result { () throws(StateStoreError) in try store.desiredPolicies() }
            }, mount: MemoryCgroupMount.detect())
        case .failure(let error):
            outcome = KnobRecovery.run(.unreadable(error.summary), desiredSet: { .failure(error) }, mount: MemoryCgroupMount.detect())
        }
        let doneNs = monotonicNanoseconds()

        let summary = Self.summary(guardian: me, daemon: daemonPID, lastOwner: lastOwner, outcome: outcome,
                                   lockMs: Double(lockedNs - daemonEndedNs) / 1e6, totalMs: Double(doneNs - daemonEndedNs) / 1e6)
        if case .success(let store) = opened {
            do {
                try store.append(EventRecord(timeNs: wallClockNanoseconds(), type: .note, policy: nil, summary: summary))
            } catch {
                logger.error("mmpolicy guardian pid \(me): recording the restore failed: \(error)")
            }
        } else {
            logger.error("mmpolicy guardian pid \(me): the restore is not recorded in the audit trail: the state database cannot be opened")
        }
        let failed = !outcome.failures.isEmpty || outcome.sweep != nil
        if failed { logger.critical("\(summary)") } else { logger.notice("\(summary)") }
        withExtendedLifetime(lock) {}
        // 1 also after a sweep: without the journal nobody can say everything is back.
        return failed ? 1 : 0
    }

    /// Takes the lock, waiting while it is held by the dying daemon (whose
    /// descriptors close one by one as it exits), by another guardian, or by
    /// no process we can see yet.
    func takeLock(_ lock: StateDirectoryLock) -> LockOutcome {
        let deadline = monotonicNanoseconds() + Self.lockWaitNs
        var holder: Int32?
        while true {
            do { if try lock.tryLock() { return .acquired } } catch {
                logger.error("mmpolicy guardian pid \(getpid()): \(error)")
                return .timedOut(holder: nil)
            }
            holder = lock.holder
            if let pid = holder, pid != daemonPID, let process = try? ProcessSnapshot.read(pid: pid),
               !process.hasExited, process.comm != Guardian.processName {
                return .heldByDaemon(pid)
            }
            if monotonicNanoseconds() >= deadline { return .timedOut(holder: holder) }
            usleep(2_000)
        }
    }

    /// One line for the audit trail and the log.
    static func summary(guardian: Int32, daemon: Int32, lastOwner: Int32?, outcome: KnobRecovery.Outcome,
                        lockMs: Double, totalMs: Double) -> String {
        let result = outcome.restoration
        var text = "guardian pid \(guardian): daemon pid \(daemon) ended without a clean shutdown"
        if let lastOwner, lastOwner != daemon {
            text += " (so did daemon pid \(lastOwner), which started after it)"
        }
        if let sweep = outcome.sweep {
            return text + " after \(decimalString(totalMs, places: 1)) ms; " + KnobRecovery.describe(sweep)
        }
        let changed = result.restored + result.inherited
        if changed.isEmpty && result.vanished.isEmpty && result.failures.isEmpty {
            return text + "; no knob was left changed"
        }
        text += "; restored \(changed.count) knob(s) in \(decimalString(totalMs, places: 1)) ms (lock after \(decimalString(lockMs, places: 1)) ms)"
        if !changed.isEmpty {
            text += ": " + changed.map { "\($0.path)=\($0.original)" }.joined(separator: ", ")
        }
        if !result.inherited.isEmpty {
            text += "; \(result.inherited.count) of them in memcgs made after the daemon's last look, which had copied their parent's value"
        }
        if !result.vanished.isEmpty {
            text += "; \(result.vanished.count) already gone: " + result.vanished.map(\.path).joined(separator: ", ")
        }
        if !result.failures.isEmpty {
            text += "; \(result.failures.count) FAILED and stay journaled for the next daemon start: "
                + result.failures.map(\.description).joined(separator: " ")
        }
        return text
    }
}
