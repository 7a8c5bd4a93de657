import MMPolicyCore
import Testing

@testable import MMPolicyDaemon

/// The daemon-guardian link's messages, and the guardian's view of which
/// held memcg must be handed to the kernel.
struct GuardianMessageTests {
    @Test(arguments: [
        GuardianMessage.armed, .cleanExit,
        .hold(root: "/sys/fs/cgroup/memory/job", boundNs: 1_000_000_000),
        .hold(root: "/sys/fs/cgroup/memory/a job with spaces", boundNs: 5),
        .release(root: "/sys/fs/cgroup/memory/job"),
        .onset(memcg: "/sys/fs/cgroup/memory/job/batch", onsetNs: 123_456_789),
        .handed(OOMHoldBoard.Handover(memcg: "/sys/fs/cgroup/memory/job", onsetNs: 1, handedNs: 1_000_000_001, killCount: 7)),
    ])
    func everyMessageReadsBackAsSent(_ message: GuardianMessage) throws {
        let text = try #require(message.text)
        #expect(text.utf8.count <= GuardianMessage.maximumSize)
        #expect(GuardianMessage(text: text) == message)
    }

    @Test func aPathWithANewlineIsNeverSent() {
        #expect(GuardianMessage.hold(root: "/sys/fs/cgroup/memory/bad\nname", boundNs: 1).text == nil)
        #expect(GuardianMessage.release(root: "").text == nil)
    }

    @Test(arguments: ["", "hold", "hold x /a", "hold 1", "handed 1 2 /a", "onset -1 /a", "bogus 1 /a", "armed "])
    func garbageIsNoMessage(_ text: String) {
        #expect(GuardianMessage(text: text) == nil)
    }

    @Test func theNearestHeldRootSetsTheBound() {
        var watch = GuardianOOMWatch()
        watch.apply(.hold(root: "/m/job", boundNs: 1_000))
        watch.apply(.hold(root: "/m/job/batch", boundNs: 5_000))
        #expect(watch.bound(of: "/m/job") == 1_000)
        #expect(watch.bound(of: "/m/job/web") == 1_000)
        #expect(watch.bound(of: "/m/job/batch/x") == 5_000)
        #expect(watch.bound(of: "/m/jobs") == nil, "a sibling whose name extends the root's is not below it")
        watch.apply(.release(root: "/m/job/batch"))
        #expect(watch.bound(of: "/m/job/batch/x") == 1_000)
    }

    @Test func theKillerThatMustRunIsTheTopmostMemcgUnderOOM() {
        let open = ["/m/job": MemcgV1.OOMControl(oomKillDisable: true, underOOM: true, oomKillCount: 0),
                    "/m/job/batch": MemcgV1.OOMControl(oomKillDisable: true, underOOM: true, oomKillCount: 0)]
        #expect(!GuardianOOMWatch.hasAncestor(of: "/m/job", in: open))
        #expect(GuardianOOMWatch.hasAncestor(of: "/m/job/batch", in: open))
    }

    @Test func aWatchWithNothingHeldSleepsUntilTold() {
        var watch = GuardianOOMWatch()
        #expect(watch.timeoutMs(now: 0) == -1)
        watch.apply(.hold(root: "/m/job", boundNs: 1))
        #expect(watch.timeoutMs(now: 10) == 0, "a new hold is scanned at once")
    }
}
