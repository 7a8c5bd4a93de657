import MMPolicyCore
import MMPolicyTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's system interfaces against the running kernel: /proc
/// snapshots of real processes, pidfds, PSI triggers, and a real cgroup v1
/// memcg OOM handled from user space.
@Suite(.serialized) struct SystemInterfaceTests {
    static let mib: UInt64 = 1 << 20



    static func v1Mount() throws -> MemoryCgroupMount {
        let mount = try #require(MemoryCgroupMount.detect(), "no memory cgroup controller")
        try #require(mount.version == .v1, "these tests exercise the cgroup v1 memory controller this machine runs")
        return mount
    }

    @Test func snapshotOfARealProcess() throws {
        let child = try workload(["hold", "--rss", "32M", "--oom-score-adj", "300"])
        let snapshot = try ProcessSnapshot.read(pid: child.pid)
        #expect(snapshot.pid == child.pid)
        #expect(snapshot.comm == String("mmpolicy-workload".prefix(15)), "comm is truncated to 15 bytes")
        #expect(snapshot.ppid == getpid())
        // Sleeping in pause(), or still on its way there just after "ready".
        #expect(snapshot.state == "S" || snapshot.state == "R", "state \(snapshot.state)")
        #expect(!snapshot.isKernelThread)
        #expect(snapshot.oomScoreAdj == 300)
        #expect(snapshot.rssBytes >= 32 * Self.mib, "rss \(snapshot.rssBytes)")
        #expect(snapshot.rssBytes < 128 * Self.mib, "rss \(snapshot.rssBytes)")
        #expect(snapshot.startTime > 0)
        #expect(ProcessSnapshot.isAlive(pid: child.pid))
        let all = ProcessSnapshot.allPIDs()
        #expect(all.contains(child.pid) && all.contains(getpid()))

        let kthreadd = try ProcessSnapshot.read(pid: 2)
        #expect(kthreadd.isKernelThread && kthreadd.comm == "kthreadd")
        #expect(try !ProcessSnapshot.read(pid: getpid()).isKernelThread)
        withExtendedLifetime(child) {}
    }

    @Test func memoryCgroupFollowsAMove() throws {
        let mount = try Self.v1Mount()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-sys-move")
        let child = try workload(["hold", "--rss", "4M"])
        let before = try #require(ProcessSnapshot.memoryCgroupPath(pid: child.pid, mount: mount))
        #expect(before != memcg.path)
        #expect(try ProcessSnapshot.cgroupPaths(pid: child.pid).contains { $0.hierarchyID == 0 })

        try writeFile(memcg.path + "/cgroup.procs", "\(child.pid)\n")
        #expect(ProcessSnapshot.memoryCgroupPath(pid: child.pid, mount: mount) == memcg.path)
        #expect(try MemcgV1(path: memcg.path).procs() == [child.pid])
        #expect(CgroupTree.processes(under: memcg.path) == [child.pid])
        var info = stat()
        #expect(stat(memcg.path, &info) == 0)
        #expect(CgroupTree.directory(withID: UInt64(info.st_ino), under: mount.path) == memcg.path)
        withExtendedLifetime((memcg, child)) {}
    }

    @Test func pidfdKillsReleasesAndSeesTheExit() throws {
        let child = try workload(["hold", "--rss", "64M"])
        let snapshot = try ProcessSnapshot.read(pid: child.pid)
        let pidfd = try PidFD(snapshot: snapshot)
        #expect(!pidfd.hasExited)
        #expect(!pidfd.waitForExit(timeoutMs: 20))
        do {
            try pidfd.releaseMemory()
            Issue.record("process_mrelease succeeded on a live process")
        } catch {
            #expect(error.errno == .invalidArgument)
            #expect(error.description.contains("send SIGKILL first"))
        }

        try pidfd.sendSignal(SIGKILL)
        let release = try pidfd.releaseMemory()
        #expect(release == .released || release == .alreadyExited)
        #expect(pidfd.waitForExit(timeoutMs: 2000))
        #expect(pidfd.hasExited)
        #expect(!ProcessSnapshot.isAlive(pid: child.pid), "a zombie is not alive")
        withExtendedLifetime(child) {}
    }

    @Test func pidfdOnAProcessThatIsGone() throws {
        var pid: Int32 = 0
        do {
            let child = try workload(["hold", "--rss", "1M"])
            pid = child.pid
        }  // killed and reaped here
        do {
            _ = try PidFD(pid: pid)
            Issue.record("pidfd_open succeeded on reaped pid \(pid)")
        } catch {
            #expect(error.errno == .noSuchProcess)
            #expect(error.description.contains("Process \(pid) no longer exists"))
        }
        do {
            _ = try ProcessSnapshot.read(pid: pid)
            Issue.record("read a snapshot of reaped pid \(pid)")
        } catch {
            #expect(error.meansGone)
            #expect(error.description.contains("no longer exists"))
        }
        #expect(!ProcessSnapshot.isAlive(pid: pid))
        #expect(ProcessSnapshot.memoryCgroupPath(pid: pid, mount: try Self.v1Mount()) == nil)

        // A snapshot whose start time no longer matches is refused.
        let live = try workload(["hold", "--rss", "1M"])
        var stale = try ProcessSnapshot.read(pid: live.pid)
        stale.startTime -= 1
        #expect(throws: SystemCallError.self) { try PidFD(snapshot: stale) }
        withExtendedLifetime(live) {}
    }

    @Test func psiTriggerArmsOnlyWithAWindowThisProcessMayUse() throws {
        let pressure = try PressureStall.read()
        #expect(pressure.some.total >= pressure.full.total)
        let info = try MemInfo.read()
        #expect(info.memTotal > 0 && info.memAvailable <= info.memTotal)

        let trigger = try PSITrigger(stallMicroseconds: 150_000, windowMicroseconds: 2_000_000)
        #expect(trigger.rawValue >= 0)
        _ = trigger.fired()  // either answer is right on an idle or a busy machine

        do {
            _ = try PSITrigger(stallMicroseconds: 150_000, windowMicroseconds: 1_000_000)
            Issue.record("a 1 s window was accepted without CAP_SYS_RESOURCE")
        } catch {
            #expect(error.errno == .invalidArgument)
            #expect(error.description.contains("multiple of 2 s"), "\(error)")
            #expect(error.description.contains("/proc/pressure/memory"))
        }
    }

    /// The v1 OOM path the daemon runs: the kernel killer is off, the eventfd
    /// fires, the task waits in the OOM, and a pidfd kill plus
    /// process_mrelease ends it.
    @Test func oomNotifierFiresAndAPidfdKillEndsTheOOM() throws {
        _ = try Self.v1Mount()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-sys-oom", limitBytes: 64 * Self.mib)
        let group = MemcgV1(path: memcg.path)
        // Restore the kernel killer even if an expectation below throws, so nothing stays hung.
        defer { try? group.setOOMKillDisable(false) }
        try group.setOOMKillDisable(true)
        #expect(try group.oomControl().oomKillDisable)
        #expect(try group.limitBytes() == 64 * Self.mib)
        let notifier = try OOMNotifier(memcg: memcg.path)
        #expect(notifier.consume() == 0)

        let hog = try workload(["grow", "--initial", "16M", "--rate", "256M", "--max", "512M", "--cgroup", memcg.path])
        let pidfd = try PidFD(pid: hog.pid)
        let start = monotonicMilliseconds()
        #expect(notifier.wait(timeoutMs: 10_000), "no OOM notification within 10 s")
        let notifiedAfter = monotonicMilliseconds() - start
        #expect(notifier.consume() >= 1)

        let control = try group.oomControl()
        #expect(control.underOOM)
        #expect(control.oomKillCount == 0, "the kernel killer is off")
        #expect(try group.failcnt() > 0)
        #expect(try group.usageBytes() <= 64 * Self.mib)
        // Still alive, waiting in the OOM for user space.
        usleep(200_000)
        #expect(!pidfd.hasExited)
        #expect(ProcessSnapshot.isAlive(pid: hog.pid))
        // Registering on a group that is already under OOM fires at once.
        let late = try OOMNotifier(memcg: memcg.path)
        #expect(late.wait(timeoutMs: 100))

        let killStart = monotonicMilliseconds()
        try pidfd.sendSignal(SIGKILL)
        // The dying victim races process_mrelease: if it has not yet passed
        // exit_mm() the kernel reaps its mm here (.released); if it has, the
        // kernel answers ESRCH (.alreadyExited), zombie or not. Both are right.
        // Anything else (EINVAL: not dying; EAGAIN) throws and fails the test.
        let release = try pidfd.releaseMemory()
        #expect(release == .released || release == .alreadyExited)
        let released = monotonicMilliseconds() - killStart
        // What matters: the OOM ends, and the victim is gone.
        let cleared = waitUntil(timeoutMs: 1000) { (try? group.oomControl().underOOM) == false }
        #expect(cleared != nil, "under_oom still set 1 s after the kill")
        #expect(pidfd.waitForExit(timeoutMs: 2000), "the victim has not exited 2 s after the kill")
        print("v1 OOM: notified \(notifiedAfter) ms after start; kill+mrelease \(released) ms (\(release == .released ? "released" : "already exited: ESRCH")); under_oom cleared after \(cleared.map(String.init) ?? "never") ms")
        withExtendedLifetime((memcg, hog, notifier, late)) {}
    }

    /// Which groups a v1 OOM notifies: the group that hit its limit and every
    /// group below it, but not its ancestors nor its siblings.
    @Test func oomNotificationReachesDescendantsOnly() throws {
        _ = try Self.v1Mount()
        let parent = try TemporaryMemcg(prefix: "mmpolicy-sys-tree", limitBytes: 64 * Self.mib)
        let leaf = try parent.child("leaf")
        let sibling = try parent.child("sibling")
        let parentGroup = MemcgV1(path: parent.path)
        defer { try? parentGroup.setOOMKillDisable(false) }
        try parentGroup.setOOMKillDisable(true)

        let onParent = try OOMNotifier(memcg: parent.path)
        let onLeaf = try OOMNotifier(memcg: leaf)
        let onSibling = try OOMNotifier(memcg: sibling)
        // The leaf's own limit is lower: the leaf OOMs first, on its own.
        try writeFile(leaf + "/memory.limit_in_bytes", String(32 * Self.mib))
        let leafGroup = MemcgV1(path: leaf)
        defer { try? leafGroup.setOOMKillDisable(false) }
        try leafGroup.setOOMKillDisable(true)

        let first = try workload(["grow", "--initial", "8M", "--rate", "256M", "--max", "512M", "--cgroup", leaf])
        #expect(onLeaf.wait(timeoutMs: 10_000), "the leaf's own OOM")
        usleep(100_000)
        #expect(!onParent.wait(timeoutMs: 0), "an ancestor is not notified of a descendant's OOM")
        #expect(!onSibling.wait(timeoutMs: 0))
        #expect(try leafGroup.oomControl().underOOM)
        #expect(try !parentGroup.oomControl().underOOM)
        let firstFD = try PidFD(pid: first.pid)
        try firstFD.sendSignal(SIGKILL)
        try firstFD.releaseMemory()
        #expect(firstFD.waitForExit(timeoutMs: 2000))
        _ = onLeaf.consume()

        // Now the parent's limit: lift the leaf's and grow in the leaf again.
        try writeFile(leaf + "/memory.limit_in_bytes", "-1")
        let second = try workload(["grow", "--initial", "8M", "--rate", "256M", "--max", "512M", "--cgroup", leaf])
        #expect(onParent.wait(timeoutMs: 10_000), "the parent's OOM")
        #expect(onLeaf.wait(timeoutMs: 1000), "a descendant is notified of its ancestor's OOM")
        #expect(onSibling.wait(timeoutMs: 1000), "so is every other descendant")
        #expect(try parentGroup.oomControl().underOOM)
        #expect(try leafGroup.oomControl().underOOM, "under_oom is set on the whole subtree")
        #expect(try MemcgV1(path: sibling).oomControl().underOOM)
        let secondFD = try PidFD(pid: second.pid)
        try secondFD.sendSignal(SIGKILL)
        try secondFD.releaseMemory()
        #expect(secondFD.waitForExit(timeoutMs: 2000))
        #expect(waitUntil(timeoutMs: 1000) { (try? parentGroup.oomControl().underOOM) == false } != nil)
        withExtendedLifetime((parent, first, second, onParent, onLeaf, onSibling)) {}
    }
}
