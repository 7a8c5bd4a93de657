import MMPolicyCore
import Testing

/// Which events observed in the system the daemon records: those of a
/// governed scope, and the rest only when asked (`--record-ungoverned-kills`).
@Suite struct EventScopeTests {
    @Test(arguments: [
        // (governing policy, records ungoverned events, recorded)
        ("batch_oom" as String?, false, true),
        ("batch_oom", true, true),
        (nil, false, false),
        (nil, true, true),
    ])
    func aKernelKillIsRecordedWhenGovernedOrAskedFor(governing: String?, recordsUngoverned: Bool, recorded: Bool) {
        #expect(KindEnvironment.shouldRecord(governedBy: governing, recordsUngovernedEvents: recordsUngoverned) == recorded)
    }

    @Test func theEnvironmentDefaultsToGovernedOnly() {
        let environment = KindEnvironment(
            journal: KnobJournal(storage: InMemoryKnobJournalStorage()), mount: nil, objectSearchPath: ObjectSearchPath(directories: []),
            daemonPID: 1, record: { _ in }, log: { _ in })
        #expect(!environment.recordsUngovernedEvents)
        #expect(!environment.shouldRecord(governedBy: nil))
        #expect(environment.shouldRecord(governedBy: "p"))
    }
}
