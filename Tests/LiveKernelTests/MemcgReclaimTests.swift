import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// MemcgV1LimitReclaim on real cgroup v1 memcgs: the stepped, journaled
/// lower-and-raise of memory.limit_in_bytes reclaims, puts the limit back
/// exactly, and refuses what could push a group into an OOM. Runs with the
/// tiering suites (make test's last phase): it turns a zram device of its
/// own on.
@Suite(.serialized)
struct MemcgReclaimTests {
    static let mib: UInt64 = 1 << 20

    func limitText(_ memcg: TemporaryMemcg) throws -> String { try readFile(memcg.path + "/memory.limit_in_bytes") }

    @Test func anonymousMemoryGoesToSwapAndTheLimitComesBackExactly() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 1024 * Self.mib)
        let held = try workload(["hold", "--rss", "128M", "--cgroup", memcg.path])
        let original = try limitText(memcg)
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let limitPath = memcg.path + "/memory.limit_in_bytes"
        let cacheBefore = try memcgCacheBytes(memcg.path)

        var seenWhileLowered: [(limit: String, journaled: String?)] = []
        let reclaim = MemcgV1LimitReclaim(path: memcg.path) { _ in
            seenWhileLowered.append(((try? readFile(limitPath)) ?? "?", journal.original(of: limitPath)))
        }
        let outcome = try reclaim.reclaim(64 * Self.mib, journal: journal, owner: "test")
        let swapped = try ProcessMemoryStatus.read(pid: held.pid).swapBytes
        let cacheDropped = cacheBefore - min(cacheBefore, try memcgCacheBytes(memcg.path))
        print("memcg-reclaim: \(outcome.reclaimedBytes >> 20) MiB of 64 MiB asked in \(outcome.steps.count) steps, \(outcome.durationNs / 1_000_000) ms (stop: \(outcome.stop.rawValue)); the process has \(swapped >> 20) MiB in swap, the group's page cache fell by \(cacheDropped >> 20) MiB")

        #expect(outcome.steps.count == 4 && outcome.stop == .reachedTarget, "\(outcome)")
        #expect(outcome.reclaimedBytes >= 56 * Self.mib && outcome.reclaimedBytes <= 80 * Self.mib, "about what was asked: \(outcome)")
        // The group's page cache (the workload's own binary, if it was the
        // first to read it) goes first: it is cheaper to reclaim.
        #expect(swapped + cacheDropped >= 48 * Self.mib, "the anonymous memory went to swap, or page cache was dropped")
        #expect(outcome.oomKills == 0 && ProcessSnapshot.isAlive(pid: held.pid))
        #expect(seenWhileLowered.count == outcome.steps.count)
        for (index, seen) in seenWhileLowered.enumerated() {
            #expect(seen.limit.trimmedLine == String(outcome.steps[index]), "the step's limit was in force")
            #expect(seen.journaled == original.trimmedLine, "the original stayed journaled while lowered")
        }
        #expect(try limitText(memcg) == original, "the limit reads back exactly the original")
        #expect(journal.entries().isEmpty, "and its journal entry is forgotten")
        _ = zram
    }

    @Test func aGroupWhoseKernelOOMKillerIsOffIsRefusedAndNotTouched() throws {
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 256 * Self.mib)
        let held = try workload(["hold", "--rss", "32M", "--cgroup", memcg.path])
        try writeFile(memcg.path + "/memory.oom_control", "1")
        defer { try? writeFile(memcg.path + "/memory.oom_control", "0") }
        let original = try limitText(memcg)
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        do {
            _ = try MemcgV1LimitReclaim(path: memcg.path).reclaim(16 * Self.mib, journal: journal, owner: "test")
            Issue.record("lowered the limit of a group whose kernel OOM killer is off")
        } catch {
            guard case .oomKillerDisabled = error.reason else { Issue.record("\(error)"); return }
            #expect(error.path == memcg.path + "/memory.oom_control")
        }
        #expect(try limitText(memcg) == original && journal.entries().isEmpty)
        _ = held
    }

    @Test func withSwappinessZeroAnonymousMemoryIsNotAskedForSoNothingOOMs() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 512 * Self.mib)
        try writeFile(memcg.path + "/memory.swappiness", "0")
        let held = try workload(["hold", "--rss", "96M", "--cgroup", memcg.path])
        let original = try limitText(memcg)
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let outcome = try MemcgV1LimitReclaim(path: memcg.path).reclaim(64 * Self.mib, journal: journal, owner: "test")
        print("memcg-reclaim: swappiness 0, 64 MiB asked of \(outcome.usageBeforeBytes >> 20) MiB used: floor \(outcome.floorBytes >> 20) MiB, \(outcome.steps.count) steps, stop \(outcome.stop.rawValue)")
        #expect(outcome.floorBytes + 64 * Self.mib > outcome.usageBeforeBytes, "the floor keeps the anonymous memory: \(outcome)")
        #expect(outcome.oomKills == 0 && ProcessSnapshot.isAlive(pid: held.pid), "nothing was OOM-killed")
        #expect(try ProcessMemoryStatus.read(pid: held.pid).swapBytes == 0)
        #expect(try limitText(memcg) == original && journal.entries().isEmpty)
        _ = zram
    }

    /// Journal storage whose every write fails, as a full or locked state database would.
    final class FailingStorage: KnobJournalStorage {
        struct Refused: Error {}
        func journalOriginal(path: String, original: String, owner: String) throws -> Bool { throw Refused() }
        func journalEntries(owner: String?) throws -> [KnobJournalEntry] { [] }
        func forgetJournal(path: String) throws {}
    }

    @Test func aLimitThatCannotBeJournaledIsNotLowered() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)  // so that there is something to reclaim
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 256 * Self.mib)
        let held = try workload(["hold", "--rss", "48M", "--cgroup", memcg.path])
        let original = try limitText(memcg)
        do {
            _ = try MemcgV1LimitReclaim(path: memcg.path).reclaim(16 * Self.mib, journal: KnobJournal(storage: FailingStorage()), owner: "test")
            Issue.record("lowered a limit it could not journal")
        } catch {
            guard case .journal = error.reason else { Issue.record("\(error)"); return }
        }
        #expect(try limitText(memcg) == original)
        #expect(try ProcessMemoryStatus.read(pid: held.pid).swapBytes == 0, "nothing was reclaimed")
        _ = zram
    }
}

/// The page cache charged to memcg `path` and its children (v1 memory.stat total_cache).
func memcgCacheBytes(_ path: String) throws -> UInt64 {
    let stat = try readFile(path + "/memory.stat")
    for line in stat.split(separator: "\n") where line.hasPrefix("total_cache ") {
        return UInt64(line.dropFirst("total_cache ".count)) ?? 0
    }
    return 0
}

extension String {
    /// The text without the spaces and newlines around it.
    var trimmedLine: String {
        String(drop { $0 == " " || $0 == "\n" }.reversed().drop { $0 == " " || $0 == "\n" }.reversed())
    }
}
