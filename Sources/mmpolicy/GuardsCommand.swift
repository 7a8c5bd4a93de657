import ArgumentParser
import MMPolicyCore
import MMPolicyKinds

/// `mmpolicy guards [--markdown]` (hidden): every `[guards]` key with its
/// range, figure, defaults per kind and reasons, from the guard table.
/// `--markdown` prints the table docs/watchdog.md holds, for regenerating it.
struct GuardsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guards",
        abstract: "Print every [guards] key with its range, figure, each kind's default and why.",
        shouldDisplay: false)

    @Flag(help: "Print the markdown table docs/watchdog.md holds (between its marker comments).") var markdown = false

    func run() throws {
        let kinds = KindRegistry.builtIn
        if markdown {
            print(GuardTable.markdown(kinds: kinds), terminator: "")
            return
        }
        for definition in kinds.definitions {
            print("\(definition.kind): \(definition.summary)")
        }
        print("")
        let columns = ["KEY", "UNIT", "RANGE", "FIGURE", "BREACH"] + kinds.kinds.map { $0.rawValue.uppercased() }
        var rows: [[String]] = []
        var seen = Set<String>()
        for definition in [nil] + kinds.definitions.map({ Optional($0) }) {
            for entry in definition.map(\.guards) ?? GuardTable.shared where seen.insert(entry.key).inserted {
                var row = [entry.key, entry.unit, entry.range.summary, entry.metric?.rawValue ?? "-",
                           entry.metric == nil ? "-" : entry.comparator.rawValue]
                for other in kinds.definitions {
                    let applies = definition == nil || definition?.kind == other.kind
                    row.append(applies ? GuardTable.defaultValue(of: entry, for: other).map(format) ?? "off" : "-")
                }
                rows.append(row)
            }
        }
        print(table(columns, rows))
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
