import Testing
@testable import MMPolicyDaemon

@Test func defaultsAreTheDocumentedPaths() {
    #expect(DaemonDefaults.socketPath == "/run/mmpolicy/mmpolicy.sock")
    #expect(DaemonDefaults.stateDirectory == "/var/lib/mmpolicy")
}
