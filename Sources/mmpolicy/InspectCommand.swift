import ArgumentParser
import BPFKit
import MMPolicyCore

/// `mmpolicy inspect`: what a policy object contains, without loading it.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a policy's ops table, programs, maps and parameters (nothing is loaded).")

    @Argument(help: "A policy name (see `mmpolicy list`) or a path to a .bpf.o file.") var target: String
    @OptionGroup var location: PolicyLocationOptions
    @Flag(help: "Print JSON.") var json = false

    struct Output: Encodable {
        struct Callback: Encodable { var slot: String; var program: String }
        struct Program: Encodable { var name: String; var type: String; var section: String; var instructions: Int }
        struct Map: Encodable { var name: String; var type: String; var keySize: Int; var valueSize: Int; var maxEntries: Int; var bytes: Int }
        struct Param: Encodable { var name: String; var type: String; var `default`: String?; var manifest: String? }
        var name: String
        var kind: String
        var abiVersion: UInt32
        var object: String
        var description: String?
        var opsTable: String
        var opsName: String
        var callbacks: [Callback]
        var programs: [Program]
        var maps: [Map]
        var params: [Param]
    }

    func run() throws {
        let policy = try location.open(target)
        let object = policy.object
        let manifestParams = policy.manifest?.params ?? [:]
        let output = Output(
            name: policy.name, kind: policy.ops.kind.rawValue, abiVersion: policy.ops.abiVersion,
            object: policy.objectPath, description: policy.manifest?.description,
            opsTable: policy.ops.variable, opsName: policy.ops.name,
            callbacks: policy.ops.callbacks.map { .init(slot: $0.slot, program: $0.program) },
            programs: object.programs.map { .init(name: $0.name, type: $0.type.description, section: $0.sectionName, instructions: $0.instructionCount) },
            maps: object.maps.map { .init(name: $0.name, type: $0.type, keySize: $0.keySize, valueSize: $0.valueSize, maxEntries: $0.maxEntries, bytes: $0.memoryBytes) },
            params: object.parameters.map { variable in
                // The object's default is what the BTF-initialised .rodata held before the manifest.
                .init(name: variable.name, type: variable.type.description,
                      default: policy.defaultValue(of: variable)?.description,
                      manifest: manifestParams[variable.name]?.description)
            })
        if json { try printJSON(output); return }
        print("policy \(output.name): kind \(output.kind), ABI \(output.abiVersion)")
        print("object: \(output.object)")
        if let description = output.description { print("description: \(description)") }
        print("ops table '\(output.opsTable)' (name \"\(output.opsName)\"):")
        print(table(["SLOT", "PROGRAM"], output.callbacks.map { [$0.slot, $0.program] }))
        print("programs:")
        print(table(["NAME", "TYPE", "SECTION", "INSNS"], output.programs.map { [$0.name, $0.type, $0.section, String($0.instructions)] }))
        print("maps:")
        print(table(["NAME", "TYPE", "KEY", "VALUE", "ENTRIES", "BYTES"],
                    output.maps.map { [$0.name, $0.type, String($0.keySize), String($0.valueSize), String($0.maxEntries), String($0.bytes)] }))
        print("params:")
        if output.params.isEmpty { print("  (none)") } else {
            print(table(["NAME", "TYPE", "DEFAULT", "MANIFEST"], output.params.map { [$0.name, $0.type, $0.default ?? "-", $0.manifest ?? "-"] }))
        }
    }
}
