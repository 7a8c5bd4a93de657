import BPFKit
import Foundation
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

// MARK: - Helpers


/// The manifest text of an oom policy called `name`, using `object`, then `extra`.
private func manifestText(name: String, kind: String = "oom", object: String, extra: String = "") -> String {
    """
    name = "\(name)"
    kind = "\(kind)"
    object = "\(object)"
    description = "A test policy."
    \(extra)
    """
}

/// Reads the ops table of fixture `name`, expecting it to be refused.
private func opsFailure(_ fixture: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> OpsTableError? {
    let object = try BPFObject(path: TestPaths.fixture(fixture))
    let error = #expect(throws: OpsTableError.self, sourceLocation: sourceLocation) { try OpsTable(reading: object, kinds: .builtIn) }
    if let error {
        #expect(error.object == "\(fixture).bpf.o", sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), "one paragraph: \(error.description)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix("'\(fixture).bpf.o' is not a usable mmpolicy policy: "),
                sourceLocation: sourceLocation)
        #expect(!error.fix.isEmpty, sourceLocation: sourceLocation)
    }
    return error
}

/// Opens `manifest` expecting failure; the error's description.
private func openFailure(_ manifest: Manifest, searchPath: ObjectSearchPath,
                         overrides: [(String, ParameterValue)] = [],
                         sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    do {
        _ = try Policy.open(manifest: manifest, searchPath: searchPath, kinds: .builtIn, overrides: overrides)
        Issue.record("policy '\(manifest.name)' opened but should not have", sourceLocation: sourceLocation)
        return nil
    } catch {
        let text = String(describing: error)
        #expect(!text.contains("\n"), "one paragraph: \(text)", sourceLocation: sourceLocation)
        return text
    }
}

private func parameterValue(_ policy: Policy, _ name: String) -> ParameterValue? {
    policy.object.parameters.first { $0.name == name }.flatMap { policy.object.currentValue(of: $0) }
}

private var objectSearchPath: ObjectSearchPath { ObjectSearchPath(directories: [TestPaths.objectDirectory]) }

// MARK: - Ops tables

/// Reading ops tables out of real compiled objects, good and bad.
@Suite struct OpsTableTests {
    @Test(arguments: [
        ("oom_largest", "oom_largest", "largest_select_victim", false),
        ("oom_growth", "oom_growth", "growth_select_victim", false),
        ("echo_ctx", "echo_ctx", "echo_select_victim", true),
    ])
    func readsTheTableOfAGoodObject(file: String, name: String, program: String, isFixture: Bool) throws {
        let path = isFixture ? TestPaths.fixture(file) : TestPaths.policyObject(file)
        let object = try BPFObject(path: path)
        let ops = try OpsTable(reading: object, kinds: .builtIn)
        #expect(ops.kind == .oom)
        #expect(ops.abiVersion == 1)
        #expect(ops.abiVersion == mmpolicyABIVersion)
        #expect(ops.name == name)
        #expect(ops.variable == "__mmpolicy_ops_oom")
        #expect(ops.callbacks.map { "\($0.slot) -> \($0.program)" } == ["select_victim -> \(program)"])
        #expect(ops.program(for: "select_victim") == program)
        #expect(ops.program(for: "no_such_slot") == nil)
        // The bound program really is a syscall program of the object.
        #expect(object.program(named: program)?.type == .syscall)
    }

    @Test func refusesAKindTheRegistryDoesNotList() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_largest"))
        for (registry, known) in [(KindRegistry.empty, "none"), (KindRegistry.withTestKinds(.empty), "readahead (101), ksm (102)")] {
            let error = #expect(throws: OpsTableError.self) { try OpsTable(reading: object, kinds: registry) }
            #expect(error?.reason.contains("which this mmpolicy does not run (known kinds: \(known))") == true, "\(String(describing: error))")
        }
        // The kind's definition decides the slots: a definition with other slots refuses oom's.
        let other = KindRegistry([TestKind("oom", abiID: OOMKind().abiID)])
        let error = #expect(throws: OpsTableError.self) { try OpsTable(reading: object, kinds: other) }
        #expect(error?.slot == "select_victim", "\(String(describing: error))")
    }

    @Test func refusesAnObjectWithoutATable() throws {
        let error = try #require(try opsFailure("no_ops"))
        #expect(error.reason.contains("no mmpolicy ops table"), "\(error)")
        #expect(error.reason.contains(".mmpolicy.ops"), "\(error)")
        #expect(error.fix.contains("MMPOLICY_OPS(oom)"), "\(error)")
        #expect(error.slot == nil && error.program == nil)
    }

    @Test func refusesACallbackBoundToATracepointProgram() throws {
        let error = try #require(try opsFailure("tracepoint_callback"))
        #expect(error.slot == "select_victim")
        #expect(error.program == "tracepoint_select_victim")
        let text = error.description
        #expect(text.contains("'tracepoint_select_victim'"), "\(text)")
        #expect(text.contains("section 'tracepoint/kmem/rss_stat'"), "\(text)")
        #expect(text.contains("SEC(\"syscall\")"), "\(text)")
        #expect(error.fix.contains("Mark 'tracepoint_select_victim' SEC(\"syscall\")"), "\(text)")
    }

    @Test func refusesAnotherABIVersion() throws {
        let error = try #require(try opsFailure("abi_mismatch"))
        #expect(error.reason.contains("ABI version 999"), "\(error)")
        #expect(error.reason.contains("version 1"), "\(error)")
        #expect(error.fix.contains("Rebuild"), "\(error)")
    }

    @Test func refusesATableMissingItsRequiredCallback() throws {
        let error = try #require(try opsFailure("missing_callback"))
        #expect(error.slot == "select_victim")
        #expect(error.reason.contains("does not bind the required callback 'select_victim'"), "\(error)")
        #expect(error.reason.contains("'__mmpolicy_ops_oom'"), "\(error)")
        #expect(error.fix.contains(".select_victim = "), "\(error)")
    }

    @Test func refusesTwoTablesInOneObject() throws {
        let error = try #require(try opsFailure("duplicate_ops"))
        #expect(error.reason.contains("'__mmpolicy_ops_oom'"), "\(error)")
        #expect(error.reason.contains("'second_table'"), "\(error)")
        #expect(error.reason.contains("holds 2 tables"), "\(error)")
        #expect(error.reason.contains("exactly one"), "\(error)")
    }
}

// MARK: - Opening policies from manifests

extension OpsTableTests {
/// `Policy.open(manifest:searchPath:)`: checks of the manifest against its object.
@Suite struct PolicyOpen {
    @Test(arguments: ["/srv/mmpolicy/policies", "/srv/mmpolicy/policies/", "/srv/mmpolicy/policies//"])
    func searchesTheBuildDirectoryNextToThePolicyDirectory(_ policyDirectory: String) {
        let path = ObjectSearchPath.standard(policyDirectory: policyDirectory)
        #expect(path.directories.contains("/srv/mmpolicy/build/bpf"), "\(path.directories)")
        #expect(path.directories.last == "/usr/lib/mmpolicy/bpf")
    }

    @Test func searchesRelativeToARelativePolicyDirectory() {
        #expect(ObjectSearchPath.standard(policyDirectory: "policies/").directories.contains("./build/bpf"))
        #expect(ObjectSearchPath.standard(policyDirectory: "repo/policies").directories.contains("repo/build/bpf"))
    }

    @Test func refusesAManifestWhoseKindDiffersFromTheObject() throws {
        let dir = try ScratchDirectory()
        let objectPath = TestPaths.policyObject("oom_largest")
        let path = try dir.manifest("kind_mix", manifestText(name: "kind_mix", kind: "readahead", object: objectPath))
        let manifest = try Manifest.load(path: path, kinds: .withTestKinds(.builtIn))
        #expect(manifest.kind == PolicyKind(rawValue: "readahead"))
        let text = try #require(openFailure(manifest, searchPath: objectSearchPath))
        #expect(text.contains("policy 'kind_mix' cannot be opened"), "\(text)")
        #expect(text.contains("kind 'readahead'"), "\(text)")
        #expect(text.contains("holds a oom ops table"), "\(text)")
        #expect(text.contains(objectPath), "\(text)")
        #expect(text.contains(path), "\(text)")
        #expect(text.contains("`kind`"), "\(text)")
    }

    @Test func refusesAManifestNamingAMissingObject() throws {
        let dir = try ScratchDirectory()
        let path = try dir.manifest("ghost", manifestText(name: "ghost", object: "ghost_policy.bpf.o"))
        let manifest = try Manifest.load(path: path, kinds: .withTestKinds(.builtIn))
        let searched = [dir.path + "/first", dir.path + "/second"]
        let text = try #require(openFailure(manifest, searchPath: ObjectSearchPath(directories: searched)))
        #expect(text.contains("'ghost_policy.bpf.o'"), "\(text)")
        #expect(text.contains("none of \(searched[0]), \(searched[1])"), "\(text)")
        #expect(text.contains("`make build`"), "\(text)")
        #expect(text.contains("MMPOLICY_OBJECT_PATH"), "\(text)")
    }

    @Test func refusesAMissingObjectGivenAsAPath() throws {
        let dir = try ScratchDirectory()
        let path = try dir.manifest("ghost", manifestText(name: "ghost", object: "/nonexistent/ghost.bpf.o"))
        let text = try #require(openFailure(try Manifest.load(path: path, kinds: .withTestKinds(.builtIn)), searchPath: objectSearchPath))
        #expect(text.contains("/nonexistent/ghost.bpf.o cannot be read"), "\(text)")
        #expect(text.contains("`make build`"), "\(text)")
    }

    @Test func refusesAParameterTheObjectLacks() throws {
        let dir = try ScratchDirectory()
        let path = try dir.manifest("extra_param", manifestText(
            name: "extra_param", object: "oom_largest.bpf.o", extra: "[params]\nmin_points = 1\nmax_points = 7\n"))
        let text = try #require(openFailure(try Manifest.load(path: path, kinds: .withTestKinds(.builtIn)), searchPath: objectSearchPath))
        #expect(text.contains("parameter 'max_points' from \(path) [params] is refused"), "\(text)")
        #expect(text.contains("has no parameter 'max_points'"), "\(text)")
        #expect(text.contains("it has 'min_points' (s64)"), "\(text)")
    }

    @Test func refusesAParameterOfTheWrongType() throws {
        let dir = try ScratchDirectory()
        let path = try dir.manifest("bool_points", manifestText(
            name: "bool_points", object: "oom_largest.bpf.o", extra: "[params]\nmin_points = true\n"))
        let text = try #require(openFailure(try Manifest.load(path: path, kinds: .withTestKinds(.builtIn)), searchPath: objectSearchPath))
        #expect(text.contains("parameter 'min_points'"), "\(text)")
        #expect(text.contains("is a s64, not a boolean"), "\(text)")
        #expect(text.contains("Give an integer from -9223372036854775808 to 9223372036854775807"), "\(text)")
    }

    @Test func refusesABadOverride() throws {
        let manifest = try Manifest.load(path: TestPaths.policies + "/oom_largest.toml", kinds: .builtIn)
        let text = try #require(openFailure(manifest, searchPath: objectSearchPath, overrides: [("min_points", .string("abc"))]))
        #expect(text.contains("from --set is refused"), "\(text)")
        #expect(text.contains("s64"), "\(text)")
    }

    @Test func appliesManifestParametersThenOverrides() throws {
        let manifest = try Manifest.load(path: TestPaths.policies + "/oom_largest.toml", kinds: .builtIn)
        #expect(manifest.params["min_points"] == .integer(0))

        let plain = try Policy.open(manifest: manifest, searchPath: objectSearchPath, kinds: .builtIn)
        #expect(plain.objectPath == TestPaths.policyObject("oom_largest"))
        #expect(plain.name == "oom_largest")
        #expect(plain.ops.program(for: "select_victim") == "largest_select_victim")
        #expect(parameterValue(plain, "min_points") == .integer(0))

        let overridden = try Policy.open(manifest: manifest, searchPath: objectSearchPath, kinds: .builtIn,
                                         overrides: [("min_points", .integer(5))])
        #expect(parameterValue(overridden, "min_points") == .integer(5))
        // The object's compiled-in default is still reported as the default.
        let variable = try #require(overridden.object.parameters.first { $0.name == "min_points" })
        #expect(overridden.defaultValue(of: variable) == .integer(0))

        // A manifest value other than the default, then an override: the override wins.
        let dir = try ScratchDirectory()
        let path = try dir.manifest("tuned", manifestText(
            name: "tuned", object: "oom_largest.bpf.o", extra: "[params]\nmin_points = 3\n"))
        let tuned = try Manifest.load(path: path, kinds: .withTestKinds(.builtIn))
        #expect(parameterValue(try Policy.open(manifest: tuned, searchPath: objectSearchPath, kinds: .builtIn), "min_points") == .integer(3))
        let both = try Policy.open(manifest: tuned, searchPath: objectSearchPath, kinds: .builtIn, overrides: [("min_points", .integer(5))])
        #expect(parameterValue(both, "min_points") == .integer(5))
    }
}
}
