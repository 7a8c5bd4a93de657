import BPFKit
import MMPolicyCore
import MMPolicyTestSupport
import Testing

@testable import MMPolicyWatchdog

/// Where the watchdog's fixture captures live.
enum WatchdogFixture {
    static let directory = TestPaths.repository + "/Tests/Fixtures/watchdog"
    static func path(_ name: String) -> String { directory + "/" + name }
    static func text(_ name: String) throws -> String { try readFile(path(name)) }
}

/// The signal readers on captured and hand-written kernel text, and on
/// broken text.
@Suite struct SignalParsingTests {
    // MARK: /proc/vmstat

    @Test func vmstatOfThisMachineSumsTheAnonAndFilePartition() throws {
        let counters = try VMStatCounters(parsing: WatchdogFixture.text("vmstat-6.18.txt"))
        #expect(counters.refaultsAnon == 349_996)
        #expect(counters.refaultsFile == 466_307)
        #expect(counters.activations == 0 + 158_208)
        // pgscan_kswapd/direct/... are all 0 in the capture: the reclaim was a
        // memcg's, which only the anon/file partition counts.
        #expect(counters.scanned == 717_148 + 267_956)
        #expect(counters.stolen == 358_275 + 246_195)
        #expect(counters.globalScanned == 0 && counters.globalStolen == 0)
        #expect(counters.stolenAnon == 358_275)
        #expect(counters.swapIns == 349_996)
        #expect(counters.swapOuts == 358_275)
        #expect(counters.oomKills == 0)
    }

    @Test func vmstatNeverAddsBothPartitions() throws {
        let text = """
            workingset_refault_anon 10
            workingset_refault_file 20
            workingset_activate_anon 3
            workingset_activate_file 4
            pgsteal_kswapd 100
            pgsteal_direct 50
            pgsteal_khugepaged 1
            pgsteal_proactive 2
            pgscan_kswapd 400
            pgscan_direct 100
            pgscan_khugepaged 5
            pgscan_proactive 6
            pgscan_direct_throttle 99
            pgscan_anon 200
            pgscan_file 320
            pgsteal_anon 60
            pgsteal_file 100
            pswpin 7
            pswpout 8
            oom_kill 2

            """
        let counters = try VMStatCounters(parsing: text)
        #expect(counters.scanned == 520, "anon + file, not also kswapd + direct (or the throttle count)")
        #expect(counters.stolen == 160)
        #expect(counters.globalScanned == 511, "kswapd + direct + khugepaged + proactive, not the throttle count")
        #expect(counters.globalStolen == 153)
        #expect(counters.activations == 7)
        #expect(counters.oomKills == 2)
    }

    @Test func vmstatOfAnOldKernelFallsBackToTheReclaimerPartition() throws {
        // Before 5.9: one workingset_refault; before 5.8: no anon/file partition.
        let text = "workingset_refault 40\nworkingset_activate 9\npgsteal_kswapd 100\npgsteal_direct 50\npgscan_kswapd 300\npgscan_direct 100\npswpin 0\npswpout 0\n"
        let counters = try VMStatCounters(parsing: text)
        #expect(counters.refaultsFile == 40 && counters.refaultsAnon == 0)
        #expect(counters.activations == 9)
        #expect(counters.scanned == 400 && counters.stolen == 150)
        #expect(counters.globalScanned == 400 && counters.globalStolen == 150)
        #expect(counters.stolenAnon == nil)
        #expect(counters.oomKills == nil)
    }

    @Test func vmstatWithoutReclaimCountersIsAFormatErrorNamingTheFile() {
        for text in ["", "nr_free_pages 100\n", "workingset_refault_anon 1\nworkingset_refault_file 2\n", "pgsteal_kswapd 1\n"] {
            do {
                _ = try VMStatCounters(parsing: text, target: "/fixture/vmstat")
                Issue.record("parsed '\(text)'")
            } catch {
                #expect(error.errno == .badMessage)
                #expect(error.target == "/fixture/vmstat")
            }
        }
    }

    @Test func vmstatReadNamesAMissingFile() {
        do {
            _ = try VMStatCounters.read("/nonexistent/vmstat")
            Issue.record("read a missing file")
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.description.contains("/nonexistent/vmstat"))
        }
    }

    // MARK: PSI (MMPolicyCore's PressureStall, on this machine's text)

    @Test func systemPressureOfThisMachineParses() throws {
        let stall = try PressureStall(parsing: WatchdogFixture.text("pressure-memory-6.18.txt"))
        #expect(stall.some.total == 4_106_781)
        #expect(stall.full.total == 4_091_849)
        #expect(stall.some.avg300 == 0.50)
    }

    // MARK: memcg memory.stat

    @Test func v1MemoryStatOfALiveMemcgHasRefaultsAndItsLimitButNoReclaimCounters() throws {
        let stat = try MemcgStat(parsingV1: WatchdogFixture.text("memcg-v1-memory.stat-6.18.txt"))
        #expect(stat.refaultsFile == 40_960, "the hierarchical total_ counter")
        #expect(stat.refaultsAnon == 0)
        #expect(stat.hierarchicalLimitBytes == 64 << 20)
        #expect(stat.scanned == nil && stat.stolen == nil && stat.activations == nil, "v1 has no pgscan, pgsteal or activate")
        #expect(stat.swapIns == nil && stat.swapOuts == nil)
    }

    @Test func v1MemoryStatPrefersTheHierarchicalTotals() throws {
        let text = """
            workingset_refault_anon 1
            workingset_refault_file 2
            hierarchical_memory_limit 9223372036854771712
            total_workingset_refault_anon 100
            total_workingset_refault_file 200
            """
        let stat = try MemcgStat(parsingV1: text)
        #expect(stat.refaultsAnon == 100 && stat.refaultsFile == 200)
        #expect(stat.hierarchicalLimitBytes == nil, "PAGE_COUNTER_MAX means unlimited")
    }

    @Test func v1MemoryStatWithoutRefaultsIsRejected() {
        // A v2 file, or v1 before Linux 5.9.
        #expect(throws: SystemCallError.self) { try MemcgStat(parsingV1: "cache 0\nrss 0\ntotal_cache 0\n") }
        #expect(throws: SystemCallError.self) { try MemcgStat(parsingV1: WatchdogFixture.text("memcg-v2-memory.stat.txt")) }
    }

    @Test func v2MemoryStatHasReclaimAndSwapCounters() throws {
        let stat = try MemcgStat(parsingV2: WatchdogFixture.text("memcg-v2-memory.stat.txt"))
        #expect(stat.refaultsAnon == 20_931 && stat.refaultsFile == 118_264)
        #expect(stat.activations == 4_087 + 31_000)
        #expect(stat.scanned == 612_345, "pgscan, not pgscan + pgscan_direct")
        #expect(stat.stolen == 401_234)
        #expect(stat.swapIns == 20_931 && stat.swapOuts == 250_112)
        #expect(stat.hierarchicalLimitBytes == nil)
    }

    @Test func v2MemoryStatWithoutPgscanIsRejected() throws {
        #expect(throws: SystemCallError.self) { try MemcgStat(parsingV2: "workingset_refault_anon 1\nworkingset_refault_file 1\npgsteal 1\n") }
        #expect(throws: SystemCallError.self) { try MemcgStat(parsingV2: WatchdogFixture.text("memcg-v1-memory.stat-6.18.txt")) }
    }

    // MARK: memcg directories

    @Test func v1CountersReadEveryFileOfAFixtureGroup() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-wd-v1")
        let dir = try scratch.makeDirectory("job")
        try scratch.write("job/memory.stat", WatchdogFixture.text("memcg-v1-memory.stat-6.18.txt"))
        try scratch.write("job/memory.failcnt", "634\n")
        try scratch.write("job/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        try scratch.write("job/memory.usage_in_bytes", "1234\n")
        let counters = try MemcgCounters.read(MemcgV1(path: dir))
        #expect(counters.version == .v1)
        #expect(counters.failcnt == 634)
        #expect(counters.oomKills == 3)
        #expect(counters.limitBytes == 64 << 20)
        #expect(counters.usageBytes == nil, "usage is read only when there is no limit")
        #expect(counters.sizeBytes == 64 << 20)
        #expect(counters.pressure == nil && counters.events == nil)
    }

    @Test func v1CountersOfAnUnlimitedGroupUseItsUsage() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-wd-v1")
        let dir = try scratch.makeDirectory("job")
        try scratch.write("job/memory.stat", "hierarchical_memory_limit 9223372036854771712\ntotal_workingset_refault_anon 0\ntotal_workingset_refault_file 5\n")
        try scratch.write("job/memory.failcnt", "0\n")
        try scratch.write("job/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        try scratch.write("job/memory.usage_in_bytes", "73728000\n")
        let counters = try MemcgCounters.read(MemcgV1(path: dir))
        #expect(counters.limitBytes == nil)
        #expect(counters.sizeBytes == 73_728_000)
    }

    @Test func v2CountersReadEveryFileOfAFixtureGroup() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-wd-v2")
        let dir = try v2FixtureGroup(scratch)
        let counters = try MemcgCounters.read(MemcgV2(path: dir))
        #expect(counters.version == .v2)
        #expect(counters.stat.scanned == 612_345)
        #expect(counters.events?.max == 8_123)
        #expect(counters.oomKills == 1)
        #expect(counters.pressure?.some.total == 8_423_117)
        #expect(counters.pressure?.full.avg10 == 9.75)
        #expect(counters.limitBytes == 1 << 30)
        #expect(counters.failcnt == nil)
    }

    @Test func aMissingGroupFileIsAnErrorNamingIt() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-wd-v1")
        let dir = try scratch.makeDirectory("job")
        try scratch.write("job/memory.stat", WatchdogFixture.text("memcg-v1-memory.stat-6.18.txt"))
        do {
            _ = try MemcgCounters.read(MemcgV1(path: dir))
            Issue.record("read a group without memory.failcnt")
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.target == dir + "/memory.failcnt")
        }
        do {
            _ = try MemcgV2(path: scratch.path + "/gone").memoryStat()
            Issue.record("read a missing group")
        } catch {
            #expect(error.target == scratch.path + "/gone/memory.stat")
            #expect(error.meansGone)
        }
    }

    // MARK: map memory

    @Test func mapMemoryIsTheMemlockLineOfItsFdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t1024\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t90432\nmap_id:\t42\nfrozen:\t0\n"
        #expect(BPFMap.chargedBytes(fdinfo: fdinfo) == 90_432)
        #expect(BPFMap.chargedBytes(fdinfo: "pos:\t0\nflags:\t02\n") == nil)
        #expect(BPFMap.chargedBytes(fd: -1) == nil)
    }
}

/// A cgroup v2 directory with the hand-written fixtures and a 1 GiB memory.max.
func v2FixtureGroup(_ scratch: ScratchDirectory, name: String = "app") throws -> String {
    let dir = try scratch.makeDirectory(name)
    try scratch.write(name + "/memory.stat", WatchdogFixture.text("memcg-v2-memory.stat.txt"))
    try scratch.write(name + "/memory.events", WatchdogFixture.text("memcg-v2-memory.events.txt"))
    try scratch.write(name + "/memory.pressure", WatchdogFixture.text("memcg-v2-memory.pressure.txt"))
    try scratch.write(name + "/memory.max", "1073741824\n")
    try scratch.write(name + "/memory.current", "1086627840\n")
    return dir
}
