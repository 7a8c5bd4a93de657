import ArgumentParser
import MMPolicyCore
import MMPolicyKinds

/// `mmpolicy list`: the policies a directory offers.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the available policies: name, kind, description.")

    @OptionGroup var location: PolicyLocationOptions
    @Flag(help: "Print JSON.") var json = false

    struct Entry: Encodable {
        var name: String
        var kind: String
        var description: String
        var object: String
        var scope: String
        var mode: String
        var manifest: String
    }

    struct Output: Encodable {
        var directory: String
        var policies: [Entry]
        var errors: [String]
    }

    func run() throws {
        let dir = try location.directory()
        let catalog = PolicyCatalog.load(directory: dir, kinds: .builtIn)
        let entries = catalog.manifests.map {
            Entry(name: $0.name, kind: $0.kind.rawValue, description: $0.description, object: $0.object,
                  scope: $0.scope.description, mode: $0.mode.rawValue, manifest: $0.path)
        }
        if json {
            try printJSON(Output(directory: dir, policies: entries, errors: catalog.errors.map(\.description)))
        } else {
            print(table(["NAME", "KIND", "DESCRIPTION"], entries.map { [$0.name, $0.kind, $0.description] }, indent: ""))
            for error in catalog.errors { printError("warning: \(error)") }
        }
        if !catalog.errors.isEmpty { throw ExitCode(1) }
    }
}

func printError(_ text: String) {
    var stderr = StandardError()
    print(text, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}

#if canImport(Glibc)
import Glibc
#endif
