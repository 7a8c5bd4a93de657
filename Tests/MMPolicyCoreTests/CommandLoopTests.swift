import BPFKit
import MMPolicyCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The loop primitive the OOM engine and the watchdog run on: its commands
/// run in order on its own thread, stop joins it, nothing sent after stop
/// is lost without an answer, and its waits time out.
@Suite struct CommandLoopTests {
    enum Command: Sendable {
        case note(Int)
        case double(Int, CommandReply<Int>)
    }

    /// What the loop's body saw.
    final class Journal: Sendable {
        let notes = Mutex<[Int]>([])
        let threads = Mutex<[pthread_t]>([])
        let finished = Atomic<Bool>(false)
        let loopThread = Mutex<pthread_t?>(nil)
    }

    /// A body that runs every command, then waits for more.
    static func body(_ journal: Journal, waitMs: Int32 = 1000) -> @Sendable (CommandLoop<Command>) -> Void {
        { loop in
            journal.loopThread.withLock { $0 = pthread_self() }
            while true {
                let batch = loop.takeCommands()
                for command in batch.commands {
                    journal.threads.withLock { $0.append(pthread_self()) }
                    switch command {
                    case .note(let n): journal.notes.withLock { $0.append(n) }
                    case .double(let n, let reply): reply.resume(2 * n)
                    }
                }
                if batch.stopping { break }
                loop.wait(timeoutMs: waitMs)
            }
            journal.finished.store(true, ordering: .releasing)
        }
    }

    @Test func commandsRunInOrderOnTheLoopThread() async throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        let journal = Journal()
        try loop.start(Self.body(journal))
        for n in 0..<200 { #expect(loop.send(.note(n))) }
        // A request queued behind them answers only after they ran.
        let answer = await loop.request { .double(21, $0) }
        #expect(answer == 42)
        #expect(journal.notes.withLock { $0 } == Array(0..<200))
        let loopThread = try #require(journal.loopThread.withLock { $0 })
        #expect(pthread_equal(loopThread, pthread_self()) == 0)
        #expect(journal.threads.withLock { $0 }.allSatisfy { pthread_equal($0, loopThread) != 0 })
        loop.stop()
    }

    @Test func commandsSentBeforeStartRunOnceItStarts() async throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        let journal = Journal()
        #expect(loop.send(.note(1)))
        #expect(loop.send(.note(2)))
        try loop.start(Self.body(journal))
        #expect(await loop.request { .double(3, $0) } == 6)
        #expect(journal.notes.withLock { $0 } == [1, 2])
        loop.stop()
    }

    @Test func stopWakesTheBodyAndJoinsIt() throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        let journal = Journal()
        // The body would sleep a minute between commands; stop must wake it.
        try loop.start(Self.body(journal, waitMs: 60_000))
        loop.send(.note(7))
        let start = monotonicNanoseconds()
        loop.stop()
        let finished = journal.finished.load(ordering: .acquiring)
        #expect(finished)
        #expect(monotonicNanoseconds() - start < 5_000_000_000)
        // Sent before stop, so it ran before the body returned.
        #expect(journal.notes.withLock { $0 } == [7])
        #expect(loop.isStopping)
        loop.stop()  // idempotent
    }

    @Test func aCommandSentAfterStopIsRefused() async throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        let journal = Journal()
        try loop.start(Self.body(journal))
        loop.stop()
        #expect(!loop.send(.note(1)))
        #expect(await loop.request { .double(1, $0) } == nil)
        #expect(journal.notes.withLock { $0 }.isEmpty)
        // A stopped loop does not start again.
        try loop.start(Self.body(journal))
        #expect(!loop.send(.note(2)))
    }

    @Test func requestsLeftInTheQueueOfALoopThatNeverRanAreRefusedAtStop() async throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        async let answer = loop.request { .double(5, $0) }
        // Let the request reach the queue, then stop the loop that never started.
        while loop.queuedCount == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        loop.stop()
        #expect(await answer == nil)
    }

    @Test func waitTimesOutWhenNothingHappens() throws {
        let loop = try CommandLoop<Never>(threadName: "test-loop", role: "the test loop thread")
        let start = monotonicNanoseconds()
        let wakeup = loop.wait(timeoutMs: 30)
        let elapsed = monotonicNanoseconds() - start
        #expect(wakeup.timedOut)
        #expect(!wakeup.commands)
        #expect(wakeup.ready == 0)
        #expect(wakeup.failure == nil)
        #expect(elapsed >= 30_000_000)

        let deadline = monotonicNanoseconds() + 20_000_000
        #expect(loop.wait(untilNs: deadline).timedOut)
        #expect(monotonicNanoseconds() >= deadline)
        // A deadline already passed does not block.
        #expect(loop.wait(untilNs: 0).timedOut)
    }

    @Test func waitReportsTheBodysOwnDescriptorsAndCommands() throws {
        let loop = try CommandLoop<Command>(threadName: "test-loop", role: "the test loop thread")
        let mine = try EventFD(), idle = try EventFD()
        mine.signal()
        var fds = [pollfd(fd: idle.rawValue, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: mine.rawValue, events: Int16(POLLIN), revents: 0)]
        var wakeup = loop.wait(for: &fds, timeoutMs: 1000)
        #expect(wakeup.ready == 1)
        #expect(!wakeup.commands)
        #expect(!wakeup.timedOut)
        #expect(fds[0].revents == 0)
        #expect(fds[1].revents & Int16(POLLIN) != 0)
        _ = mine.read()

        loop.send(.note(1))
        fds[1].revents = 0
        wakeup = loop.wait(for: &fds, timeoutMs: 1000)
        #expect(wakeup.commands)
        #expect(wakeup.ready == 0)
        // The wake was consumed: the next wait sleeps until its timeout.
        #expect(loop.wait(for: &fds, timeoutMs: 10).timedOut)
        #expect(loop.takeCommands().commands.count == 1)
    }
}
