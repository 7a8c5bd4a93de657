#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `mmpolicy tier setup-zram | teardown-zram | status` and `[tiering]
/// setup_zram`, end to end: the CLI and the daemon as separate processes,
/// real zram devices and swap.
///
/// Every device a test makes, or learns mmpolicy made, is torn down when the
/// test ends, whatever happened (``ZramLeftovers``: only while it still
/// holds the swap area mmpolicy wrote, so nobody else's device is touched).
/// mmpolicy's devices are its own (hot_add), never /dev/zram0. Other suites,
/// here or in other checkouts, turn their own swap on and off meanwhile:
/// the tests that need a machine without swap wait for a moment without
/// any, and try again when another's swap appears between that moment and
/// the load. Runs in the last phase of `make test`, alone (the Makefile says
/// why).
@Suite(.serialized, .enabled(if: ZramDevice.canAddDevices, "this kernel cannot add zram devices (/sys/class/zram-control/hot_add)"))
struct ZramSetupTests {
    static let mib: UInt64 = 1 << 20
    static let page = ProcessSnapshot.pageSize

    /// tier_cold, quick, under `name`, with `[tiering] setup_zram` when `zram` is given.
    static func manifest(name: String, zram: String? = nil) -> String {
        TieringEndToEndTests.fastCold(mode: "observe")
            .replacingFirst("name = \"tier_fast\"", with: "name = \"\(name)\"")
            .replacingFirst("[tiering]\n", with: "[tiering]\n" + (zram.map { "setup_zram = \"\($0)\"\n" } ?? ""))
    }

    static func daemon() throws -> DaemonProcess {
        try DaemonProcess(policies: ["tier_plain": manifest(name: "tier_plain"), "tier_z": manifest(name: "tier_z", zram: "64M")])
    }

    // MARK: an operator's zram

    @Test func setupZramMakesSwapATieringPolicyLoadsAndTeardownRemovesTheDevice() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let daemon = try Self.daemon()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-zram", limitBytes: 256 * Self.mib)

        let before = SwapSnapshot()
        let setup = try daemon.cli(["tier", "setup-zram", "64M", "--device", "new", "--json"])
        #expect(setup.status == 0, "\(setup.output)\n\(daemon.log)")
        let zram = try leftovers.add(JSONDecoder().decode(ZramSetupStatus.self, from: Data(setup.output.utf8)))
        #expect(zram.hotAdded && zram.owner == KnobJournal.operatorOwner && zram.algorithm == "lz4" && zram.priority == 100)
        let area = try #require(SwapSnapshot().areas[zram.device], "\(zram.device) is swap now")
        #expect(area.sizeBytes == 64 * Self.mib - Self.page, "the area is SIZE less its header page")
        #expect(area.priority == 100)
        SwapSnapshot().expectTotalGrew(by: area.sizeBytes, since: before, ignoring: zram.device)
        #expect(try ZramDevice(naming: zram.device)!.algorithms().selected == "lz4")

        let tier = try tierStatus(daemon)
        #expect(tier.zram.map(\.device) == [zram.device] && tier.zram.first?.active == true)
        #expect(tier.areas.first { $0.path == zram.device }?.setUpFor == KnobJournal.operatorOwner)
        #expect(try daemon.cli(["tier", "status"]).output.contains("the operator (setup-zram)"))

        let load = try daemon.cli(["load", "tier_plain", "--scope", memcg.path])
        #expect(load.status == 0, "a tiering policy loads on the zram: \(load.output)")
        if SlowTier.current().devices.map(\.path) == [zram.device] {
            let refused = try daemon.cli(["tier", "teardown-zram", zram.device])
            #expect(refused.status == 1 && refused.output.contains("is the last active swap area and tiering policy 'tier_plain' relies on it"),
                    "\(refused.output)")
            #expect(SwapSnapshot().areas[zram.device] != nil, "refused: still swap")
        } else {
            print("zram-setup: another suite's swap is on, so the last-swap refusal was not tried this run")
        }
        #expect(try daemon.cli(["unload", "tier_plain"]).status == 0)

        let teardown = try operatorTeardown(daemon, [])
        #expect(teardown.status == 0 && teardown.output.contains("tore down \(zram.device): swapped off and removed"), "\(teardown.output)")
        #expect(SwapSnapshot().areas[zram.device] == nil, "no longer swap")
        #expect(!ZramDevice(naming: zram.device)!.exists, "the device mmpolicy added is removed")
        #expect(try tierStatus(daemon).zram.isEmpty, "and forgotten")
        let events = recordedEvents(daemon) { $0.contains("set up zram swap \(zram.device)") && $0.contains("tore down zram swap \(zram.device)") }
        #expect(events.contains("set up zram swap \(zram.device)") && events.contains("tore down zram swap \(zram.device)"), "\(events)")
    }

    @Test func anExistingFreeDeviceIsSetUpAndLeftAsItWasFound() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let own = try AddedZramDevice()
        let daemon = try Self.daemon()
        let original = try own.device.algorithms()

        let setup = try daemon.cli(["tier", "setup-zram", "32M", "--device", own.device.path, "--algorithm", "lzo", "--priority", "5", "--json"])
        #expect(setup.status == 0, "\(setup.output)")
        let zram = try leftovers.add(JSONDecoder().decode(ZramSetupStatus.self, from: Data(setup.output.utf8)))
        #expect(zram.device == own.device.path && !zram.hotAdded && zram.algorithm == "lzo" && zram.priority == 5)
        #expect(SwapSnapshot().areas[own.device.path]?.priority == 5)
        #expect(try own.device.algorithms().selected == "lzo" && own.device.diskSize() == 32 * Self.mib)

        let teardown = try operatorTeardown(daemon, [own.device.path])
        #expect(teardown.status == 0 && teardown.output.contains("reset (it existed before)"), "\(teardown.output)")
        #expect(own.device.exists, "a device mmpolicy did not add stays")
        #expect(SwapSnapshot().areas[own.device.path] == nil)
        #expect(try own.device.diskSize() == 0 && own.device.algorithms() == original, "as it was found: no size, the default algorithm")
    }

    @Test func devicesMMPolicyDidNotSetUpAreRefusedAndLeftAlone() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let theirs = try ZramSwap(sizeBytes: 32 * Self.mib, ownDevice: true)
        let daemon = try Self.daemon()
        let size = try ZramDevice(naming: theirs.device)!.diskSize()

        let teardown = try daemon.cli(["tier", "teardown-zram", theirs.device])
        #expect(teardown.status == 1, "\(teardown.output)")
        #expect(teardown.output.contains("Error: \(theirs.device) was not set up by mmpolicy (it has set up none), so mmpolicy will not touch it"),
                "\(teardown.output)")
        let none = try daemon.cli(["tier", "teardown-zram"])
        #expect(none.status == 1 && none.output.contains("mmpolicy has set up no zram device to tear down"), "\(none.output)")
        let busy = try daemon.cli(["tier", "setup-zram", "32M", "--device", theirs.device])
        #expect(busy.status == 1 && busy.output.contains("\(theirs.device) is busy: it is an active swap area already"), "\(busy.output)")
        let sizeAfter = try ZramDevice(naming: theirs.device)!.diskSize()
        #expect(SwapSnapshot().areas[theirs.device] != nil && sizeAfter == size, "their swap is as it was")

        let algorithm = try daemon.cli(["tier", "setup-zram", "32M", "--algorithm", "nope"])
        #expect(algorithm.status == 1 && algorithm.output.contains("'nope' is not available on this kernel") && algorithm.output.contains("lz4"),
                "\(algorithm.output)")
        let huge = try daemon.cli(["tier", "setup-zram", "64T"])
        #expect(huge.status == 1 && huge.output.contains("is more than this machine's memory"), "\(huge.output)")
        let garbage = try daemon.cli(["tier", "setup-zram", "lots"])
        #expect(garbage.status == 1 && garbage.output.contains("zram size 'lots' is not a size"), "\(garbage.output)")
        #expect(try tierStatus(daemon).zram.isEmpty, "nothing was set up, nothing journaled")
    }

    @Test func withoutADaemonTheTierCommandsSaySo() throws {
        let scratch = try ScratchDirectory()
        for command in [["tier", "status"], ["tier", "setup-zram", "64M"], ["tier", "teardown-zram", "/dev/zram1"]] {
            let result = try runCommand(TestPaths.product("mmpolicy"), command + ["--socket", scratch.path + "/none.sock"])
            #expect(result.status == 1, "\(command): \(result.output)")
            #expect(result.output.contains("the mmpolicy daemon is not running"), "\(command): \(result.output)")
        }
    }

    @Test func anOperatorsZramOutlivesTheDaemonAndARestartStillKnowsIt() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let daemon = try Self.daemon()
        let setup = try daemon.cli(["tier", "setup-zram", "32M", "--json"])
        #expect(setup.status == 0, "\(setup.output)")
        let zram = try leftovers.add(JSONDecoder().decode(ZramSetupStatus.self, from: Data(setup.output.utf8)))

        // Killed: the guardian restores every knob, and leaves the operator's zram.
        let guardian = try #require(daemon.guardians().first)
        daemon.stop(signal: SIGKILL)
        #expect(reap(guardian.pid, timeoutSeconds: 10) == 0, "the guardian is done, with nothing it could not restore")
        #expect(SwapSnapshot().areas[zram.device] != nil, "a kill leaves it on")
        try daemon.start()
        #expect(try tierStatus(daemon).zram.map(\.device) == [zram.device], "the restarted daemon knows it set it up")
        // Stopped cleanly: the same.
        #expect(daemon.stop() == 0)
        #expect(SwapSnapshot().areas[zram.device] != nil, "a clean stop leaves it on")
        try daemon.start()
        let teardown = try operatorTeardown(daemon, [zram.device])
        #expect(teardown.status == 0, "teardown works after restarts: \(teardown.output)")
        #expect(SwapSnapshot().areas[zram.device] == nil && !ZramDevice(naming: zram.device)!.exists)
    }

    // MARK: a policy's zram ([tiering] setup_zram)

    @Test func aPolicyWithSetupZramLoadsWithoutSwapAndItsZramGoesAtUnload() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let daemon = try Self.daemon()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-zram", limitBytes: 256 * Self.mib)
        let zram = try loadWithItsOwnZram(daemon, memcg: memcg, leftovers: leftovers)
        #expect(zram.owner == "tier_z" && zram.hotAdded && zram.sizeBytes == 64 * Self.mib)
        #expect(SwapSnapshot().areas[zram.device]?.sizeBytes == 64 * Self.mib - Self.page)
        #expect(try daemon.cli(["tier", "teardown-zram", zram.device]).output.contains("was set up for tiering policy 'tier_z'"),
                "an operator's teardown leaves a policy's zram alone")

        #expect(try daemon.cli(["unload", "tier_z"]).status == 0)
        if leftovers.holdsItsArea(zram) {
            try expectOthersPagesHeldIt(daemon, zram)
            try restartUntilGone(daemon, zram, leftovers)
        } else {
            let events = recordedEvents(daemon, ["--policy", "tier_z"]) { $0.contains("tore down its zram swap \(zram.device)") }
            #expect(events.contains("tore down its zram swap \(zram.device)"), "\(events)")
        }
        #expect(SwapSnapshot().areas[zram.device] == nil && !ZramDevice(naming: zram.device)!.exists, "its zram goes with it")
        #expect(try tierStatus(daemon).zram.isEmpty)
    }

    @Test func aKilledDaemonsPolicyZramGoesWithItsGuardianAndComesBackWithTheReload() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let daemon = try Self.daemon()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-zram", limitBytes: 256 * Self.mib)
        let zram = try loadWithItsOwnZram(daemon, memcg: memcg, leftovers: leftovers)

        let guardian = try #require(daemon.guardians().first)
        daemon.stop(signal: SIGKILL)
        let exit = reap(guardian.pid, timeoutSeconds: 10)
        if leftovers.holdsItsArea(zram) {
            #expect(exit == 1, "the guardian says it could not restore everything")
            try expectOthersPagesHeldIt(daemon, zram, daemonRunning: false)
        } else {
            #expect(exit == 0, "the guardian tore the policy's zram down, and restored everything")
        }
        try expectReloadedWithItsOwnZram(daemon, replacing: zram, leftovers: leftovers)
    }

    @Test func aPolicyZramLeftByADaemonKilledWithItsGuardianGoesAtTheNextStart() throws {
        let leftovers = ZramLeftovers()
        defer { leftovers.cleanUp() }
        let daemon = try Self.daemon()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-zram", limitBytes: 256 * Self.mib)
        let zram = try loadWithItsOwnZram(daemon, memcg: memcg, leftovers: leftovers)

        let guardians = daemon.guardians()
        try #require(guardians.count == 1)
        for guardian in guardians { kill(guardian.pid, SIGSTOP) }
        daemon.stop(signal: SIGKILL)
        for guardian in guardians {
            kill(guardian.pid, SIGKILL)
            _ = reap(guardian.pid, timeoutSeconds: 5)
        }
        #expect(leftovers.holdsItsArea(zram) && SwapSnapshot().areas[zram.device] != nil, "nobody restored it yet")
        if try expectReloadedWithItsOwnZram(daemon, replacing: zram, leftovers: leftovers) {
            let events = recordedEvents(daemon) { $0.contains("zram-swap:\(zram.device)=hot_added=1 uuid=\(zram.uuid)") }
            #expect(events.contains("zram-swap:\(zram.device)=hot_added=1 uuid=\(zram.uuid)"), "the start's restore names the old device: \(events)")
        }
    }

    @Test func withoutSwapAndWithoutTheKeyALoadIsRefusedNamingTheFixes() throws {
        let daemon = try Self.daemon()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-zram", limitBytes: 256 * Self.mib)
        for attempt in 1...5 {
            guard eventually(300, { SlowTier.current().devices.isEmpty }) else {
                throw ZramTestError("swap stayed on for 300 s (\(SlowTier.current().devices.map(\.path))): another process's; the test needs a moment without any")
            }
            let load = try daemon.cli(["load", "tier_plain", "--scope", memcg.path])
            if load.status == 0 {
                // Another's swap came on between the wait and the load.
                print("zram-setup: attempt \(attempt): another suite's swap came on before the load")
                #expect(try daemon.cli(["unload", "tier_plain"]).status == 0)
                continue
            }
            #expect(load.output.contains("no swap device is active"), "\(load.output)")
            for fix in ["`mmpolicy tier setup-zram 4G`", "setup_zram = \"4G\"", "swapon"] {
                #expect(load.output.contains(fix), "the refusal names \(fix): \(load.output)")
            }
            #expect(try tierStatus(daemon).zram.isEmpty, "without the key nothing is set up")
            return
        }
        throw ZramTestError("five loads in a row met another suite's swap")
    }

    // MARK: helpers

    /// Loads tier_z (setup_zram = "64M") on a machine without swap; its zram.
    /// Other suites' swap comes and goes: it waits for a moment without
    /// any, and tries again when some appeared before the load.
    func loadWithItsOwnZram(_ daemon: DaemonProcess, memcg: TemporaryMemcg, leftovers: ZramLeftovers,
                            sourceLocation: SourceLocation = #_sourceLocation) throws -> ZramSetupStatus {
        for attempt in 1...5 {
            let started = monotonicMilliseconds()
            guard eventually(300, { SlowTier.current().devices.isEmpty }) else {
                throw ZramTestError("swap stayed on for 300 s (\(SlowTier.current().devices.map(\.path))): another process's; the test needs a moment without any")
            }
            if monotonicMilliseconds() - started > 1000 {
                print("zram-setup: waited \(monotonicMilliseconds() - started) ms for other suites' swap to go")
            }
            let load = try daemon.cli(["load", "tier_z", "--scope", memcg.path])
            try #require(load.status == 0, "\(load.output)\n\(daemon.log)", sourceLocation: sourceLocation)
            if let zram = try tierStatus(daemon).zram.first(where: { $0.owner == "tier_z" }) {
                leftovers.add(zram)
                #expect(SwapSnapshot().areas[zram.device] != nil, sourceLocation: sourceLocation)
                return zram
            }
            // Another's swap came on between the wait and the load: no zram was needed.
            #expect(!SlowTier.current().devices.isEmpty, "no zram, so some swap was on", sourceLocation: sourceLocation)
            print("zram-setup: attempt \(attempt): another suite's swap came on before the load")
            try #require(try daemon.cli(["unload", "tier_z"]).status == 0, sourceLocation: sourceLocation)
        }
        throw ZramTestError("five loads in a row met another suite's swap")
    }

    /// Restarts `daemon`: the desired set brings tier_z back, with a zram
    /// of its own again (a new swap area) unless other swap is on by then;
    /// the old one is gone either way. Unloads it at the end.
    /// Whether the first start's restore tore the old one down.
    @discardableResult
    func expectReloadedWithItsOwnZram(_ daemon: DaemonProcess, replacing old: ZramSetupStatus, leftovers: ZramLeftovers,
                                      sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        try daemon.start()
        let goneAtStart = !leftovers.holdsItsArea(old)
        if !goneAtStart {
            try expectOthersPagesHeldIt(daemon, old, sourceLocation: sourceLocation)
            try restartUntilGone(daemon, old, leftovers, sourceLocation: sourceLocation)
        }
        #expect(!leftovers.holdsItsArea(old), "the old zram is gone", sourceLocation: sourceLocation)
        let status = try daemon.cli(["status", "--json"]).output
        #expect(status.contains("\"name\" : \"tier_z\""), "the policy is loaded again: \(status)", sourceLocation: sourceLocation)
        if let zram = try tierStatus(daemon).zram.first(where: { $0.owner == "tier_z" }) {
            leftovers.add(zram)
            #expect(zram.uuid != old.uuid && leftovers.holdsItsArea(zram), "a new zram of its own", sourceLocation: sourceLocation)
            #expect(try daemon.cli(["unload", "tier_z"]).status == 0, sourceLocation: sourceLocation)
            #expect(!leftovers.holdsItsArea(zram), "and it goes at unload", sourceLocation: sourceLocation)
        } else {
            #expect(!SlowTier.current().devices.isEmpty, "reloaded without zram only because other swap is on", sourceLocation: sourceLocation)
            print("zram-setup: another suite's swap was on at the reload, so no new zram was set up")
            #expect(try daemon.cli(["unload", "tier_z"]).status == 0, sourceLocation: sourceLocation)
        }
        return goneAtStart
    }

    /// `mmpolicy tier teardown-zram ARGS`, again every second for up to
    /// 120 s while it fails with ENOMEM (``expectOthersPagesHeldIt``).
    func operatorTeardown(_ daemon: DaemonProcess, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let started = monotonicMilliseconds()
        while true {
            let result = try daemon.cli(["tier", "teardown-zram"] + arguments)
            guard result.status != 0, result.output.contains("Cannot allocate memory (errno 12)"),
                  monotonicMilliseconds() - started < 120_000 else { return result }
            #expect(result.output.contains("nothing was torn down") || result.output.contains("swapoff of"), "\(result.output)")
            print("zram-setup: teardown-zram met ENOMEM (other processes' pages on the device); trying again")
            sleep(1)
        }
    }

    /// A teardown of `zram` failed with ENOMEM, as the audit trail says. The
    /// tests put no pages on their devices (observe mode, no workload); but
    /// while one is the only swap, another suite's processes (in memory
    /// cgroups at their limit, here or in another checkout) swap into it,
    /// and swapoff cannot bring their pages back until those groups have
    /// room. The entry then stays journaled and the next restore tries
    /// again: what the tests check instead of "gone now".
    func expectOthersPagesHeldIt(_ daemon: DaemonProcess, _ zram: ZramSetupStatus, daemonRunning: Bool = true,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        print("zram-setup: \(zram.device) held other processes' pages (\(SwapSnapshot().areas[zram.device]?.usedBytes ?? 0) bytes used): swapoff met ENOMEM")
        guard daemonRunning else { return }
        let events = recordedEvents(daemon) { $0.contains("Cannot allocate memory (errno 12)") }
        #expect(events.contains("zram-swap:\(zram.device)") || events.contains("zram swap \(zram.device) could NOT be torn down"),
                "the failure is recorded", sourceLocation: sourceLocation)
        #expect(events.contains("Cannot allocate memory (errno 12)"), "and it is ENOMEM, nothing else: \(events)", sourceLocation: sourceLocation)
        #expect(try tierStatus(daemon).zram.contains { $0.uuid == zram.uuid }, "still journaled", sourceLocation: sourceLocation)
    }

    /// Stops and starts `daemon` until `zram` is torn down (each shutdown's
    /// and start's restore tries again), at most 120 s.
    func restartUntilGone(_ daemon: DaemonProcess, _ zram: ZramSetupStatus, _ leftovers: ZramLeftovers,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        let started = monotonicMilliseconds()
        while leftovers.holdsItsArea(zram) && monotonicMilliseconds() - started < 120_000 {
            sleep(1)
            #expect(daemon.stop() == 0, sourceLocation: sourceLocation)
            try daemon.start()
        }
        #expect(!leftovers.holdsItsArea(zram), "a later restore tore it down", sourceLocation: sourceLocation)
    }

    func tierStatus(_ daemon: DaemonProcess) throws -> TierStatus {
        let result = try daemon.cli(["tier", "status", "--json"])
        try #require(result.status == 0, "\(result.output)")
        return try JSONDecoder().decode(TierStatus.self, from: Data(result.output.utf8))
    }
}

/// Every zram swap area a test learned mmpolicy set up, torn down when the
/// test ends (``cleanUp()``) if still there: only a device that still holds
/// that swap area (its UUID) is touched.
final class ZramLeftovers {
    private(set) var records: [ZramSwapRecord] = []

    @discardableResult
    func add(_ status: ZramSetupStatus) -> ZramSetupStatus {
        if let device = ZramDevice(naming: status.device) {
            records.append(ZramSwapRecord(device: device, hotAdded: status.hotAdded, uuid: status.uuid, sizeBytes: status.sizeBytes,
                                          algorithm: status.algorithm, priority: status.priority))
        }
        return status
    }

    func holdsItsArea(_ status: ZramSetupStatus) -> Bool {
        records.first { $0.uuid == status.uuid }.map { (try? ZramSwapSetup.holdsArea(of: $0)) ?? false } ?? false
    }

    func cleanUp() {
        for record in records.reversed() {
            for _ in 0..<300 {
                // swapoff fails (ENOMEM) while the memory it would bring back cannot be charged; wait.
                if (try? ZramSwapSetup.tearDown(record)) != nil { break }
                usleep(100_000)
            }
        }
        records = []
    }

    deinit { cleanUp() }
}

/// A zram device a test adds for itself, not set up; removed when released.
final class AddedZramDevice {
    let device: ZramDevice

    init() throws {
        let text = try readFile(ZramDevice.control + "/hot_add")
        guard let number = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw ZramTestError("hot_add gave '\(text)'") }
        device = ZramDevice(number: number)
    }

    deinit {
        for _ in 0..<50 {
            if (try? writeFile(ZramDevice.control + "/hot_remove", String(device.number))) != nil || !device.exists { return }
            usleep(100_000)
        }
    }
}

/// The active swap areas by path, and SwapTotal, read one after the other.
struct SwapSnapshot {
    var areas: [String: SwapDevice] = [:]
    var swapTotal: UInt64 = 0

    init() {
        for device in SlowTier.current().devices { areas[device.path] = device }
        swapTotal = (try? MemInfo.read().swapTotal) ?? 0
    }

    /// SwapTotal grew by `bytes` since `before`, unless other areas than
    /// `ours` came or went meanwhile (other suites'), which it then says.
    func expectTotalGrew(by bytes: UInt64, since before: SwapSnapshot, ignoring ours: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
        let others = areas.filter { $0.key != ours }.mapValues(\.sizeBytes), othersBefore = before.areas.mapValues(\.sizeBytes)
        guard others == othersBefore else {
            print("zram-setup: other swap areas changed meanwhile (\(othersBefore.keys.sorted()) -> \(others.keys.sorted())): SwapTotal not compared")
            return
        }
        #expect(swapTotal == before.swapTotal + bytes, "SwapTotal \(before.swapTotal) -> \(swapTotal), expected + \(bytes)",
                sourceLocation: sourceLocation)
    }
}

struct ZramTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The daemon's events once `until` holds of them (at most 5 s), else the
/// last read: notes are queued for the state store's writer and land a
/// moment after the command that made them has answered.
func recordedEvents(_ daemon: DaemonProcess, _ arguments: [String] = [], until: (String) -> Bool) -> String {
    var events = ""
    _ = eventually(5) {
        events = (try? daemon.events(arguments)) ?? ""
        return until(events)
    }
    return events
}
