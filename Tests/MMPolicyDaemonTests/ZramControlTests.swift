import MMPolicyCore
import MMPolicyTestSupport
import Testing
@testable import MMPolicyDaemon

/// The daemon's rules for an operator's zram that need no kernel: when a
/// teardown is refused, and how the journal hands an entry over.
struct ZramControlTests {
    static let zram1 = ZramDevice(number: 1)

    @Test func theLastSwapAreaStaysWhilePoliciesRelyOnIt() {
        let refusal = ZramControl.lastSwapRefusal(device: Self.zram1, active: ["/dev/zram1"], relying: ["tier_cold"])
        #expect(refusal?.reason == .lastSwapOfPolicies(["tier_cold"]) && refusal?.path == "/dev/zram1")
        #expect(ZramControl.lastSwapRefusal(device: Self.zram1, active: ["/dev/zram1"], relying: []) == nil, "nobody relies on it")
        #expect(ZramControl.lastSwapRefusal(device: Self.zram1, active: ["/dev/zram1", "/swapfile"], relying: ["tier_cold"]) == nil,
                "other swap remains")
        #expect(ZramControl.lastSwapRefusal(device: Self.zram1, active: ["/swapfile"], relying: ["tier_cold"]) == nil,
                "not active: swapping it off takes nothing away")
    }

    @Test func onlyZramEntriesAreRecords() {
        let record = ZramSwapRecord(device: Self.zram1, hotAdded: false, uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427", sizeBytes: 1 << 30,
                                    algorithm: "lz4", priority: 100)
        let entries = [
            KnobJournalEntry(path: "/sys/fs/cgroup/memory/a/memory.oom_control", original: "0", owner: "oom_largest", recordedNs: 1),
            KnobJournalEntry(path: record.journalKey, original: record.journalText, owner: KnobJournal.operatorOwner, recordedNs: 2),
        ]
        let records = ZramControl.records(entries)
        #expect(records.count == 1 && records[0].record == record && records[0].entry.isOperatorRequest)
        let status = ZramControl.status(record, owner: KnobJournal.operatorOwner, active: true, setUpNs: 2)
        #expect(status.device == "/dev/zram1" && !status.hotAdded && status.owner == "operator-request" && status.outcome == nil)
    }

    @Test func theStoreHandsAJournalEntryOverInOneStep() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        #expect(try store.journalOriginal(path: "zram-swap:/dev/zram1", original: "hot_added=1", owner: "a"))
        let before = try #require(try store.journalEntries().first)
        try store.reassignJournal(path: "zram-swap:/dev/zram1", owner: "b")
        try store.reassignJournal(path: "zram-swap:/dev/zram9", owner: "b")  // unknown: ignored
        let after = try store.journalEntries()
        #expect(after.count == 1)
        #expect(after.first?.owner == "b" && after.first?.original == before.original && after.first?.recordedNs == before.recordedNs,
                "owner changed, original and time kept")
    }
}
