import MMPolicyCore
import BPFKit
@testable import MMPolicyDaemon
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The state directory's lock: one holder at a time, who it is, and what a
/// refused daemon is told.
@Suite struct StateDirectoryLockTests {
    @Test func oneHolderAtATimeAndReleaseFreesIt() throws {
        let scratch = try ScratchDirectory()
        let directory = scratch.path + "/state"
        var first: StateDirectoryLock? = try StateDirectoryLock(directory: directory)
        let second = try StateDirectoryLock(directory: directory)
        #expect(try first!.tryLock())
        #expect(try !second.tryLock(), "flock locks each open file description: a second open in the same process is refused")
        #expect(first!.holder == getpid() && second.holder == getpid(), "/proc/locks names the holder")
        first!.recordOwner(pid: 4242)
        first!.recordOwner(pid: 17)
        #expect(second.recordedPID == 17, "the file holds only the last owner's pid")
        first = nil
        #expect(try second.tryLock(), "closing the holder's descriptor drops the lock")
    }

    @Test func waitingGivesUpAfterTheTimeout() async throws {
        let scratch = try ScratchDirectory()
        let holder = try StateDirectoryLock(directory: scratch.path)
        #expect(try holder.tryLock())
        let waiter = try StateDirectoryLock(directory: scratch.path)
        let started = monotonicNanoseconds()
        #expect(try await !waiter.lock(waitingAtMost: 0.2))
        #expect(monotonicNanoseconds() - started >= 200_000_000)
    }

    @Test func aRefusalNamesTheDirectoryTheHolderAndTheFix() throws {
        let scratch = try ScratchDirectory()
        let holder = try StateDirectoryLock(directory: scratch.path)
        #expect(try holder.tryLock())
        let error = StateDirectoryLockError.held(directory: scratch.path, holder: holder.holder, recordedPID: nil, waitedSeconds: 3)
        let text = "\(error)"
        #expect(text.contains(scratch.path) && text.contains("pid \(getpid())") && text.contains("--state-dir"), "\(text)")
        #expect(!text.contains("\n"), "one paragraph")
    }
}
