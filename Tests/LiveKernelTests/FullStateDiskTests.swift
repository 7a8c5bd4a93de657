#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A state directory that fills up (a 4 MiB tmpfs): a load or an unload the
/// daemon cannot save is refused with a clear error and the previous state
/// kept, so what `status` reports is what a restarted daemon brings back.
@Suite(.serialized)
struct FullStateDiskTests {
    /// The names `status --json` lists as loaded.
    func loadedNames(_ daemon: DaemonProcess) throws -> [String] {
        struct Status: Decodable { struct Policy: Decodable { var name: String }; var policies: [Policy] }
        let output = try daemon.cli(["status", "--json"]).output
        return try JSONDecoder().decode(Status.self, from: Data(output.utf8)).policies.map(\.name).sorted()
    }

    /// Writes a file in `directory` until the filesystem is full.
    func fill(_ directory: String) -> String {
        let path = directory + "/filler"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(fd) }
        let block = [UInt8](repeating: 0xAB, count: 64 * 1024)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        // What is left (less than a block) goes too.
        var byte: UInt8 = 0xAB
        while write(fd, &byte, 1) == 1 {}
        return path
    }

    @Test func aStateChangeThatCannotBeSavedIsRefusedAndNothingIsLost() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-full")
        let state = try scratch.makeDirectory("state")
        let mounted = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", state])
        try #require(mounted.status == 0, "mount a tmpfs: \(mounted.output)")
        defer { _ = try? runCommand("/bin/umount", ["-l", state]) }

        let daemon = try DaemonProcess(stateDirectory: state, scratch: scratch)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-full", limitBytes: 64 << 20)
        let first = try daemon.cli(["load", "oom_largest", "--scope", "system", "--mode", "observe"])
        #expect(first.status == 0, "\(first.output)")

        let filler = fill(state)
        let refused = try daemon.cli(["load", "oom_largest", "--name", "second", "--scope", memcg.path, "--mode", "observe"])
        #expect(refused.status != 0)
        // On cgroup v1 the memcg's knob journal entry is written first (its
        // kernel OOM killer is turned off in both modes), and fails first.
        let unsaved = refused.output.contains("was not loaded") && refused.output.contains("desired set")
        let unjournaled = refused.output.contains("knob journal could not be written") && refused.output.contains("disk is full")
        #expect((unsaved || unjournaled) && refused.output.contains(state), "\(refused.output)")
        #expect(!((try? readFile(memcg.path + "/memory.oom_control")) ?? "").contains("oom_kill_disable 1"),
                "the refused policy left the kernel killer on")
        let kept = try daemon.cli(["unload", "oom_largest"])
        #expect(kept.status != 0)
        #expect(kept.output.contains("was not unloaded") && kept.output.contains("desired set"), "\(kept.output)")
        #expect(try loadedNames(daemon) == ["oom_largest"], "status shows what is in force and saved")

        #expect(unlink(filler) == 0)
        let loaded = try daemon.cli(["load", "oom_largest", "--name", "second", "--scope", memcg.path, "--mode", "observe"])
        #expect(loaded.status == 0, "\(loaded.output)")
        #expect(try loadedNames(daemon) == ["oom_largest", "second"])

        // A restart brings back exactly what status showed.
        #expect(daemon.stop() == 0)
        try daemon.start()
        #expect(try loadedNames(daemon) == ["oom_largest", "second"], "daemon log:\n\(daemon.log)")
        #expect(daemon.stop() == 0)
        withExtendedLifetime(memcg) {}
    }
}
