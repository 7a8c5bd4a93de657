import MMPolicyCore
import MMPolicyTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Descriptor-owning types and the cgroup v2 / tree code, on real temporary
/// files: a fixture cgroupfs (a directory with cgroup v2's file names and
/// text) stands in for the v2 memory controller this machine does not have.
@Suite struct SystemFixtureTests {
    /// A cgroup v2 directory as the kernel lays it out, with realistic contents.
    func fixtureCgroup(_ scratch: ScratchDirectory, _ name: String = "app") throws -> String {
        let dir = try scratch.makeDirectory(name)
        let files: [String: String] = [
            "memory.events": "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\nsock_throttled 0\n",
            "memory.events.local": "low 0\nhigh 2\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\nsock_throttled 0\n",
            "memory.current": "70254592\n",
            "memory.max": "134217728\n",
            "memory.high": "max\n",
            "memory.pressure": "some avg10=1.25 avg60=0.40 avg300=0.08 total=1834567\nfull avg10=0.50 avg60=0.10 avg300=0.02 total=734512\n",
            "memory.oom.group": "0\n",
            "cgroup.kill": "",
            "cgroup.procs": "412\n977\n",
        ]
        for (file, text) in files { try scratch.write(name + "/" + file, text) }
        return dir
    }

    @Test func memcgV2ReadsAFixtureCgroup() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-sys-v2")
        let memcg = MemcgV2(path: try fixtureCgroup(scratch))
        #expect(try memcg.events() == MemcgV2.MemoryEvents(low: 0, high: 12, max: 3, oom: 1, oomKill: 1, oomGroupKill: 0))
        #expect(try memcg.events(local: true).high == 2)
        #expect(try memcg.current() == 70_254_592)
        #expect(try memcg.max() == 134_217_728)
        #expect(try memcg.high() == nil, "'max' means no limit")
        let pressure = try memcg.pressure()
        #expect(pressure.some.avg10 == 1.25)
        #expect(pressure.full.total == 734_512)
        #expect(try memcg.procs() == [412, 977])

        // cgroupfs takes the write whole; a fixture file keeps the old tail ("1\n" over "0\n").
        try memcg.setOOMGroup(true)
        #expect(try readFile(memcg.path + "/memory.oom.group").first == "1")
        try memcg.kill()
        #expect(try readFile(memcg.path + "/cgroup.kill") == "1")
    }

    @Test func memcgV2ErrorsNameTheFileAndTheFix() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-sys-v2")
        let dir = try fixtureCgroup(scratch)
        try scratch.write("app/memory.max", "lots\n")
        let memcg = MemcgV2(path: dir)
        do {
            _ = try memcg.max()
            Issue.record("parsed 'lots' as a limit")
        } catch {
            #expect(error.target == dir + "/memory.max")
            #expect(error.errno == .badMessage)
        }
        let gone = MemcgV2(path: scratch.path + "/removed")
        do {
            _ = try gone.events()
            Issue.record("read events of a missing cgroup")
        } catch {
            #expect(error.meansGone)
            #expect(error.description.contains(scratch.path + "/removed/memory.events"))
            #expect(error.description.contains("The cgroup is gone"))
        }
        do {
            try gone.kill()
            Issue.record("killed a missing cgroup")
        } catch {
            #expect(error.description.contains("cgroup.kill needs Linux 5.14"))
        }
    }

    @Test func fileModificationWatchSeesWritesToAFile() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-sys-inotify")
        let file = try scratch.write("memory.events", "oom 0\n")
        let watch = try FileModificationWatch(path: file)
        #expect(!watch.wait(timeoutMs: 0))
        #expect(watch.drain() == 0)

        try writeFile(file, "oom 1\n")
        #expect(watch.wait(timeoutMs: 1000))
        #expect(watch.drain() >= 1)
        #expect(watch.drain() == 0, "drain consumed every event")
        #expect(!watch.wait(timeoutMs: 0))

        // Reading does not count as a modification.
        _ = try readFile(file)
        #expect(!watch.wait(timeoutMs: 50))

        #expect(throws: SystemCallError.self) { try FileModificationWatch(path: scratch.path + "/absent") }
    }

    @Test func eventFDCountsAndResets() throws {
        let event = try EventFD()
        #expect(event.read() == nil)
        event.signal()
        event.signal(4)
        #expect(event.read() == 5)
        #expect(event.read() == nil)
        #expect(fcntl(event.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(event.rawValue, F_GETFL) & O_NONBLOCK != 0)
    }

    @Test func descriptorsAreClosedWhenTheirOwnerIsReleased() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-sys-fd")
        let file = try scratch.write("f", "x")
        var info = stat()
        #expect(stat(file, &info) == 0)
        // Tests run in parallel and may reuse a closed number at once, so the
        // check is on what fdinfo says about the number, not on the number:
        // the eventfd's unique id and the inode the inotify watch is on.
        func fdinfo(_ fd: Int32) -> String { (try? readFile("/proc/self/fdinfo/\(fd)")) ?? "" }
        var eventFD: Int32 = -1, eventID = "", watchFD: Int32 = -1
        let watchedInode = "ino:" + String(UInt64(info.st_ino), radix: 16) + " "
        do {
            let event = try EventFD()
            let watch = try FileModificationWatch(path: file)
            (eventFD, watchFD) = (event.rawValue, watch.rawValue)
            eventID = try #require(fdinfo(eventFD).split(separator: "\n").first { $0.hasPrefix("eventfd-id:") }).description
            #expect(fdinfo(watchFD).contains(watchedInode))
            withExtendedLifetime((event, watch)) {}
        }
        #expect(!fdinfo(eventFD).split(separator: "\n").contains { $0 == eventID }, "eventfd closed")
        #expect(!fdinfo(watchFD).contains(watchedInode), "inotify descriptor closed")
    }

    @Test func cgroupTreeWalksParentsFirstWithoutFilesOrSymlinks() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-sys-tree")
        let root = try scratch.makeDirectory("root")
        _ = try scratch.makeDirectory("root/b/inner")
        _ = try scratch.makeDirectory("root/a/x/y")
        _ = try scratch.makeDirectory("outside")
        try scratch.write("root/cgroup.procs", "10\n11\n")
        try scratch.write("root/a/cgroup.procs", "20\n")
        try scratch.write("root/a/x/y/cgroup.procs", "30\n11\n")
        try scratch.write("root/b/cgroup.procs", "")
        try scratch.write("outside/cgroup.procs", "99\n")
        #expect(symlink(scratch.path + "/outside", root + "/link") == 0)

        let all = CgroupTree.descendants(of: root)
        #expect(all == [root, root + "/a", root + "/b", root + "/a/x", root + "/b/inner", root + "/a/x/y"])
        for (index, dir) in all.enumerated() {
            let parent = String(dir[..<dir.lastIndex(of: "/")!])
            if let parentIndex = all.firstIndex(of: parent) { #expect(parentIndex < index, "\(parent) before \(dir)") }
        }
        #expect(CgroupTree.descendants(of: root, includingSelf: false).first == root + "/a")
        #expect(CgroupTree.descendants(of: root + "/cgroup.procs").isEmpty)
        #expect(CgroupTree.descendants(of: scratch.path + "/absent").isEmpty)

        #expect(CgroupTree.processes(under: root) == [10, 11, 20, 30])
        #expect(CgroupTree.processes(under: root + "/a") == [20, 30, 11])

        var info = stat()
        #expect(lstat(root + "/a/x", &info) == 0)
        #expect(CgroupTree.directory(withID: UInt64(info.st_ino), under: root) == root + "/a/x")
        #expect(lstat(scratch.path + "/outside", &info) == 0)
        #expect(CgroupTree.directory(withID: UInt64(info.st_ino), under: root) == nil, "symlinked directories are not followed")
    }
}
