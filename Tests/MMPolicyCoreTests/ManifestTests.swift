import BPFKit
import Foundation
import MMPolicyTestSupport
import Testing

@testable import MMPolicyCore
import MMPolicyKinds

// MARK: - Helpers


private let policyPath = "policies/oom_largest.toml"

/// The built-in kinds plus test kinds readahead and ksm.
private let kinds = KindRegistry.withTestKinds(.builtIn)

extension Manifest {
    /// Parses against the built-in and test kinds.
    fileprivate static func parse(toml: String, path: String) throws(ManifestError) -> Manifest {
        try parse(toml: toml, path: path, kinds: kinds)
    }

    fileprivate static func load(path: String) throws(ManifestError) -> Manifest {
        try load(path: path, kinds: kinds)
    }
}

/// The four required keys for `oom_largest`, followed by `extra`.
private func minimal(_ extra: String = "") -> String {
    """
    name = "oom_largest"
    kind = "oom"
    object = "oom_largest.bpf.o"
    description = "Kill the largest task."
    \(extra)
    """
}

/// Parses `toml` expecting failure; nil if it parsed.
private func failure(_ toml: String, path: String = policyPath) -> ManifestError? {
    do {
        _ = try Manifest.parse(toml: toml, path: path)
        return nil
    } catch {
        return error
    }
}

private func loadFailure(_ path: String) -> ManifestError? {
    do {
        _ = try Manifest.load(path: path)
        return nil
    } catch {
        return error
    }
}

/// Checks that the message names the file, the key and the expectation.
private func expectMessage(_ error: ManifestError, contains parts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    let text = error.description
    #expect(!text.contains("\n"), "message should be one paragraph: \(text)", sourceLocation: sourceLocation)
    #expect(text.hasPrefix(error.path + ": "), "message should start with the file: \(text)", sourceLocation: sourceLocation)
    for part in parts {
        #expect(text.contains(part), "message lacks \(part): \(text)", sourceLocation: sourceLocation)
    }
}

private let kindList = "\"oom\", \"tiering\", \"readahead\", \"ksm\""

// MARK: - Parsing

@Suite struct ManifestTests {
    @Test func fullManifestParsesEveryField() throws {
        let toml = """
            # The reference OOM policy.
            name = "oom_largest"
            kind = "oom"
            object = "oom_largest.bpf.o"
            description = "Kill the task using the most memory."
            scope = "/sys/fs/cgroup/batch"
            mode = "observe"

            [params]
            min_points = 0
            prefer_children = true   # comment
            target = "worker"
            "big_limit" = 0x7fff_ffff
            a_last = -5

            [guards]
            deadline_ms = 100
            max_kills_per_minute = 6
            max_consecutive_fallbacks = 3
            max_rejections = 4
            max_callback_us = 1000
            max_refault_ratio = 0.5
            min_scan_efficiency = 0.1
            max_psi_some_avg10 = 40
            breach_windows = 2
            cooldown_s = 300

            [protect]
            comms = ["sshd", "systemd-journal"]
            cgroups = ["system.slice", "/sys/fs/cgroup/init.scope"]
            """
        let manifest = try Manifest.parse(toml: toml, path: policyPath)
        #expect(manifest.name == "oom_largest")
        #expect(manifest.kind == .oom)
        #expect(manifest.object == "oom_largest.bpf.o")
        #expect(manifest.description == "Kill the task using the most memory.")
        #expect(manifest.scope == .cgroup("/sys/fs/cgroup/batch"))
        #expect(manifest.mode == .observe)
        #expect(manifest.path == policyPath)
        #expect(
            manifest.params == [
                "min_points": .integer(0), "prefer_children": .boolean(true), "target": .string("worker"),
                "big_limit": .integer(0x7fff_ffff), "a_last": .integer(-5),
            ])
        #expect(manifest.orderedParams.map(\.name) == ["a_last", "big_limit", "min_points", "prefer_children", "target"])
        #expect(manifest.orderedParams.map(\.value) == [.integer(-5), .integer(0x7fff_ffff), .integer(0), .boolean(true), .string("worker")])
        #expect(
            manifest.guards
                == [
                    "deadline_ms": 100, "max_kills_per_minute": 6, "max_consecutive_fallbacks": 3, "max_rejections": 4,
                    "max_callback_us": 1000, "max_refault_ratio": 0.5, "min_scan_efficiency": 0.1, "max_psi_some_avg10": 40.0,
                    "breach_windows": 2, "cooldown_s": 300,
                ])
        #expect(manifest.guards.deadlineMs == 100 && manifest.guards.breachWindows == 2 && manifest.guards.cooldownS == 300)
        #expect(manifest.kindSettings == nil, "no [trigger]: the kind's defaults apply")
        #expect(manifest.protect.comms == ["sshd", "systemd-journal"])
        #expect(manifest.protect.cgroups == ["system.slice", "/sys/fs/cgroup/init.scope"])
    }

    @Test func defaultsApplyWhenOptionalKeysAreAbsent() throws {
        let manifest = try Manifest.parse(toml: minimal(), path: policyPath)
        #expect(manifest.scope == .system)
        #expect(manifest.mode == .enforce)
        #expect(manifest.params.isEmpty)
        #expect(manifest.orderedParams.isEmpty)
        #expect(manifest.guards == GuardSettings())
        #expect(manifest.guards.deadlineMs == nil)
        #expect(manifest.protect == ProtectList(comms: [], cgroups: []))
        #expect(
            manifest
                == Manifest(
                    name: "oom_largest", kind: .oom, object: "oom_largest.bpf.o",
                    description: "Kill the largest task.", path: policyPath))
    }

    @Test func emptyOptionalTablesAreAccepted() throws {
        let manifest = try Manifest.parse(toml: minimal("[params]\n[guards]\n[protect]\n"), path: policyPath)
        #expect(manifest.params.isEmpty)
        #expect(manifest.guards == GuardSettings())
        #expect(manifest.protect == ProtectList())
    }

    @Test func paramsAreSortedByNameHoweverTheyAreDeclared() throws {
        let inline = try Manifest.parse(
            toml: minimal("params = { zeta = 1, \"alpha\" = true, mid = 'x' }"), path: policyPath)
        #expect(inline.orderedParams.map(\.name) == ["alpha", "mid", "zeta"])
        let dotted = try Manifest.parse(
            toml: minimal("params.zeta = 1\nparams . beta = \"s # not a comment\"\nparams.alpha = false"),
            path: policyPath)
        #expect(dotted.orderedParams.map(\.name) == ["alpha", "beta", "zeta"])
        #expect(dotted.params["beta"] == .string("s # not a comment"))
        // Keys after multi-line strings and arrays are read like any other.
        let tricky = try Manifest.parse(
            toml: minimal(
                """
                [protect]
                comms = [
                  "a", # [params]
                  "b",
                ]
                [params]
                second_to_none = \"\"\"
                z = 1
                \"\"\"
                b_key = 2
                """), path: policyPath)
        #expect(tricky.orderedParams.map(\.name) == ["b_key", "second_to_none"])
        #expect(tricky.params["second_to_none"] == .string("z = 1\n"))
    }

    @Test func setParamReplacesAndOrderedParamsAreSorted() {
        var manifest = Manifest(
            name: "x", kind: .oom, object: "x.bpf.o", description: "d", params: [("b", .integer(1)), ("a", .integer(2))])
        manifest.setParam("b", to: .integer(3))
        manifest.setParam("c", to: .boolean(false))
        #expect(manifest.orderedParams.map(\.name) == ["a", "b", "c"])
        #expect(manifest.params["b"] == .integer(3))
    }

    @Test func integerGuardNumbersAreAccepted() throws {
        let manifest = try Manifest.parse(
            toml: minimal("[guards]\nmax_refault_ratio = 1\nmin_scan_efficiency = 0\nmax_psi_some_avg10 = 100.0"),
            path: policyPath)
        #expect(manifest.guards["max_refault_ratio"] == 1.0)
        #expect(manifest.guards["min_scan_efficiency"] == 0.0)
        #expect(manifest.guards["max_psi_some_avg10"] == 100.0)
    }

    @Test func fifteenByteCommIsAccepted() throws {
        let manifest = try Manifest.parse(
            toml: minimal("[protect]\ncomms = [\"abcdefghijklmno\"]"), path: policyPath)
        #expect(manifest.protect.comms == ["abcdefghijklmno"])
    }

    @Test func nameIsNotCheckedAgainstNonTOMLPaths() throws {
        let manifest = try Manifest.parse(toml: minimal(), path: "<stdin>")
        #expect(manifest.name == "oom_largest")
        #expect(Manifest.expectedName(forPath: "/a/b/oom_x.toml") == "oom_x")
        #expect(Manifest.expectedName(forPath: "oom_x.conf") == nil)
    }

    // MARK: errors

    @Test func documentedMessageFormat() throws {
        let error = try #require(failure(minimal("[guards]\ndeadline_ms = \"fast\"")))
        #expect(
            error.description
                == "policies/oom_largest.toml: key 'guards.deadline_ms' must be an integer >= 1 (milliseconds), found string \"fast\". Fix the value, or remove the key to use the default."
        )
    }

    @Test func missingRequiredKey() throws {
        let toml = """
            name = "oom_largest"
            object = "oom_largest.bpf.o"
            description = "d"
            """
        let error = try #require(failure(toml))
        #expect(error.path == policyPath)
        #expect(error.key == "kind")
        #expect(error.reason == .missingKey(expected: "a string, one of \(kindList)"))
        expectMessage(error, contains: ["'kind'", "missing", "one of \(kindList)", "Add a line `kind = ...`"])
    }

    @Test func unknownTopLevelKey() throws {
        let error = try #require(failure(minimal("priority = 3")))
        #expect(error.key == "priority")
        #expect(error.reason == .unknownKey(known: Manifest.knownKeys + ["trigger"]), "the oom kind's own section is known")
        expectMessage(
            error,
            contains: [
                "unknown key 'priority' at the top level",
                "name, kind, object, description, scope, mode, params, guards, protect, trigger",
            ])
    }

    @Test func guardKeyAtTopLevelGetsAHint() throws {
        let error = try #require(failure(minimal("deadline_ms = 5")))
        #expect(error.key == "deadline_ms")
        expectMessage(error, contains: ["belongs in the [guards] table"])
    }

    @Test func unknownGuardKeyListsKnownKeys() throws {
        let error = try #require(failure(minimal("[guards]\ndeadline = 100")))
        #expect(error.key == "guards.deadline")
        #expect(error.reason == .unknownKey(known: GuardTable.knownKeys(for: OOMKind())))
        expectMessage(
            error,
            contains: [
                "unknown key 'guards.deadline' in table [guards]",
                "deadline_ms, breach_windows, cooldown_s, max_refault_ratio, max_refault_rate_per_gib, "
                    + "min_scan_efficiency, max_psi_some_avg10, max_bpf_ns_per_run, max_bpf_cpu_percent, max_map_memory_kb, "
                    + "max_callback_us, max_rejections, max_decision_errors, max_deadline_misses, max_consecutive_fallbacks, "
                    + "max_kills_per_minute",
            ])
    }

    @Test func unknownProtectKey() throws {
        let error = try #require(failure(minimal("[protect]\nusers = [\"root\"]")))
        #expect(error.key == "protect.users")
        #expect(error.reason == .unknownKey(known: ["comms", "cgroups"]))
    }

    @Test func wrongTypeForKind() throws {
        let toml = """
            name = "oom_largest"
            kind = 3
            object = "oom_largest.bpf.o"
            description = "d"
            """
        let error = try #require(failure(toml))
        #expect(error.key == "kind")
        #expect(error.reason == .wrongType(expected: "a string, one of \(kindList)", found: "integer 3"))
        #expect(
            error.description
                == "policies/oom_largest.toml: key 'kind' must be a string, one of \(kindList), found integer 3. Fix the value."
        )
    }

    @Test func invalidKind() throws {
        let toml = minimal().replacingOccurrences(of: "kind = \"oom\"", with: "kind = \"oomm\"")
        let error = try #require(failure(toml))
        #expect(error.key == "kind")
        #expect(error.reason == .invalidValue(expected: "one of \(kindList)", found: "string \"oomm\""))
        expectMessage(error, contains: ["'kind'", "one of \(kindList)", "found string \"oomm\""])
    }

    @Test func invalidMode() throws {
        let error = try #require(failure(minimal("mode = \"dry-run\"")))
        #expect(error.key == "mode")
        #expect(error.reason == .invalidValue(expected: "\"enforce\" or \"observe\"", found: "string \"dry-run\""))
        expectMessage(error, contains: ["'mode'", "\"enforce\" or \"observe\"", "dry-run", "remove the key to use the default"])
    }

    @Test func wrongTypeForMode() throws {
        let error = try #require(failure(minimal("mode = true")))
        #expect(error.reason == .wrongType(expected: "a string, \"enforce\" or \"observe\"", found: "boolean true"))
    }

    @Test func nameMustMatchFileStem() throws {
        let error = try #require(failure(minimal(), path: "policies/oom_biggest.toml"))
        #expect(error.key == "name")
        #expect(error.reason == .nameMismatch(name: "oom_largest", stem: "oom_biggest"))
        expectMessage(
            error,
            contains: ["policies/oom_biggest.toml", "'name'", "\"oom_largest\"", "oom_biggest.toml",
                       "Set name = \"oom_biggest\"", "rename the file to oom_largest.toml"])
    }

    @Test(arguments: ["OOM_largest", "oom-largest", "", "oom largest", String(repeating: "a", count: 32)])
    func badNameCharacters(name: String) throws {
        let toml = minimal().replacingOccurrences(of: "name = \"oom_largest\"", with: "name = \"\(name)\"")
        let error = try #require(failure(toml, path: "policies/\(name).toml"))
        #expect(error.key == "name")
        #expect(
            error.reason
                == .invalidValue(
                    expected: "a string of 1 to 31 characters from a-z, 0-9 and _", found: "string \"\(name)\""))
        expectMessage(error, contains: ["'name'", "a-z, 0-9 and _"])
    }

    @Test func thirtyOneCharacterNameIsAccepted() throws {
        let name = String(repeating: "a", count: 31)
        let toml = minimal().replacingOccurrences(of: "name = \"oom_largest\"", with: "name = \"\(name)\"")
        #expect(try Manifest.parse(toml: toml, path: "\(name).toml").name == name)
    }

    @Test func commLongerThanFifteenBytes() throws {
        let error = try #require(failure(minimal("[protect]\ncomms = [\"sshd\", \"a_process_name_16\"]")))
        #expect(error.key == "protect.comms[1]")
        #expect(error.reason == .invalidValue(
            expected: "a process name of 1 to 15 bytes (the kernel keeps only 15 bytes of a task's comm)",
            found: "string \"a_process_name_16\""))
        expectMessage(error, contains: ["'protect.comms[1]'", "1 to 15 bytes", "Fix or remove the entry."])
    }

    @Test func commLengthCountsBytesNotCharacters() throws {
        // 8 characters, 16 bytes.
        let error = try #require(failure(minimal("[protect]\ncomms = [\"éééééééé\"]")))
        #expect(error.key == "protect.comms[0]")
    }

    @Test func commMustBeString() throws {
        let error = try #require(failure(minimal("[protect]\ncomms = [\"sshd\", 7]")))
        #expect(error.key == "protect.comms[1]")
        #expect(error.reason == .wrongType(expected: "a string", found: "integer 7"))
        let notArray = try #require(failure(minimal("[protect]\ncomms = \"sshd\"")))
        #expect(notArray.key == "protect.comms")
        #expect(notArray.reason == .wrongType(expected: "an array of process names (strings)", found: "string \"sshd\""))
    }

    @Test func emptyProtectedCgroup() throws {
        let error = try #require(failure(minimal("[protect]\ncgroups = [\"system.slice\", \"\"]")))
        #expect(error.key == "protect.cgroups[1]")
        #expect(error.reason == .invalidValue(expected: "a non-empty cgroup path", found: "string \"\""))
    }

    @Test func refaultRatioOutOfRange() throws {
        let error = try #require(failure(minimal("[guards]\nmax_refault_ratio = 1.5")))
        #expect(error.key == "guards.max_refault_ratio")
        #expect(error.reason == .invalidValue(expected: "a number from 0 to 1 (a ratio)", found: "floating-point number 1.5"))
        expectMessage(error, contains: ["'guards.max_refault_ratio'", "from 0 to 1", "1.5"])
    }

    @Test func nanIsOutOfRange() throws {
        let error = try #require(failure(minimal("[guards]\nmin_scan_efficiency = nan")))
        #expect(error.key == "guards.min_scan_efficiency")
    }

    @Test func watchdogGuardKeysParse() throws {
        let manifest = try Manifest.parse(
            toml: minimal("""
                [guards]
                max_decision_errors = 0
                max_deadline_misses = 4
                max_map_memory_kb = 65536
                max_bpf_ns_per_run = 20000
                max_bpf_cpu_percent = 12.5
                max_refault_rate_per_gib = 5000
                """),
            path: policyPath)
        #expect(
            manifest.guards
                == ["max_decision_errors": 0, "max_deadline_misses": 4, "max_map_memory_kb": 65536, "max_bpf_ns_per_run": 20000,
                    "max_bpf_cpu_percent": 12.5, "max_refault_rate_per_gib": 5000.0])
        let integerPercent = try Manifest.parse(toml: minimal("[guards]\nmax_bpf_cpu_percent = 150"), path: policyPath)
        #expect(integerPercent.guards["max_bpf_cpu_percent"] == 150, "more than one CPU's worth on a multi-core machine")
    }

    @Test func watchdogGuardKeysRejectBadValues() throws {
        let cases: [(String, ManifestError.Reason)] = [
            ("max_decision_errors = -1", .invalidValue(expected: "an integer >= 0 (errors per minute)", found: "integer -1")),
            ("max_deadline_misses = 1.5", .wrongType(expected: "an integer >= 0 (misses per minute)", found: "floating-point number 1.5")),
            ("max_map_memory_kb = 0", .invalidValue(expected: "an integer >= 1 (KiB)", found: "integer 0")),
            ("max_bpf_ns_per_run = \"fast\"", .wrongType(expected: "an integer >= 1 (nanoseconds)", found: "string \"fast\"")),
            ("max_bpf_cpu_percent = 0", .invalidValue(expected: "a number above 0, at most 100000 (percent of one CPU)", found: "integer 0")),
            ("max_refault_rate_per_gib = -3.0",
             .invalidValue(expected: "a number >= 0 (refaulted pages per second per GiB)", found: "floating-point number -3.0")),
        ]
        for (line, reason) in cases {
            let error = try #require(failure(minimal("[guards]\n" + line)), "\(line)")
            #expect(error.key == "guards." + String(line.prefix { $0 != " " }))
            #expect(error.reason == reason, "\(line): \(error.description)")
        }
    }

    @Test func integerGuardRejectsFloatAndNegative() throws {
        let float = try #require(failure(minimal("[guards]\ncooldown_s = 300.0")))
        #expect(float.reason == .wrongType(expected: "an integer >= 0 (seconds)", found: "floating-point number 300.0"))
        let negative = try #require(failure(minimal("[guards]\nmax_kills_per_minute = -1")))
        #expect(negative.key == "guards.max_kills_per_minute")
        #expect(negative.reason == .invalidValue(expected: "an integer >= 0 (kills per minute)", found: "integer -1"))
        let zero = try #require(failure(minimal("[guards]\ndeadline_ms = 0")))
        #expect(zero.reason == .invalidValue(expected: "an integer >= 1 (milliseconds)", found: "integer 0"))
    }

    @Test func floatParamIsRejected() throws {
        let error = try #require(failure(minimal("[params]\nratio = 0.5")))
        #expect(error.key == "params.ratio")
        #expect(error.reason == .wrongType(
            expected: "an integer, boolean or string (the value of the BPF global 'ratio')",
            found: "floating-point number 0.5"))
        expectMessage(error, contains: ["'params.ratio'", "integer, boolean or string", "0.5", "compiled into the BPF object"])
    }

    @Test func nestedTableInParamsIsRejected() throws {
        let error = try #require(failure(minimal("[params.inner]\nx = 1")))
        #expect(error.key == "params.inner")
        #expect(error.reason == .wrongType(
            expected: "an integer, boolean or string (the value of the BPF global 'inner')", found: "a table"))
    }

    @Test func arrayParamIsRejected() throws {
        let error = try #require(failure(minimal("[params]\nlist = [1, 2]")))
        #expect(error.key == "params.list")
        #expect(error.reason == .wrongType(
            expected: "an integer, boolean or string (the value of the BPF global 'list')", found: "array [ 1, 2 ]"))
    }

    @Test func paramKeyMustBeCIdentifier() throws {
        let error = try #require(failure(minimal("[params]\n\"min-points\" = 1")))
        #expect(error.key == "params.min-points")
        guard case .invalidKey(let expected) = error.reason else {
            Issue.record("expected invalidKey, got \(error.reason)")
            return
        }
        #expect(expected.hasPrefix("a C identifier"))
        let spaced = try #require(failure(minimal("[params]\n\"a b\" = 1")))
        #expect(spaced.key == "params.\"a b\"")
    }

    @Test func paramsMustBeATable() throws {
        let error = try #require(failure(minimal("params = 3")))
        #expect(error.key == "params")
        #expect(error.reason == .wrongType(expected: "a table ([params])", found: "integer 3"))
    }

    @Test func scopeIsValidated() throws {
        let error = try #require(failure(minimal("scope = \"batch/../system.slice\"")))
        #expect(error.key == "scope")
        #expect(error.reason == .invalidValue(
            expected: ScopeSpec.expectation, found: "string \"batch/../system.slice\" (it contains a '..' component)"))
        expectMessage(error, contains: ["'scope'", "'..'", "\"system\" or a cgroup path"])
        let empty = try #require(failure(minimal("scope = \"\"")))
        #expect(empty.reason == .invalidValue(expected: ScopeSpec.expectation, found: "string \"\" (it is empty)"))
        let relative = try Manifest.parse(toml: minimal("scope = \"batch/jobs\""), path: policyPath)
        #expect(relative.scope == .cgroup("batch/jobs"))
    }

    @Test func emptyDescriptionAndObjectAreRejected() throws {
        let description = try #require(failure(minimal().replacingOccurrences(of: "Kill the largest task.", with: " ")))
        #expect(description.key == "description")
        #expect(description.reason == .invalidValue(expected: "a non-empty string saying what the policy does", found: "string \" \""))
        let object = try #require(failure(minimal().replacingOccurrences(of: "oom_largest.bpf.o", with: "")))
        #expect(object.key == "object")
    }

    @Test func syntaxErrorGivesLineAndColumn() throws {
        let toml = """
            name = "oom_largest"
            kind = "oom"
            object = "oom_largest.bpf.o
            description = "d"
            """
        let error = try #require(failure(toml))
        #expect(error.key == "")
        guard case .syntax(let line, let column, let message) = error.reason else {
            Issue.record("expected a syntax error, got \(error.reason)")
            return
        }
        #expect(line == 3)
        #expect(column > 1)
        #expect(!message.isEmpty)
        expectMessage(error, contains: ["not valid TOML at line 3, column \(column)", "nothing in this file was loaded"])
    }

    @Test func duplicateKeyIsASyntaxError() throws {
        let error = try #require(failure(minimal("kind = \"ksm\"")))
        guard case .syntax(let line, _, _) = error.reason else {
            Issue.record("expected a syntax error, got \(error.reason)")
            return
        }
        #expect(line == 5)
    }

    @Test func missingFileIsUnreadable() throws {
        let directory = try ScratchDirectory()
        let path = directory.path + "/absent.toml"
        let error = try #require(loadFailure(path))
        #expect(error.path == path)
        #expect(error.key == "")
        #expect(error.reason == .unreadable(errno: ENOENT))
        expectMessage(error, contains: [path, "No such file or directory", "errno \(ENOENT)"])
    }

    @Test func directoryIsUnreadable() throws {
        let directory = try ScratchDirectory()
        let path = try directory.makeDirectory("dir.toml")
        let error = try #require(loadFailure(path))
        #expect(error.reason == .unreadable(errno: EISDIR))
    }

    @Test func invalidUTF8AndNULAreSyntaxErrors() throws {
        let directory = try ScratchDirectory()
        let bad = try directory.write("oom_largest.toml", Array("name = \"oom_largest\"\nkind = \"o".utf8) + [0xFF, 0x22])
        let error = try #require(loadFailure(bad))
        #expect(error.reason == .syntax(line: 2, column: 10, message: "the file is not valid UTF-8 text"))
        let nul = try #require(failure("name = \"a\"\0\n"))
        #expect(nul.reason == .syntax(line: 1, column: 11, message: "a NUL character (U+0000) is not allowed in a TOML document"))
    }

    @Test func loadReadsAFile() throws {
        let directory = try ScratchDirectory()
        let path = try directory.write("oom_largest.toml", minimal("[params]\nb = 1\na = 2"))
        let manifest = try Manifest.load(path: path)
        #expect(manifest.path == path)
        #expect(manifest.orderedParams.map(\.name) == ["a", "b"])
    }
}

// MARK: - Scope

@Suite struct ManifestScopeTests {
    @Test func parsesSystemAndCgroupPaths() throws {
        #expect(try ScopeSpec(parsing: "system") == .system)
        #expect(try ScopeSpec(parsing: "/sys/fs/cgroup/memory/batch") == .cgroup("/sys/fs/cgroup/memory/batch"))
        #expect(try ScopeSpec(parsing: "/sys/fs/cgroup//batch/") == .cgroup("/sys/fs/cgroup/batch"))
        #expect(try ScopeSpec(parsing: "./batch/./jobs") == .cgroup("batch/jobs"))
        #expect(try ScopeSpec(parsing: "./system") == .cgroup("system"))
    }

    @Test func descriptionRoundTrips() throws {
        for scope in [ScopeSpec.system, .cgroup("system"), .cgroup("/a/b"), .cgroup("batch")] {
            #expect(try ScopeSpec(parsing: scope.description) == scope)
        }
        #expect(ScopeSpec.system.description == "system")
        #expect(ScopeSpec.cgroup("batch/jobs").description == "batch/jobs")
    }

    @Test(arguments: [
        ("", "it is empty"),
        ("  ", "it is blank"),
        ("a/../b", "it contains a '..' component"),
        ("..", "it contains a '..' component"),
        ("/", "it names the filesystem root, not a cgroup (use \"system\" for the whole machine)"),
        (".", "it names no cgroup"),
    ])
    func rejectsBadScopes(input: String, problem: String) {
        #expect(throws: ScopeSpec.ParseError(input: input, problem: problem)) {
            try ScopeSpec(parsing: input)
        }
    }

    @Test func parseErrorMessage() {
        let error = ScopeSpec.ParseError(input: "a/../b", problem: "it contains a '..' component")
        #expect(
            error.description
                == "invalid scope \"a/../b\": it contains a '..' component; expected \"system\" or a cgroup path without '..' (absolute like \"/sys/fs/cgroup/batch\" or relative like \"batch/jobs\")."
        )
    }
}

// MARK: - Catalog

@Suite struct ManifestCatalogTests {
    private func policy(_ name: String, kind: String = "oom") -> String {
        """
        name = "\(name)"
        kind = "\(kind)"
        object = "\(name).bpf.o"
        description = "Policy \(name)."
        """
    }

    @Test func loadsSortedSkippingDefaultAndKeepsGoingPastBrokenFiles() throws {
        let directory = try ScratchDirectory()
        try directory.write("zeta.toml", policy("zeta", kind: "ksm"))
        try directory.write("alpha.toml", policy("alpha"))
        try directory.write("broken.toml", "name = \"broken\"\nkind = \n")
        try directory.write("mismatch.toml", policy("other"))
        try directory.write("default.toml", "policies = [\"alpha\", \"zeta\"]\n")
        try directory.write("README.md", "not a manifest")
        try directory.write(".hidden.toml", "garbage = = =")
        _ = try directory.makeDirectory("sub")

        let catalog = PolicyCatalog.load(directory: directory.path, kinds: kinds)
        #expect(catalog.directory == directory.path)
        #expect(catalog.manifests.map(\.name) == ["alpha", "zeta"])
        #expect(catalog.manifests.map(\.path) == [directory.path + "/alpha.toml", directory.path + "/zeta.toml"])
        #expect(catalog.errors.map(\.path) == [directory.path + "/broken.toml", directory.path + "/mismatch.toml"])
        guard case .syntax(line: 2, _, _) = catalog.errors.first?.reason else {
            Issue.record("expected a syntax error on line 2, got \(String(describing: catalog.errors.first))")
            return
        }
        #expect(catalog.errors.last?.reason == .nameMismatch(name: "other", stem: "mismatch"))
        #expect(catalog.manifest(named: "zeta")?.kind == PolicyKind(rawValue: "ksm"))
        #expect(catalog.manifest(named: "default") == nil)
        #expect(catalog.manifest(named: "broken") == nil)
    }

    @Test func trailingSlashDirectory() throws {
        let directory = try ScratchDirectory()
        try directory.write("alpha.toml", policy("alpha"))
        let catalog = PolicyCatalog.load(directory: directory.path + "/", kinds: kinds)
        #expect(catalog.manifests.map(\.path) == [directory.path + "/alpha.toml"])
    }

    @Test func missingDirectoryIsOneError() throws {
        let directory = try ScratchDirectory()
        let missing = directory.path + "/nope"
        let catalog = PolicyCatalog.load(directory: missing, kinds: kinds)
        #expect(catalog.manifests.isEmpty)
        #expect(catalog.errors == [ManifestError(path: missing, key: "", reason: .unreadable(errno: ENOENT))])
    }

    @Test func locatesPolicyDirectory() throws {
        let directory = try ScratchDirectory()
        let checkout = try directory.makeDirectory("checkout")
        try directory.write("checkout/Package.swift", "// swift-tools-version: 6.0\n")
        let policies = try directory.makeDirectory("checkout/policies")
        let deep = try directory.makeDirectory("checkout/Sources/deep")
        let system = try directory.makeDirectory("etc-policies")

        func locate(_ explicit: String?, _ environment: String?, _ cwd: String?, _ fallback: String) -> String? {
            PolicyCatalog.locatePolicyDirectory(
                explicit: explicit, environment: environment, currentDirectory: cwd, systemDirectory: fallback)
        }
        #expect(locate("/x/explicit", "/x/env", deep, system) == "/x/explicit")
        #expect(locate(nil, "/x/env", deep, system) == "/x/env")
        #expect(locate(nil, "", deep, system) == policies)
        #expect(locate(nil, nil, checkout, system) == policies)
        #expect(locate(nil, nil, directory.path, system) == system)
        #expect(locate(nil, nil, directory.path, directory.path + "/absent") == nil)
        #expect(PolicyCatalog.locatePolicyDirectory(explicit: "/given") == "/given")
    }
}

// MARK: - Kinds

/// What a manifest may hold depends on its kind: its own sections and guards.
@Suite struct ManifestKindTests {
    private static let tuned = TestKind("tuned", abiID: 201, tuning: true)
    private static let registry = KindRegistry.builtIn.adding(tuned).adding(TestKind("plain", abiID: 202))

    private func manifest(kind: String, _ extra: String) throws(ManifestError) -> Manifest {
        try Manifest.parse(toml: """
            name = "p"
            kind = "\(kind)"
            object = "p.bpf.o"
            description = "d"
            \(extra)
            """, path: "policies/p.toml", kinds: Self.registry)
    }

    private func failure(kind: String, _ extra: String) -> ManifestError? {
        do {
            _ = try manifest(kind: kind, extra)
            return nil
        } catch {
            return error
        }
    }

    @Test func aKindReadsItsOwnSection() throws {
        let m = try manifest(kind: "tuned", "[tuning]\nlevel = 7\nlabel = \"fast\"")
        #expect(m.kindSettings as? TestKind.Tuning == TestKind.Tuning(level: 7, label: "fast"))
        #expect(m == (try manifest(kind: "tuned", "[tuning]\nlabel = \"fast\"\nlevel = 7")), "kind settings take part in ==")
        #expect(m != (try manifest(kind: "tuned", "[tuning]\nlevel = 6\nlabel = \"fast\"")))
        #expect(try manifest(kind: "tuned", "").kindSettings == nil, "no section: the kind's defaults")
    }

    @Test func errorsInAKindsSectionNameTheFileAndKey() throws {
        let range = try #require(failure(kind: "tuned", "[tuning]\nlevel = 11"))
        #expect(range.path == "policies/p.toml" && range.key == "tuning.level")
        #expect(range.reason == .invalidValue(expected: "an integer from 1 to 10", found: "integer 11"))
        #expect(range.description.hasPrefix("policies/p.toml: key 'tuning.level' must be an integer from 1 to 10, found integer 11."))
        let type = try #require(failure(kind: "tuned", "[tuning]\nlevel = \"high\""))
        #expect(type.reason == .wrongType(expected: "an integer from 1 to 10", found: "string \"high\""))
        let refused = try #require(failure(kind: "tuned", "[tuning]\nlabel = \"\""))
        #expect(refused.key == "tuning.label" && refused.reason == .invalidValue(expected: "a non-empty string", found: "string \"\""))
        let unknown = try #require(failure(kind: "tuned", "[tuning]\nspeed = 1"))
        #expect(unknown.key == "tuning.speed" && unknown.reason == .unknownKey(known: ["level", "label"]))
        let notATable = try #require(failure(kind: "tuned", "tuning = 3"))
        #expect(notATable.key == "tuning" && notATable.reason == .wrongType(expected: "a table ([tuning])", found: "integer 3"))
    }

    @Test func theOOMKindsTriggerSectionNamesFileAndKey() throws {
        let error = try #require(failure(kind: "oom", "[trigger]\nswap_free_percent = -1"))
        #expect(error.path == "policies/p.toml" && error.key == "trigger.swap_free_percent")
        #expect(error.reason == .invalidValue(expected: "a number from 0 to 100 (percent of SwapTotal)", found: "integer -1"))
    }

    @Test func anotherKindsSectionIsAnUnknownKey() throws {
        let trigger = try #require(failure(kind: "plain", "[trigger]\nmem_available_percent = 5"))
        #expect(trigger.key == "trigger")
        #expect(trigger.reason == .unknownKey(known: Manifest.knownKeys), "a kind without sections knows only the shared keys")
        #expect(trigger.description.contains("the known keys there are: name, kind, object, description, scope, mode, params, guards, protect."))
        let tuning = try #require(failure(kind: "oom", "[tuning]\nlevel = 1"))
        #expect(tuning.key == "tuning" && tuning.reason == .unknownKey(known: Manifest.knownKeys + ["trigger"]))
    }

    @Test func anotherKindsGuardIsAnUnknownKey() throws {
        let error = try #require(failure(kind: "plain", "[guards]\nmax_kills_per_minute = 3"))
        #expect(error.key == "guards.max_kills_per_minute")
        #expect(error.reason == .unknownKey(known: GuardTable.sharedKeys))
        #expect(try manifest(kind: "oom", "[guards]\nmax_kills_per_minute = 3").guards["max_kills_per_minute"] == 3)
        #expect(try manifest(kind: "plain", "[guards]\nmax_consecutive_fallbacks = 2").guards["max_consecutive_fallbacks"] == 2,
                "a shared guard that is off for a kind can be turned on")
    }

    @Test func anUnregisteredKindIsRefusedWithTheKnownList() throws {
        let error = try #require(failure(kind: "memnice", ""))
        #expect(error.key == "kind")
        #expect(error.reason == .invalidValue(expected: "one of \"oom\", \"tiering\", \"tuned\", \"plain\"", found: "string \"memnice\""))
        // Before the kind is known, any registered kind's section passes the key check, so the kind is what is reported.
        let withSection = try #require(failure(kind: "memnice", "[tuning]\nlevel = 1"))
        #expect(withSection.key == "kind")
        let none = ManifestError.self
        #expect(throws: none) {
            try Manifest.parse(toml: "name = \"p\"\nkind = \"oom\"\nobject = \"o\"\ndescription = \"d\"", path: "p.toml", kinds: .empty)
        }
    }
}

/// The registry itself.
@Suite struct KindRegistryTests {
    @Test func looksUpByNameAndABIIDAndRefusesUnknownKindsWithTheKnownList() throws {
        let registry = KindRegistry.builtIn
        #expect(registry.kinds == [.oom, .tiering])
        #expect(registry.definition(for: .oom)?.abiID == OOMKind().abiID)
        #expect(registry.definition(abiID: OOMKind().abiID)?.kind == .oom)
        #expect(registry.definition(abiID: 999) == nil)
        #expect(registry.definition(abiID: TieringKind().abiID)?.kind == .tiering)
        #expect(throws: UnknownKindError(kind: "ksm", known: [.oom, .tiering])) { try registry.require(PolicyKind(rawValue: "ksm")) }
        #expect(UnknownKindError(kind: "ksm", known: [.oom, .tiering]).description
                == "policy kind 'ksm' is not one this mmpolicy runs; known kinds: oom, tiering")
        let added = registry.adding(TestKind("ksm", abiID: 102))
        #expect(added.kinds.map(\.rawValue) == ["oom", "tiering", "ksm"])
        #expect(try added.require(PolicyKind(rawValue: "ksm")).abiID == 102)
        #expect(added.adding(TestKind("ksm", abiID: 103)).definition(abiID: 103) != nil, "adding replaces a kind of the same name")
    }

    @Test func theOOMKindsStaticFacts() {
        let oom = OOMKind()
        #expect(oom.opsStructName == "mmpolicy_oom_ops")
        #expect(oom.callbacks == [CallbackSlot(name: "select_victim", required: true, programType: .syscall)])
        #expect(oom.manifestSections == ["trigger"])
        #expect(oom.guards.map(\.key) == ["max_kills_per_minute"])
        #expect(oom.guards.first?.metric == .actionsPerMinute)
        #expect(oom.guardDefaults["max_consecutive_fallbacks"]?.value == 3)
    }

    @Test func kindsEncodeAsPlainStrings() throws {
        let data = try JSONEncoder().encode([PolicyKind.oom])
        #expect(String(decoding: data, as: UTF8.self) == "[\"oom\"]")
        #expect(try JSONDecoder().decode([PolicyKind].self, from: Data("[\"ksm\"]".utf8)) == [PolicyKind(rawValue: "ksm")])
    }
}

/// docs/watchdog.md's guard table is the code's.
@Suite struct GuardTableDocumentationTests {
    @Test func theDocumentedGuardTableIsTheGeneratedOne() throws {
        let path = TestPaths.repository + "/docs/watchdog.md"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let begin = try #require(text.range(of: GuardTable.markdownBegin + "\n"), "\(path) lacks the begin marker")
        let end = try #require(text.range(of: GuardTable.markdownEnd, range: begin.upperBound..<text.endIndex), "\(path) lacks the end marker")
        let documented = String(text[begin.upperBound..<end.lowerBound])
        #expect(documented == GuardTable.markdown(kinds: .builtIn),
                "docs/watchdog.md's guard table is out of date: regenerate it with `mmpolicy guards --markdown`")
    }

    @Test func theTableHasARowPerKeyAndAColumnPerKind() {
        let registry = KindRegistry.builtIn.adding(TestKind("plain", abiID: 202))
        let lines = GuardTable.markdown(kinds: registry).split(separator: "\n")
        #expect(lines.count == 2 + GuardTable.shared.count + OOMKind().guards.count)
        #expect(lines[0].contains("| default | oom | tiering | plain | why |"))
        let kills = lines.first { $0.hasPrefix("| `max_kills_per_minute` |") } ?? ""
        #expect(kills.contains("| - | 6 | - | - |"), "the oom-only guard: no shared default, oom 6, not for tiering or plain: \(kills)")
        let fallbacks = lines.first { $0.hasPrefix("| `max_consecutive_fallbacks` |") } ?? ""
        #expect(fallbacks.contains("| off | 3 | off | off |"), "\(fallbacks)")
        #expect(fallbacks.contains("oom: 3. Three OOMs"), "the kind's reason is beside the shared one")
    }
}
