import ArgumentParser
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// `mmpolicy verify`: loads a policy into the kernel and unloads it, to show
/// it passes the verifier here (and how hard the verifier had to work).
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Load a policy into the kernel's verifier and unload it; print each program's processed-instruction count, or why it was refused.")

    @Argument(help: "A policy name (see `mmpolicy list`) or a path to a .bpf.o file.") var target: String
    @OptionGroup var location: PolicyLocationOptions
    @Option(name: .customLong("set"), help: "Override a parameter, key=value (repeatable).") var assignments: [ParameterAssignment] = []
    @Flag(help: "On a verifier rejection, print the end of the verifier log.") var log = false
    @Flag(help: "Print JSON.") var json = false

    struct Output: Encodable {
        struct Program: Encodable { var name: String; var type: String; var instructions: Int; var verifiedInstructions: Int; var jitedBytes: Int }
        struct Failure: Encodable { var program: String?; var message: String; var location: String?; var sourceLine: String?; var error: String; var log: [String] }
        var name: String
        var object: String
        var verified: Bool
        var loadMilliseconds: Double?
        var programs: [Program]
        var failure: Failure?
    }

    func run() throws {
        let policy = try location.open(target, overrides: assignments.map { ($0.key, $0.value) })
        let start = monotonicNanoseconds()
        do {
            try policy.load()
        } catch {
            let failure = Output.Failure(program: error.program, message: error.verifier?.message ?? error.reason,
                                         location: error.verifier?.location, sourceLine: error.verifier?.sourceLine,
                                         error: error.description, log: error.verifier?.logTail ?? error.libbpfMessages)
            if json {
                try printJSON(Output(name: policy.name, object: policy.objectPath, verified: false, loadMilliseconds: nil, programs: [], failure: failure))
            } else {
                printError("Error: \(error)")
                if log { printError("verifier log (end):\n" + failure.log.map { "  " + $0 }.joined(separator: "\n")) }
            }
            throw ExitCode(1)
        }
        let elapsed = Double(monotonicNanoseconds() - start) / 1e6
        let programs = try policy.object.programs.map { program in
            let info = try program.info()
            return Output.Program(name: program.name, type: program.type.description, instructions: program.instructionCount,
                                  verifiedInstructions: info.verifiedInstructions, jitedBytes: info.jitedBytes)
        }
        if json {
            try printJSON(Output(name: policy.name, object: policy.objectPath, verified: true, loadMilliseconds: elapsed, programs: programs, failure: nil))
        } else {
            print("\(policy.name): verified and loaded in \(decimalString(elapsed, places: 1)) ms, then unloaded (\(policy.objectPath))")
            print(table(["PROGRAM", "TYPE", "INSNS", "PROCESSED", "JITED"],
                        programs.map { [$0.name, $0.type, String($0.instructions), String($0.verifiedInstructions), "\($0.jitedBytes) B"] }))
        }
    }
}

