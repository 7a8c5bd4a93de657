import BPFKit
import GRDB
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The OOM engine on its own (no daemon): cgroup v2 early triggers on a
/// fixture cgroupfs (this machine's cgroup2 has no memory controller) and
/// victim validation against real processes.
@Suite(.serialized)
struct OOMEngineTests {
    static let mib: UInt64 = 1 << 20

    /// Collects what the engine records.
    final class Recorder: Sendable {
        let events = Mutex<[EventRecord]>([])
        func record(_ event: EventRecord) { events.withLock { $0.append(event) } }
        var decisions: [DecisionRecord] { events.withLock { $0.compactMap(\.decision) } }
    }

    func engine(_ recorder: Recorder, journal: KnobJournal = KnobJournal(storage: InMemoryKnobJournalStorage())) throws -> OOMEngine {
        // No object search path: no sensors (system scope would poll).
        let engine = try OOMEngine(environment: .init(
            journal: journal, mount: .detect(), objectSearchPath: ObjectSearchPath(directories: []), daemonPID: getpid(),
            record: { recorder.record($0) }, log: { _ in }))
        try engine.start()
        return engine
    }

    /// A directory that looks like a cgroup v2 memory cgroup.
    func fixtureCgroup(_ scratch: ScratchDirectory, max: UInt64, anon: UInt64, oom: UInt64 = 0) throws -> (mount: MemoryCgroupMount, path: String) {
        let root = try scratch.makeDirectory("cgroupfs")
        let group = try scratch.makeDirectory("cgroupfs/app")
        try writeMemcg(group, max: max, anon: anon, oom: oom)
        return (MemoryCgroupMount(version: .v2, path: root), group)
    }

    func writeMemcg(_ group: String, max: UInt64, anon: UInt64, oom: UInt64 = 0) throws {
        let files = [
            "memory.max": "\(max)\n", "memory.current": "\(anon + 10 * Self.mib)\n",
            "memory.stat": "anon \(anon)\nfile \(10 * Self.mib)\nshmem 0\n",
            "memory.events": "low 0\nhigh 0\nmax \(oom)\noom \(oom)\noom_kill \(oom)\noom_group_kill 0\n",
            "memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "cgroup.procs": "",
        ]
        for (name, text) in files {
            let fd = open(group + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
    }

    func instance(_ objectName: String, scope: ResolvedScope, mode: PolicyMode = .enforce,
                  overrides: [(String, ParameterValue)] = [], mount: MemoryCgroupMount?) throws -> OOMPolicyInstance {
        let path = objectName.hasPrefix("/") ? objectName : TestPaths.policyObject(objectName)
        let policy = try Policy.open(objectPath: path, kinds: .builtIn, overrides: overrides)
        try policy.load()
        return try OOMPolicyInstance(policy: policy, name: "test_\(UInt16.random(in: 0...UInt16.max))", scope: scope, mode: mode,
                                     daemonPID: getpid(), mount: mount)
    }

    @Test func v2GroupNearItsLimitAsksThePolicyEarly() async throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-v2")
        let (mount, group) = try fixtureCgroup(scratch, max: 100 * Self.mib, anon: 50 * Self.mib)
        let scope = try ResolvedScope.cgroup(group, mount: mount)
        let recorder = Recorder()
        let engine = try engine(recorder)
        defer { engine.stop() }
        let outsider = try workload(["hold", "--rss", "4M"])
        try await engine.attach(instance(TestPaths.fixture("oom_fixed_victim"), scope: scope,
                                         overrides: [("victim_pid", .integer(Int64(outsider.pid)))], mount: mount))
        // Half full: nothing happens, even after the engine's 1 s re-check.
        try await Task.sleep(for: .milliseconds(1300))
        #expect(recorder.decisions.isEmpty)
        // Within the 5 % headroom of memory.max (anon only: page cache does not count).
        try writeMemcg(group, max: 100 * Self.mib, anon: 96 * Self.mib)
        #expect(await eventuallyAsync(3) { !recorder.decisions.isEmpty })
        let decision = try #require(recorder.decisions.first)
        #expect(decision.trigger == "pressure" && decision.origin == group)
        #expect(decision.outcome == .rejected, "the fixture names a process outside the group")
        #expect(decision.detail.contains("outside the scope"), "\(decision.detail)")
        #expect(!isGone(outsider.pid))
    }

    @Test func v2KernelOOMEventIsRecordedWithThePolicysView() async throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-v2")
        let (mount, group) = try fixtureCgroup(scratch, max: 100 * Self.mib, anon: 10 * Self.mib)
        let recorder = Recorder()
        let engine = try engine(recorder)
        defer { engine.stop() }
        try await engine.attach(instance("oom_largest", scope: try ResolvedScope.cgroup(group, mount: mount), mount: mount))
        // The kernel got there first: memory.events' oom count goes up (inotify wakes the engine).
        try writeMemcg(group, max: 100 * Self.mib, anon: 10 * Self.mib, oom: 1)
        #expect(await eventuallyAsync(3) { !recorder.decisions.isEmpty })
        let decision = try #require(recorder.decisions.first)
        #expect(decision.trigger == "memcg-oom")
        #expect(decision.outcome == .fellBack && decision.oom?.candidates == 0, "no process is in a fixture group")
    }

    @Test func attachingTwoPoliciesToOneScopeIsRefused() async throws {
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-engine", limitBytes: 64 * Self.mib)
        let scope = try ResolvedScope.cgroup(memcg.path)
        let recorder = Recorder()
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let engine = try engine(recorder, journal: journal)
        defer { engine.stop() }
        let first = try instance("oom_largest", scope: scope, mount: scope.mount)
        try await engine.attach(first)
        #expect(try readFile(memcg.path + "/memory.oom_control").contains("oom_kill_disable 1"))
        await #expect(throws: OOMAttachError.self) {
            try await engine.attach(try instance("oom_growth", scope: scope, mount: scope.mount))
        }
        await engine.detach(name: first.name)
        #expect(try readFile(memcg.path + "/memory.oom_control").contains("oom_kill_disable 0"), "detach restores the kernel killer")
        #expect(journal.entries().isEmpty)
    }

    @Test func detachingAnInnerScopeLeavesTheOuterPolicysMemcgsDisabledAndJournaled() async throws {
        let outer = try TemporaryMemcg(prefix: "mmpolicy-engine", limitBytes: 64 * Self.mib)
        let inner = try outer.child("inner")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let engine = try engine(Recorder(), journal: journal)
        defer { engine.stop() }
        let outerPolicy = try instance("oom_largest", scope: try ResolvedScope.cgroup(outer.path), mount: outer.mount)
        let innerPolicy = try instance("oom_largest", scope: try ResolvedScope.cgroup(inner), mount: outer.mount)
        // The inner one first: it journals the inner memcg under its own name.
        try await engine.attach(innerPolicy)
        try await engine.attach(outerPolicy)
        await engine.detach(name: innerPolicy.name)
        // The outer policy governs the inner memcg again: its killer stays off, and journaled.
        #expect(try readFile(inner + "/memory.oom_control").contains("oom_kill_disable 1"))
        #expect(journal.original(of: inner + "/memory.oom_control") == "0")
        await engine.detach(name: outerPolicy.name)
        for path in [outer.path, inner] {
            #expect(try readFile(path + "/memory.oom_control").contains("oom_kill_disable 0"), "\(path)")
        }
        #expect(journal.entries().isEmpty)
    }

    /// Issue 10: the OOM path never waits on the database. A memcg made
    /// below a governed one is journaled by the engine's journal worker; with
    /// the database's write lock held by someone else, its journal entry
    /// cannot be written, yet an OOM in it is resolved at once (the engine's
    /// thread does not wait for SQLite), and once the lock is gone it is
    /// journaled and governed.
    @Test func anOOMInANewMemcgDoesNotWaitForALockedDatabase() async throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-dblock")
        let store = try StateStore(directory: scratch.path)
        let journal = KnobJournal(storage: store)
        let recorder = Recorder()
        let engine = try engine(recorder, journal: journal)
        defer { engine.stop() }
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-dblock", limitBytes: 256 * Self.mib)
        let policy = try instance("oom_largest", scope: try ResolvedScope.cgroup(memcg.path), mount: memcg.mount)
        try await engine.attach(policy)
        #expect(try readFile(memcg.path + "/memory.oom_control").contains("oom_kill_disable 1"))
        #expect(journal.original(of: memcg.path + "/memory.oom_control") == "0")

        // Someone holds the database's write lock (sqlite3 on the file, a backup...).
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true  // the BEGIN stays open across accesses
        let holder = try DatabaseQueue(path: store.path, configuration: configuration)
        let locked = Mutex(true)
        try execute(holder, "BEGIN IMMEDIATE")
        defer { if locked.withLock({ $0 }) { try? execute(holder, "ROLLBACK") } }

        // A new memcg with a limit of its own; the engine's next look at the
        // tree (once a second) arms its eventfd and asks for its journal entry.
        let child = try memcg.child("late")
        try writeFile(child + "/memory.limit_in_bytes", String(48 * Self.mib))
        try await Task.sleep(for: .milliseconds(1500))
        #expect(journal.original(of: child + "/memory.oom_control") == nil, "the journal entry waits for the lock")

        let startNs = monotonicNanoseconds()
        let held = try workload(["hold", "--rss", "24M", "--cgroup", child])
        let grower = try workload(["grow", "--rate", "100M", "--max", "100M", "--cgroup", child])
        var oomSeenNs: UInt64?, oomSeenWallNs: Int64?, resolvedNs: UInt64?
        while monotonicNanoseconds() - startNs < 8_000_000_000 {
            let control = try readFile(child + "/memory.oom_control")
            if control.contains("under_oom 1"), oomSeenNs == nil { oomSeenNs = monotonicNanoseconds(); oomSeenWallNs = wallClockNanoseconds() }
            if (isGone(held.pid) || isGone(grower.pid)), control.contains("under_oom 0") { resolvedNs = monotonicNanoseconds(); break }
            usleep(1000)
        }
        let resolved = try #require(resolvedNs, "the OOM in \(child) was not resolved within 8 s")
        let from = oomSeenNs ?? startNs
        // The grower reaches the limit in about 0.25 s; the policy's deadline is far below a second.
        #expect(resolved - from < 1_000_000_000, "the OOM took \(Double(resolved - from) / 1e6) ms from under_oom (seen: \(oomSeenNs != nil))")
        #expect(resolved - startNs < 2_000_000_000, "\(Double(resolved - startNs) / 1e6) ms from the start of the workloads")

        // A decision was made for it at once: its record's time does not hide a wait.
        let event = try #require(await eventuallyAsync(3) { recorder.events.withLock { $0 }.contains { $0.decision?.origin == child } }
            ? recorder.events.withLock({ $0 }).first { $0.decision?.origin == child } : nil)
        let decision = try #require(event.decision)
        #expect(decision.outcome == .carriedOut || decision.outcome == .fellBack, "\(decision.outcome): \(decision.detail)")
        if let oomSeenWallNs {
            let recordedAfterOOM = Double(event.timeNs - oomSeenWallNs) / 1e6
            #expect(recordedAfterOOM < 1000, "recorded \(recordedAfterOOM) ms after the OOM began")
            let killUs = decision.timing.us(OOMStep.kill) ?? 0
            #expect(killUs < 1_000_000, "the kill came \(killUs) us after the wake-up")
        }

        // The lock goes: the new memcg is journaled (its original, not the value it copied) and governed.
        try execute(holder, "ROLLBACK")
        locked.withLock { $0 = false }
        #expect(await eventuallyAsync(8) { journal.original(of: child + "/memory.oom_control") == "0" })
        #expect(await eventuallyAsync(3) { (try? readFile(child + "/memory.oom_control").contains("oom_kill_disable 1")) == true })
        await engine.detach(name: policy.name)
        for path in [memcg.path, child] {
            #expect(try readFile(path + "/memory.oom_control").contains("oom_kill_disable 0"), "\(path)")
        }
        #expect(journal.entries().isEmpty)
    }

    @Test func validatorRefusesProtectedAndOutOfScopeVictims() throws {
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-engine")
        let inside = try workload(["hold", "--rss", "4M", "--cgroup", memcg.path])
        let outside = try workload(["hold", "--rss", "4M"])
        let mount = try #require(MemoryCgroupMount.detect())
        let validator = OOMVictimValidator(daemonPID: getpid(), protect: ProtectList(), mount: mount)
        #expect(throws: Never.self) { try validator.validate(pid: inside.pid, within: memcg.path).get() }
        #expect(validator.validate(pid: outside.pid, within: memcg.path).failureReason?.contains("outside the scope") == true)
        #expect(validator.validate(pid: 1, within: nil).failureReason?.contains("pid 1") == true)
        #expect(validator.validate(pid: getpid(), within: nil).failureReason?.contains("daemon") == true)
        #expect(validator.validate(pid: 2, within: nil).failureReason?.contains("kernel thread") == true)
        let dead = try workload(["hold", "--rss", "1M"])
        let deadPID = dead.pid
        kill(deadPID, SIGKILL)
        _ = eventually(5) { isGone(deadPID) }
        _ = consume dead
        #expect(validator.validate(pid: deadPID, within: nil).failureReason?.contains("not alive") == true)

        let byComm = OOMVictimValidator(daemonPID: getpid(), protect: ProtectList(comms: ["mmpolicy-worklo"]), mount: mount)
        #expect(byComm.validate(pid: inside.pid, within: nil).failureReason?.contains("protect.comms") == true)
        let relative = String(memcg.path.dropFirst(mount.path.count + 1))
        let byCgroup = OOMVictimValidator(daemonPID: getpid(), protect: ProtectList(cgroups: [relative]), mount: mount)
        #expect(byCgroup.validate(pid: inside.pid, within: nil).failureReason?.contains("protected cgroup") == true)
        #expect(throws: Never.self) { try byCgroup.validate(pid: outside.pid, within: nil).get() }
    }
}

extension Result where Failure == OOMRejection {
    var failureReason: String? { if case .failure(let rejection) = self { return rejection.reason } else { return nil } }
}

/// Runs `sql` on `queue`'s connection outside a transaction (so a BEGIN stays open).
func execute(_ queue: DatabaseQueue, _ sql: String) throws {
    try queue.writeWithoutTransaction { try $0.execute(sql: sql) }
}

func eventuallyAsync(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}
