import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct KnobJournalTests {
    @Test func theFirstOriginalIsKeptAndRestored() throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("knob", "5\n")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("7", to: knob, owner: "a")
        try journal.write("9", to: knob, owner: "a")
        #expect(try readFile(knob) == "9")
        #expect(journal.original(of: knob) == "5", "the value before the first write, trimmed")
        #expect(journal.restore(owner: "a").isEmpty)
        #expect(try readFile(knob) == "5")
        #expect(journal.entries().isEmpty, "a restored knob is forgotten")
    }

    @Test func restoreIsPerOwnerOrPerPath() throws {
        let scratch = try ScratchDirectory()
        let a = try scratch.write("a", "1"), b = try scratch.write("b", "2"), c = try scratch.write("c", "3")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("10", to: a, owner: "p")
        try journal.write("20", to: b, owner: "q")
        try journal.write("30", to: c, owner: "q")
        journal.restore(owner: "p")
        #expect(try readFile(a) == "1" && readFile(b) == "20")
        journal.restore(paths: [c])
        #expect(try readFile(c) == "3" && readFile(b) == "20")
        #expect(journal.entries().map(\.path) == [b])
    }

    @Test func aCustomOriginalReaderAndAVanishedKnob() throws {
        let scratch = try ScratchDirectory()
        let control = try scratch.write("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("1", to: control, owner: "p") { $0.contains("oom_kill_disable 1") ? "1" : "0" }
        #expect(journal.original(of: control) == "0")
        unlink(control)
        #expect(journal.restore().isEmpty, "a knob whose file is gone counts as restored")
        #expect(journal.entries().isEmpty)
    }

    /// A tree of directories with memory.oom_control files, as cgroup v1 lays them out.
    func oomControlTree(_ scratch: ScratchDirectory, _ disabled: [String: Bool]) throws -> [String: String] {
        var files: [String: String] = [:]
        for (directory, on) in disabled.sorted(by: { $0.key < $1.key }) {
            _ = try scratch.makeDirectory(directory)
            files[directory] = try scratch.write(directory + "/memory.oom_control",
                                                 "oom_kill_disable \(on ? 1 : 0)\nunder_oom 0\noom_kill 0\n")
        }
        return files
    }

    static let oomReader: KnobJournal.OriginalReader = { $0.contains("oom_kill_disable 1") ? "1" : "0" }

    @Test func restoringAMemcgResetsChildrenThatCopiedItsDisabledKiller() throws {
        let scratch = try ScratchDirectory()
        let files = try oomControlTree(scratch, ["g": false, "g/old": false, "g/own": false, "g/own/deep": false])
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        for name in ["g", "g/old", "g/own"] { try journal.write("1", to: files[name]!, owner: "p", original: Self.oomReader) }
        // Copied from g/own, which is journaled: g/own's restore resets it, g's does not look below g/own.
        try writeFile(files["g/own/deep"]!, "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n")
        // Made after the daemon's last look: they copied the parent's 1 (or, one, its own 0).
        let late = try oomControlTree(scratch, ["g/late": true, "g/late/inner": true, "g/quiet": false])

        let result = journal.restoreReporting(owner: nil)
        #expect(result.failures.isEmpty)
        for file in [files["g"]!, files["g/old"]!, files["g/own"]!, late["g/late"]!, late["g/late/inner"]!] {
            #expect(try Self.oomReader(readFile(file)) == "0", "\(file)")
        }
        #expect(try readFile(late["g/quiet"]!).hasPrefix("oom_kill_disable 0"), "a child that never had mmpolicy's value is not written")
        #expect(Set(result.inherited.map(\.path)) == Set([late["g/late"]!, late["g/late/inner"]!, files["g/own/deep"]!]))
        #expect(try Self.oomReader(readFile(files["g/own/deep"]!)) == "0")
        #expect(journal.entries().isEmpty)
    }

    @Test func aJournaledChildsSubtreeIsItsOwn() throws {
        let scratch = try ScratchDirectory()
        let files = try oomControlTree(scratch, ["g": false, "g/inner": false])
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("1", to: files["g"]!, owner: "outer", original: Self.oomReader)
        try journal.write("1", to: files["g/inner"]!, owner: "inner", original: Self.oomReader)
        let below = try oomControlTree(scratch, ["g/inner/new": true, "g/new": true])
        // The outer scope goes; the inner one, still governed, keeps its memcgs as they are.
        let result = journal.restoreReporting(owner: "outer")
        #expect(result.failures.isEmpty)
        #expect(result.inherited.map(\.path) == [below["g/new"]!])
        #expect(try readFile(files["g/inner"]!) == "1", "as mmpolicy wrote it (a plain file here, not a cgroup)")
        #expect(try Self.oomReader(readFile(below["g/inner/new"]!)) == "1")
        #expect(journal.entries().map(\.path) == [files["g/inner"]!])
    }

    @Test func aMemcgWhoseKillerWasAlreadyOffStaysAsItWas() throws {
        let scratch = try ScratchDirectory()
        let files = try oomControlTree(scratch, ["g": true])
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("1", to: files["g"]!, owner: "p", original: Self.oomReader)
        let child = try oomControlTree(scratch, ["g/child": true])
        let result = journal.restoreReporting()
        #expect(result.restored.map(\.original) == ["1"] && result.inherited.isEmpty)
        #expect(try Self.oomReader(readFile(child["g/child"]!)) == "1", "it copied the operator's value, not mmpolicy's")
    }

    @Test func oomControlIsRestoredBeforeOtherKnobs() throws {
        let scratch = try ScratchDirectory()
        let other = try scratch.write("a_knob", "60")  // journaled first and sorts first
        let files = try oomControlTree(scratch, ["g": false])
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        try journal.write("10", to: other, owner: "p")
        try journal.write("1", to: files["g"]!, owner: "p", original: Self.oomReader)
        let result = journal.restoreReporting()
        #expect(result.restored.map(\.path) == [files["g"]!, other])
    }

    @Test func writingAMissingKnobNamesIt() throws {
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        #expect {
            try journal.write("1", to: "/nonexistent/knob", owner: "p")
        } throws: { error in
            "\(error)".contains("/nonexistent/knob")
        }
        #expect(journal.entries().isEmpty, "nothing is journaled for a knob that could not be read")
    }
}

@Suite struct PolicySetTests {
    @Test func parsesEntriesWithOptionalFields() throws {
        let set = try PolicySet.parse(toml: """
            [[policy]]
            name = "oom_largest"
            scope = "system"
            mode = "observe"
            [[policy]]
            name = "oom_growth"
            scope = "workloads/batch"
            set = { window_ms = 500 }
            """, path: "default.toml")
        #expect(set.entries.count == 2)
        #expect(set.entries[0] == PolicySet.Entry(name: "oom_largest", scope: "system", mode: .observe))
        #expect(set.entries[1].scope == "workloads/batch" && set.entries[1].mode == nil)
        #expect(set.entries[1].set.map(\.key) == ["window_ms"] && set.entries[1].set.map(\.value) == ["500"])
    }

    @Test func anEmptyFileIsAnEmptySet() throws {
        #expect(try PolicySet.parse(toml: "# nothing\n", path: "x.toml").entries.isEmpty)
    }

    @Test func mistakesNameTheEntryAndKey() throws {
        for (text, key) in [("[[policy]]\nname = \"a\"\nmode = \"loud\"\n", "policy[0].mode"),
                            ("[[policy]]\nname = \"Bad Name\"\n", "policy[0].name"),
                            ("[[policy]]\nname = \"a\"\ncolour = 1\n", "policy[0].colour"),
                            ("[[policy]]\nname = \"a\"\nscope = \"a/../b\"\n", "policy[0].scope"),
                            ("[[policy]]\nname = \"a\"\nscope = 3\n", "policy[0].scope"),
                            ("[[policy]]\nscope = \"system\"\n", "policy[0].name"),
                            ("[[policy]]\nname = \"a\"\nset = 1\n", "policy[0].set"),
                            ("policy = 1\n", "policy"),
                            ("policies = 1\n", "policies")] {
            #expect { try PolicySet.parse(toml: text, path: "x.toml") } throws: { error in
                (error as? ManifestError)?.key == key
            }
        }
    }

    @Test func mistakesAreWordedAsInManifests() throws {
        #expect(throws: ManifestError(path: "x.toml", key: "policy[0].mode",
                                      reason: .invalidValue(expected: "\"enforce\" or \"observe\"", found: "string \"loud\""))) {
            try PolicySet.parse(toml: "[[policy]]\nname = \"a\"\nmode = \"loud\"\n", path: "x.toml")
        }
        #expect(throws: ManifestError(path: "x.toml", key: "policy[0].scope",
                                      reason: .invalidValue(expected: ScopeSpec.expectation,
                                                            found: "string \"a/../b\" (it contains a '..' component)"))) {
            try PolicySet.parse(toml: "[[policy]]\nname = \"a\"\nscope = \"a/../b\"\n", path: "x.toml")
        }
        let syntax = #expect(throws: ManifestError.self) { try PolicySet.parse(toml: "[[policy]\n", path: "x.toml") }
        if case .syntax(let line, _, _)? = syntax?.reason { #expect(line == 1) } else { Issue.record("\(String(describing: syntax))") }
    }

    @Test func theInTreeDefaultSetIsValidAndSafe() throws {
        let set = try PolicySet.load(path: TestPaths.policies + "/default.toml")
        #expect(!set.entries.isEmpty)
        #expect(set.entries.allSatisfy { $0.mode == .observe }, "the default set never kills")
    }
}

@Suite struct TriggerManifestTests {
    func manifest(_ trigger: String) throws -> Manifest {
        try Manifest.parse(toml: """
            name = "t"
            kind = "oom"
            object = "o.bpf.o"
            description = "d"
            [trigger]
            \(trigger)
            """, path: "t.toml", kinds: .builtIn)
    }

    @Test func readsEveryKey() throws {
        let m = try manifest("mem_available_percent = 5\nswap_free_percent = 2.5\npsi = \"full 500000 2000000\"\nmemcg_headroom_percent = 3\nsteer_oom_score_adj = false")
        #expect(m.kindSettings as? OOMTriggerSettings
                == OOMTriggerSettings(memAvailablePercent: 5, swapFreePercent: 2.5,
                                      psi: PSITriggerSpec(full: true, stallMicroseconds: 500_000, windowMicroseconds: 2_000_000),
                                      memcgHeadroomPercent: 3, steerOOMScoreAdj: false))
    }

    @Test func keysLeftOutTakeTheKindsDefaults() throws {
        var expected = OOMTriggerSettings.defaults
        expected.memAvailablePercent = 4
        #expect(try manifest("mem_available_percent = 4").kindSettings as? OOMTriggerSettings == expected)
        #expect(try manifest("").kindSettings as? OOMTriggerSettings == .defaults, "an empty [trigger] is the defaults")
    }

    @Test func refusesBadValuesNamingTheKey() throws {
        for (text, key) in [("mem_available_percent = 150", "trigger.mem_available_percent"),
                            ("psi = \"sometimes 1 2\"", "trigger.psi"),
                            ("psi = \"some 3000000 2000000\"", "trigger.psi"),
                            ("steer_oom_score_adj = 1", "trigger.steer_oom_score_adj"),
                            ("poll_ms = 10", "trigger.poll_ms")] {
            #expect { try manifest(text) } throws: { error in
                (error as? ManifestError)?.key == key
            }
        }
    }
}
