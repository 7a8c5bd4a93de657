import Foundation
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Helpers

/// Runs the real `mmpolicy` binary against the in-tree policies and objects.
private func mmpolicy(_ arguments: String..., environment extra: [String: String] = [:]) throws -> (status: Int32, output: String) {
    var environment = [
        "MMPOLICY_POLICY_DIR": TestPaths.policies,
        "MMPOLICY_OBJECT_PATH": TestPaths.objectDirectory,
    ]
    environment.merge(extra) { _, new in new }
    return try runCommand(TestPaths.product("mmpolicy"), arguments, environment: environment)
}

/// The lines of `text` with their whitespace-separated cells.
private func rows(_ text: String) -> [[String]] {
    text.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
}

/// Checks that a command failed with exactly one paragraph, `Error: ...`,
/// holding every phrase of `phrases`; returns the output.
@discardableResult
private func expectFailure(_ arguments: [String], _ phrases: [String], environment: [String: String] = [:],
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    var env = ["MMPOLICY_POLICY_DIR": TestPaths.policies, "MMPOLICY_OBJECT_PATH": TestPaths.objectDirectory]
    env.merge(environment) { _, new in new }
    let (status, output) = try runCommand(TestPaths.product("mmpolicy"), arguments, environment: env)
    let command = "mmpolicy " + arguments.joined(separator: " ")
    #expect(status == 1, "\(command) exited \(status): \(output)", sourceLocation: sourceLocation)
    let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(text.hasPrefix("Error: "), "\(command): \(output)", sourceLocation: sourceLocation)
    #expect(!text.contains("\n"), "\(command) should print one paragraph: \(output)", sourceLocation: sourceLocation)
    #expect(!text.contains("Usage:"), "\(command) printed usage: \(output)", sourceLocation: sourceLocation)
    for phrase in phrases {
        #expect(text.contains(phrase), "\(command) should mention \"\(phrase)\": \(output)", sourceLocation: sourceLocation)
    }
    return text
}


private func readBytes(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
    return [UInt8](data)
}

/// The in-tree `oom_largest` manifest with its name (and file) changed to `name`, edited by `edit`.
private func largestManifest(named name: String, _ edit: (String) -> String = { $0 }) throws -> String {
    let text = try String(contentsOfFile: TestPaths.policies + "/oom_largest.toml", encoding: .utf8)
    #expect(text.contains("name = \"oom_largest\"\n"))
    return edit(text.replacingOccurrences(of: "name = \"oom_largest\"\n", with: "name = \"\(name)\"\n"))
}

// MARK: - Tests

/// The `mmpolicy` command line, run as a separate process like an operator would.
@Suite(.serialized) struct CLITests {
    @Test func printsItsVersionWithThePolicyABI() throws {
        let (status, output) = try mmpolicy("--version")
        #expect(status == 0, "\(output)")
        #expect(output.hasPrefix("mmpolicy 0.1.0 "), "\(output)")
        #expect(output.contains("policy ABI 1"), "\(output)")
        #expect(output.contains("libbpf "), "\(output)")
    }

    // MARK: list

    @Test func listsThePolicies() throws {
        let (status, output) = try mmpolicy("list")
        #expect(status == 0, "\(output)")
        let table = rows(output)
        #expect(table.first == ["NAME", "KIND", "DESCRIPTION"], "\(output)")
        #expect(table.contains { $0.count > 2 && $0[0] == "oom_largest" && $0[1] == "oom" }, "\(output)")
        #expect(table.contains { $0.count > 2 && $0[0] == "oom_growth" && $0[1] == "oom" }, "\(output)")
        #expect(output.contains("Kill the process with the highest badness"), "\(output)")
        #expect(!output.contains("warning:"), "\(output)")
    }

    @Test func listsThePoliciesAsJSON() throws {
        let (status, output) = try mmpolicy("list", "--json")
        #expect(status == 0, "\(output)")
        #expect(output.contains("\"name\" : \"oom_growth\""), "\(output)")
        #expect(output.contains("\"name\" : \"oom_largest\""), "\(output)")
        #expect(output.contains("\"kind\" : \"oom\""), "\(output)")
        #expect(output.contains("\"object\" : \"oom_growth.bpf.o\""), "\(output)")
        #expect(output.contains("\"directory\" : \"\(TestPaths.policies)\""), "\(output)")
        #expect(output.contains("\"manifest\" : \"\(TestPaths.policies)/oom_largest.toml\""), "\(output)")
    }

    // MARK: inspect

    @Test func inspectsAPolicy() throws {
        let (status, output) = try mmpolicy("inspect", "oom_growth")
        #expect(status == 0, "\(output)")
        let table = rows(output)
        #expect(output.contains("policy oom_growth: kind oom, ABI 1"), "\(output)")
        #expect(output.contains("object: \(TestPaths.policyObject("oom_growth"))"), "\(output)")
        #expect(output.contains("ops table '__mmpolicy_ops_oom' (name \"oom_growth\")"), "\(output)")
        #expect(table.contains(["select_victim", "growth_select_victim"]), "\(output)")
        #expect(table.contains { $0.starts(with: ["growth_select_victim", "syscall", "syscall"]) }, "\(output)")
        #expect(table.contains { $0.starts(with: ["growth_rss_stat", "tracepoint", "tracepoint/kmem/rss_stat"]) }, "\(output)")
        #expect(table.contains { $0.starts(with: ["growth_by_tgid", "lru_hash", "4", "72", "32768"]) }, "\(output)")
        #expect(table.contains(["window_ms", "u64", "1000", "1000"]), "\(output)")
        #expect(table.contains(["min_growth_kb", "u64", "1024", "1024"]), "\(output)")
    }

    @Test func inspectsAPolicyAsJSON() throws {
        let (status, output) = try mmpolicy("inspect", "oom_growth", "--json")
        #expect(status == 0, "\(output)")
        #expect(output.contains("\"program\" : \"growth_select_victim\""), "\(output)")
        #expect(output.contains("\"slot\" : \"select_victim\""), "\(output)")
        #expect(output.contains("\"name\" : \"growth_by_tgid\""), "\(output)")
        #expect(output.contains("\"name\" : \"window_ms\""), "\(output)")
        #expect(output.contains("\"default\" : \"1000\""), "\(output)")
        #expect(output.contains("\"abiVersion\" : 1"), "\(output)")
    }

    @Test func inspectsAnObjectFileWithoutAManifest() throws {
        let (status, output) = try mmpolicy("inspect", TestPaths.fixture("echo_ctx"))
        #expect(status == 0, "\(output)")
        #expect(output.contains("policy echo_ctx: kind oom, ABI 1"), "\(output)")
        #expect(rows(output).contains(["select_victim", "echo_select_victim"]), "\(output)")
        #expect(!output.contains("description:"), "\(output)")
    }

    // MARK: verify

    @Test func verifiesAPolicy() throws {
        let (status, output) = try mmpolicy("verify", "oom_largest")
        #expect(status == 0, "\(output)")
        #expect(output.hasPrefix("oom_largest: verified and loaded in "), "\(output)")
        #expect(output.contains("then unloaded (\(TestPaths.policyObject("oom_largest")))"), "\(output)")
        #expect(rows(output).contains { $0.starts(with: ["largest_select_victim", "syscall"]) }, "\(output)")
    }

    @Test func verifiesAPolicyAsJSON() throws {
        let (status, output) = try mmpolicy("verify", "oom_growth", "--json")
        #expect(status == 0, "\(output)")
        #expect(output.contains("\"verified\" : true"), "\(output)")
        #expect(output.contains("\"name\" : \"growth_select_victim\""), "\(output)")
        #expect(output.contains("\"name\" : \"growth_rss_stat\""), "\(output)")
        #expect(!output.contains("\"failure\""), "\(output)")
    }

    @Test func verifiesWithAParameterOverride() throws {
        let (status, output) = try mmpolicy("verify", "oom_largest", "--set", "min_points=64")
        #expect(status == 0, "\(output)")
        #expect(output.contains("verified"), "\(output)")
    }

    // MARK: bad objects

    @Test func refusesATruncatedObject() throws {
        let dir = try ScratchDirectory()
        let whole = try readBytes(TestPaths.policyObject("oom_largest"))
        let half = try dir.write("half.bpf.o", Array(whole.prefix(whole.count / 2)))
        for command in ["verify", "inspect"] {
            try expectFailure([command, half], ["'half.bpf.o'", "truncated", "make build"])
        }
    }

    @Test func refusesAnELFFileForAnotherMachine() throws {
        try expectFailure(["verify", "/bin/true"], ["'true'", "not for BPF", "x86-64", "clang -target bpf"])
        try expectFailure(["inspect", "/bin/true"], ["not for BPF"])
    }

    @Test func refusesATextFile() throws {
        let dir = try ScratchDirectory()
        let text = try dir.write("notes.bpf.o", "this is not an object file\n")
        try expectFailure(["verify", text], ["'notes.bpf.o'", "not an ELF file"])
        try expectFailure(["inspect", text], ["not an ELF file"])
    }

    @Test func refusesAMissingFile() throws {
        let dir = try ScratchDirectory()
        let missing = dir.path + "/missing.bpf.o"
        let text = try expectFailure(["verify", missing], ["cannot read", missing])
        #expect(text.contains("No such file"), "\(text)")
    }

    @Test(arguments: [
        ("no_ops", ["no mmpolicy ops table", "MMPOLICY_OPS(oom)"]),
        ("tracepoint_callback", ["slot 'select_victim'", "'tracepoint_select_victim'", "'tracepoint/kmem/rss_stat'", "SEC(\"syscall\")"]),
        ("abi_mismatch", ["ABI version 999", "version 1", "Rebuild"]),
        ("missing_callback", ["does not bind the required callback 'select_victim'"]),
        ("duplicate_ops", ["'__mmpolicy_ops_oom'", "'second_table'", "exactly one"]),
    ])
    func refusesABadPolicyObject(fixture: String, phrases: [String]) throws {
        let path = TestPaths.fixture(fixture)
        let prefix = "'\(fixture).bpf.o' is not a usable mmpolicy policy"
        try expectFailure(["verify", path], [prefix] + phrases)
        try expectFailure(["inspect", path], [prefix] + phrases)
    }

    @Test func reportsAVerifierRejectionThenStillVerifiesOthers() throws {
        let path = TestPaths.fixture("verifier_reject")
        let text = try expectFailure(["verify", path], [
            "program 'reject_select_victim'", "verifier", "verifier_reject.bpf.c:", "map_value_or_null", "--log",
        ])
        #expect(text.contains("verifier_reject.bpf.c:26"), "the rejected line is the REJECTED-HERE one: \(text)")
        #expect(!text.contains("verifier log (end)"), "\(text)")

        let (status, output) = try mmpolicy("verify", path, "--log")
        #expect(status == 1, "\(output)")
        #expect(output.contains("Error: cannot load BPF object 'verifier_reject.bpf.o', program 'reject_select_victim'"), "\(output)")
        #expect(output.contains("verifier log"), "\(output)")
        #expect(output.contains("R0 invalid mem access 'map_value_or_null'"), "\(output)")
        #expect(output.contains("REJECTED-HERE"), "\(output)")

        let (jsonStatus, json) = try mmpolicy("verify", path, "--json")
        #expect(jsonStatus == 1, "\(json)")
        #expect(json.contains("\"verified\" : false"), "\(json)")
        #expect(json.contains("\"program\" : \"reject_select_victim\""), "\(json)")

        // Nothing global was disturbed: a good policy still loads afterwards.
        let (after, good) = try mmpolicy("verify", "oom_largest")
        #expect(after == 0, "\(good)")
        #expect(good.hasPrefix("oom_largest: verified"), "\(good)")
    }

    // MARK: bad arguments

    @Test func refusesAnUnknownPolicyName() throws {
        for command in ["verify", "inspect"] {
            try expectFailure([command, "oom_nonesuch"], [
                "no policy named 'oom_nonesuch'", "in \(TestPaths.policies)", "known: oom_growth, oom_largest", "mmpolicy list",
            ])
        }
    }

    @Test func refusesAParameterOfTheWrongType() throws {
        try expectFailure(["verify", "oom_largest", "--set", "min_points=abc"], [
            "policy 'oom_largest'", "parameter 'min_points' from --set is refused", "s64", "\"abc\"",
        ])
        try expectFailure(["verify", "oom_largest", "--set", "max_points=1"], [
            "no parameter 'max_points'", "'min_points' (s64)",
        ])
    }

    // MARK: broken manifests

    @Test func reportsBrokenManifestsNextToGoodOnes() throws {
        let dir = try ScratchDirectory()
        try dir.write("oom_largest.toml", try largestManifest(named: "oom_largest"))
        let colour = try dir.write("colourful.toml", try largestManifest(named: "colourful") {
            $0.replacingOccurrences(of: "kind = \"oom\"\n", with: "kind = \"oom\"\ncolour = \"red\"\n")
        })
        let numeric = try dir.write("numeric_kind.toml", try largestManifest(named: "numeric_kind") {
            $0.replacingOccurrences(of: "kind = \"oom\"\n", with: "kind = 3\n")
        })
        let syntax = try dir.write("bad_syntax.toml", "name = \"bad_syntax\"\nkind = \"oom\nobject = \"x.bpf.o\"\n")

        let (status, output) = try mmpolicy("list", "--policy-dir", dir.path)
        #expect(status != 0, "\(output)")
        let table = rows(output)
        #expect(table.contains { $0.count > 2 && $0[0] == "oom_largest" && $0[1] == "oom" }, "\(output)")
        #expect(!table.contains { $0.first == "colourful" || $0.first == "numeric_kind" || $0.first == "bad_syntax" }, "\(output)")
        #expect(output.contains("\(colour): unknown key 'colour'"), "\(output)")
        #expect(output.contains("\(numeric): key 'kind' must be a string"), "\(output)")
        #expect(output.contains("found integer 3"), "\(output)")
        #expect(output.contains("\(syntax): not valid TOML at line 2"), "\(output)")
        // The in-tree directory (from the environment) was not used.
        #expect(!output.contains("oom_growth"), "\(output)")

        let (jsonStatus, json) = try mmpolicy("list", "--policy-dir", dir.path, "--json")
        #expect(jsonStatus != 0, "\(json)")
        #expect(json.contains("\"name\" : \"oom_largest\""), "\(json)")
        #expect(json.contains("unknown key 'colour'"), "\(json)")

        try expectFailure(["verify", "colourful", "--policy-dir", dir.path], [colour, "unknown key 'colour'", "remove the key"])
        try expectFailure(["verify", "numeric_kind", "--policy-dir", dir.path], [numeric, "key 'kind'", "\"oom\""])
        try expectFailure(["inspect", "bad_syntax", "--policy-dir", dir.path], [syntax, "not valid TOML", "line 2"])

        // The good manifest in the same directory still works.
        let (good, verified) = try mmpolicy("verify", "oom_largest", "--policy-dir", dir.path)
        #expect(good == 0, "\(verified)")
        #expect(verified.hasPrefix("oom_largest: verified"), "\(verified)")
    }
}
