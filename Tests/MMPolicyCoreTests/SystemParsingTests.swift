import MMPolicyCore
import SystemPackage
import MMPolicyTestSupport
import Testing

/// The /proc and cgroup text parsers, on text copied from a Linux 6.18
/// machine and from the kernel's cgroup-v2 documentation, plus broken input.
@Suite struct SystemParsingTests {
    // MARK: /proc/PID/stat, statm, oom_score_adj

    static let catStat = "7255 (cat) R 7253 7253 31351 0 -1 4194304 102 0 0 0 0 0 0 0 20 0 1 0 845894 3133440 414 18446744073709551615 94305946669056 94305946688937 140735420092304 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94305946704944 94305946706560 94306855268352 140735420099279 140735420099299 140735420099299 140735420100587 0\n"
    static let kthreaddStat = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 10 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

    @Test func parsesARealStatLine() throws {
        let snapshot = try ProcessSnapshot(stat: Self.catStat, statm: "765 424 396 5 0 123 0\n", oomScoreAdj: "0\n", pageSize: 4096)
        #expect(snapshot.pid == 7255)
        #expect(snapshot.comm == "cat")
        #expect(snapshot.state == "R")
        #expect(snapshot.ppid == 7253)
        #expect(snapshot.flags == 4_194_304)
        #expect(!snapshot.isKernelThread)
        #expect(snapshot.startTime == 845_894)
        #expect(snapshot.rssBytes == 424 * 4096)
        #expect(snapshot.oomScoreAdj == 0)
        #expect(snapshot.processor == 0)
    }

    @Test func readsTheCPUTheTaskLastRanOn() throws {
        // Field 39 (processor) follows field 38 (exit_signal, 17 = SIGCHLD).
        let stat = Self.catStat.replacingFirst(" 17 0 0 0 0 0 0 ", with: " 17 1 0 0 0 0 0 ")
        let snapshot = try ProcessSnapshot(stat: stat, statm: "765 424 396 5 0 123 0\n", oomScoreAdj: "0\n")
        #expect(snapshot.processor == 1)
        let short = try ProcessSnapshot(stat: "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5\n", statm: "1 1\n", oomScoreAdj: "0\n")
        #expect(short.processor == nil)
    }

    @Test func recognisesAKernelThread() throws {
        let snapshot = try ProcessSnapshot(stat: Self.kthreaddStat, statm: "0 0 0 0 0 0 0\n", oomScoreAdj: "0\n")
        #expect(snapshot.isKernelThread)  // 2129984 has PF_KTHREAD (0x200000)
        #expect(snapshot.comm == "kthreadd")
        #expect(snapshot.ppid == 0)
        #expect(snapshot.startTime == 10)
        #expect(snapshot.rssBytes == 0)
    }

    @Test func commWithSpacesAndParenthesesIsTakenUpToTheLastParenthesis() throws {
        // A process can name itself "a) S 1 (b" with prctl(PR_SET_NAME).
        let stat = Self.catStat.replacingFirst("(cat)", with: "(a) S 1 (b)")
        let snapshot = try ProcessSnapshot(stat: stat, statm: "765 424 396 5 0 123 0\n", oomScoreAdj: "-1000\n")
        #expect(snapshot.comm == "a) S 1 (b")
        #expect(snapshot.state == "R")
        #expect(snapshot.ppid == 7253)
        #expect(snapshot.startTime == 845_894)
        #expect(snapshot.oomScoreAdj == -1000)
    }

    @Test func rejectsBrokenProcText() {
        let statm = "765 424 396 5 0 123 0\n"
        let cases: [(String, String, String)] = [
            ("", statm, "0"),
            ("7255 cat R 7253", statm, "0"),                                 // no parentheses
            ("7255 (cat) R 7253 7253 31351 0 -1 4194304 102", statm, "0"),    // truncated before starttime
            ("x (cat)" + Self.catStat.dropFirst(10), statm, "0"),              // pid not a number
            (Self.catStat, "765", "0"),                                       // statm without resident
            (Self.catStat, statm, "zero"),                                    // oom_score_adj not a number
        ]
        for (stat, statm, adj) in cases {
            #expect(throws: SystemCallError.self, "stat '\(stat.prefix(30))' statm '\(statm)' adj '\(adj)'") {
                try ProcessSnapshot(stat: stat, statm: statm, oomScoreAdj: adj)
            }
        }
        do {
            _ = try ProcessSnapshot(stat: "garbage", statm: statm, oomScoreAdj: "0")
        } catch {
            #expect(error.errno == .badMessage)
            #expect(error.description.hasPrefix("parse on /proc/PID/stat failed: Bad message (errno 74). Expected"))
        }
    }

    // MARK: /proc/PID/cgroup

    static let v1Cgroup = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/a53cdc52774358774c6197a95840db8d\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"

    @Test func parsesCgroupMembershipAndFindsTheMemoryCgroup() throws {
        let memberships = try CgroupMembership.parse(Self.v1Cgroup)
        #expect(memberships.count == 10)
        #expect(memberships[0] == CgroupMembership(hierarchyID: 9, controllers: ["name=systemd"], path: "/"))
        #expect(memberships[9] == CgroupMembership(hierarchyID: 0, controllers: [], path: "/"))
        let v1 = MemoryCgroupMount(version: .v1, path: "/sys/fs/cgroup/memory")
        #expect(ProcessSnapshot.memoryCgroupPath(in: memberships, mount: v1) == "/sys/fs/cgroup/memory/process_api/a53cdc52774358774c6197a95840db8d")
        let v2 = MemoryCgroupMount(version: .v2, path: "/sys/fs/cgroup/")
        #expect(ProcessSnapshot.memoryCgroupPath(in: memberships, mount: v2) == "/sys/fs/cgroup")

        let pureV2 = try CgroupMembership.parse("0::/system.slice/sshd.service\n")
        #expect(ProcessSnapshot.memoryCgroupPath(in: pureV2, mount: v2) == "/sys/fs/cgroup/system.slice/sshd.service")
        #expect(ProcessSnapshot.memoryCgroupPath(in: pureV2, mount: v1) == nil, "no v1 memory hierarchy line")
        // Combined controllers and a path containing ':'.
        let combined = try CgroupMembership.parse("3:cpu,cpuacct,memory:/a:b/c\n")
        #expect(combined[0].controllers == ["cpu", "cpuacct", "memory"])
        #expect(ProcessSnapshot.memoryCgroupPath(in: combined, mount: v1) == "/sys/fs/cgroup/memory/a:b/c")
    }

    @Test func rejectsBrokenCgroupLines() {
        for text in ["memory:/a\n", "x:memory:/a\n", "4:memory:relative\n"] {
            #expect(throws: SystemCallError.self, "'\(text)'") { try CgroupMembership.parse(text) }
        }
    }

    // MARK: /proc/meminfo

    static let meminfo = """
MemTotal:       24684084 kB
MemFree:        22230680 kB
MemAvailable:   24061364 kB
Buffers:           42984 kB
Cached:          1931484 kB
SwapCached:            0 kB
Active:           713912 kB
Inactive:        1445664 kB
Active(anon):       1000 kB
Inactive(anon):   192964 kB
Active(file):     712912 kB
Inactive(file):  1252700 kB
Unevictable:       14708 kB
Mlocked:           13712 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:             34244 kB
Writeback:             4 kB
AnonPages:        199804 kB
Mapped:           269692 kB
Shmem:              8872 kB
KReclaimable:     158936 kB
Slab:             189168 kB
SReclaimable:     158936 kB
SUnreclaim:        30232 kB
KernelStack:        2104 kB
PageTables:         5772 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342040 kB
Committed_AS:     785508 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14876 kB
VmallocChunk:          0 kB
Percpu:              688 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:     75776 kB
FilePmdMapped:      6144 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       26624 kB
DirectMap2M:     2070528 kB
DirectMap1G:    25165824 kB

"""

    @Test func parsesRealMeminfo() throws {
        let info = try MemInfo(parsing: Self.meminfo)
        let total = try #require(Self.meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") })
        let kib = try #require(UInt64(total.split(separator: " ")[1]))
        #expect(info.memTotal == kib * 1024)
        #expect(info.memAvailable > 0 && info.memAvailable <= info.memTotal)
        #expect(info.memFree <= info.memAvailable)
        #expect(info.swapTotal == 0 && info.swapFree == 0)
        #expect(info.availablePercent > 0 && info.availablePercent <= 100)
        #expect(info.swapFreePercent == 0, "earlyoom's convention: no swap counts as 0% free")
    }

    @Test func computesPercentagesWithSwap() throws {
        let text = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\nSwapTotal:       2000 kB\nSwapFree:        500 kB\nHugePages_Total:       0\n"
        let info = try MemInfo(parsing: text)
        #expect(info.availablePercent == 25)
        #expect(info.swapFreePercent == 25)
        #expect(info.swapTotal == 2000 * 1024)
    }

    @Test func rejectsMeminfoWithoutMemAvailable() {
        let old = "MemTotal:       1000 kB\nMemFree:         100 kB\nSwapTotal:       0 kB\nSwapFree:        0 kB\n"
        do {
            _ = try MemInfo(parsing: old)
            Issue.record("parsed meminfo without MemAvailable")
        } catch {
            #expect(error.description.contains("MemAvailable"))
        }
        #expect(throws: SystemCallError.self) { try MemInfo(parsing: "") }
        #expect(throws: SystemCallError.self) { try MemInfo(parsing: "MemTotal: 0 kB\nMemFree: 0 kB\nMemAvailable: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n") }
    }

    // MARK: PSI

    @Test func parsesPressure() throws {
        let idle = try PressureStall(parsing: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        #expect(idle.some == PressureStall.Stall(avg10: 0, avg60: 0, avg300: 0, total: 0))
        let busy = try PressureStall(parsing: "some avg10=12.34 avg60=5.60 avg300=1.02 total=98765432\nfull avg10=3.50 avg60=1.00 avg300=0.25 total=1234567\n")
        #expect(busy.some.avg10 == 12.34)
        #expect(busy.some.avg300 == 1.02)
        #expect(busy.some.total == 98_765_432)
        #expect(busy.full.avg60 == 1.0)
        #expect(busy.full.total == 1_234_567)
    }

    @Test func rejectsBrokenPressure() {
        let cases = [
            "",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",                    // no full line
            "some avg10=x avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "some avg10=0.00 avg60=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",  // no avg300
        ]
        for text in cases {
            #expect(throws: SystemCallError.self, "'\(text)'") { try PressureStall(parsing: text) }
        }
    }

    // MARK: memory.oom_control (v1), memory.events (v2)

    @Test func parsesOOMControl() throws {
        let idle = try MemcgV1.OOMControl(parsing: "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        #expect(idle == MemcgV1.OOMControl(oomKillDisable: false, underOOM: false, oomKillCount: 0))
        let stuck = try MemcgV1.OOMControl(parsing: "oom_kill_disable 1\nunder_oom 1\noom_kill 7\n")
        #expect(stuck == MemcgV1.OOMControl(oomKillDisable: true, underOOM: true, oomKillCount: 7))
        for broken in ["", "oom_kill_disable 0\nunder_oom 0\n", "oom_kill_disable x\nunder_oom 0\noom_kill 0\n"] {
            #expect(throws: SystemCallError.self, "'\(broken)'") { try MemcgV1.OOMControl(parsing: broken) }
        }
    }

    @Test func parsesMemoryEventsAndToleratesUnknownKeys() throws {
        // Documentation/admin-guide/cgroup-v2.rst keys, plus sock_throttled (Linux 6.x).
        let events = try MemcgV2.MemoryEvents(parsing: "low 1\nhigh 22\nmax 333\noom 4\noom_kill 5\noom_group_kill 6\nsock_throttled 0\n")
        #expect(events == MemcgV2.MemoryEvents(low: 1, high: 22, max: 333, oom: 4, oomKill: 5, oomGroupKill: 6))
        let older = try MemcgV2.MemoryEvents(parsing: "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
        #expect(older.oomGroupKill == nil)
        for broken in ["", "low 0\nhigh 0\nmax 0\noom 0\n", "low 0\nhigh zero\nmax 0\noom 0\noom_kill 0\n", "low\n"] {
            #expect(throws: SystemCallError.self, "'\(broken)'") { try MemcgV2.MemoryEvents(parsing: broken) }
        }
    }

    // MARK: Errors

    @Test func systemCallErrorDescriptionNamesEverything() {
        let error = SystemCallError(operation: "pidfd_open", target: "process 42", errno: .noSuchProcess,
                                    fix: "Process 42 no longer exists.")
        #expect(error.description == "pidfd_open on process 42 failed: No such process (errno 3). Process 42 no longer exists.")
        #expect(error.meansGone)
        let bare = SystemCallError(operation: "write", target: "/x", errno: .permissionDenied)
        #expect(bare.description == "write on /x failed: Permission denied (errno 13).")
        #expect(!bare.meansGone)
    }
}
