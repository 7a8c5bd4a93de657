import ArgumentParser
import Logging
import MMPolicyDaemon

/// `mmpolicy guardian` (hidden): the daemon's dead-man's switch, started by
/// `mmpolicy daemon` with its end of a socket pair as descriptor 3. It waits
/// for the daemon to end and, unless the daemon shut down cleanly, restores
/// every journaled knob (see `Guardian` and docs/guardian.md).
struct GuardianCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guardian",
        abstract: "The daemon's guardian; started by `mmpolicy daemon`, not by hand.",
        shouldDisplay: false)

    @Option(name: .customLong("state-dir"), help: "The daemon's state directory.") var stateDirectory: String
    @Option(name: .customLong("daemon-pid"), help: "The daemon this guardian watches.") var daemonPID: Int32

    func run() throws {
        // Before anything else allocates: the logger only formats once something happens.
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let status = Guardian.run(stateDirectory: stateDirectory, daemonPID: daemonPID, logger: Logger(label: "mmpolicy.guardian"))
        if status != 0 { throw ExitCode(status) }
    }
}
